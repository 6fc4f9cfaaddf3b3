"""Figures written during training: files, GIFs, TensorBoard images, graph and projector."""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from vae_tf.figures import per_epoch
from vae_tf.run import training

from conftest import SETTLED, parse_config


def _summaries(folder):
    """{(tag, plugin): count} and whether a graph was written, from TensorBoard events."""
    counts, graphs = {}, 0
    for path in glob.glob(os.path.join(folder, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            graphs += event.HasField("graph_def")
            for value in event.summary.value:
                key = (value.tag, value.metadata.plugin_data.plugin_name)
                counts[key] = counts.get(key, 0) + 1
    return counts, graphs


@pytest.fixture(scope="module")
def conditional_run(tiny_data_dir, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("figures") / "run"
    config = parse_config("--arch=mlp", "--z_dim=2", "--classifier_weight=1",
                          "--encoder_layers=32", "--decoder_layers=32", "--batch_size=32",
                          f"--data_dir={tiny_data_dir}", f"--model_dir={model_dir}",
                          "--epochs=2", "--noprogress_bar", *SETTLED)
    return training.train_and_evaluate(config).model_dir


def test_two_epochs_with_a_2d_latent_write_every_figure(conditional_run):
    names = set(os.listdir(os.path.join(conditional_run, "figures")))
    for epoch in ("001", "002"):
        for kind in ("reconstructions", "samples", "scatter", "manifold"):
            assert f"{kind}_epoch_{epoch}.png" in names
    assert {"reconstructions_by_epoch.png", "conditional_by_epoch.png", "losses.png",
            "scatter.gif", "manifold.gif", "conditional.gif"} <= names


@pytest.mark.parametrize("name", ["scatter.gif", "manifold.gif", "conditional.gif"])
def test_gifs_have_a_frame_per_epoch(conditional_run, name):
    with Image.open(os.path.join(conditional_run, "figures", name)) as gif:
        assert gif.n_frames == 2


def test_history_keeps_the_arrays_of_each_epoch(conditional_run):
    history = per_epoch.load_history(conditional_run)
    assert sorted(history) == [1, 2]
    assert history[2]["manifold"].shape == (20, 20, 28, 28)
    assert history[2]["conditional"].shape == (10, 28, 28)
    assert history[2]["z_mean"].shape == (60, 2)


def test_projector_files_exist_and_match_the_test_set(conditional_run):
    folder = os.path.join(conditional_run, "tensorboard", "figures")
    # TensorBoard's projector only reads run folders: folders that hold event files.
    assert glob.glob(os.path.join(folder, "events.out.tfevents.*"))
    config = open(os.path.join(folder, "projector_config.pbtxt")).read()
    assert 'metadata_path: "metadata.tsv"' in config and 'image_path: "sprite.png"' in config
    metadata = open(os.path.join(folder, "metadata.tsv")).read().splitlines()
    assert metadata[0] == "label\tclass" and len(metadata) == 61
    with Image.open(os.path.join(folder, "sprite.png")) as sprite:
        assert sprite.size == (8 * 28, 8 * 28)  # 60 images on an 8x8 sheet
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(folder))
    assert reader.get_tensor("embedding/.ATTRIBUTES/VARIABLE_VALUE").shape == (60, 2)


def test_events_hold_images_histograms_and_the_graph(conditional_run):
    counts, _ = _summaries(os.path.join(conditional_run, "tensorboard", "figures"))
    for tag in ("reconstructions", "samples", "conditional"):
        assert counts[(tag, "images")] == 2
    for tag in ("z_mean", "z_variance"):
        assert counts[(tag, "histograms")] == 2
    assert counts[("train_step", "graph_run_metadata_graph")] == 1


def test_sprite_places_images_row_major():
    images = np.zeros((5, 28, 28), np.float32)
    images[3] = 1.0
    sheet = per_epoch.sprite(images)
    assert sheet.shape == (3 * 28, 3 * 28) and sheet.dtype == np.uint8
    assert sheet[28:56, 0:28].min() == 255 and sheet[0:28, 28:56].max() == 0


def test_figures_every_zero_writes_none(tiny_args):
    result = training.train_and_evaluate(parse_config("--arch=mlp", "--z_dim=2", *tiny_args,
                                                      "--epochs=1", "--figures_every=0"))
    assert not os.path.exists(os.path.join(result.model_dir, "figures"))


def test_a_resumed_run_draws_figures_spanning_every_epoch(tiny_args):
    args = ["--arch=mlp", "--z_dim=2", "--encoder_layers=16", "--decoder_layers=16",
            "--steps_per_epoch=2", "--noexport", *tiny_args]
    training.train_and_evaluate(parse_config(*args, "--epochs=1"))
    result = training.train_and_evaluate(parse_config(*args, "--epochs=2"))
    directory = os.path.join(result.model_dir, "figures")
    with Image.open(os.path.join(directory, "scatter.gif")) as gif:
        assert gif.n_frames == 2
    with Image.open(os.path.join(directory, "reconstructions_by_epoch.png")) as stacked:
        height = stacked.size[1]
    with Image.open(os.path.join(directory, "reconstructions_epoch_002.png")) as single:
        assert height > single.size[1]  # three rows (original, epoch 1, epoch 2) against two


def test_every_name_in_a_run_folder_comes_from_its_layout(conditional_run, tmp_path):
    """The run folder's names are defined in `vae_tf.run.layout` and nowhere else."""
    import shutil

    from vae_tf.evaluation import elbo_iwae
    from vae_tf.run import checkpoints, exporting, layout

    model_dir = tmp_path / "copy"  # the module's run stays as the other tests expect it
    shutil.copytree(conditional_run, model_dir, symlinks=True)
    elbo_iwae.evaluate_run(str(model_dir), num_examples=20, num_samples=2, progress=False,
                           judged=False)
    _, state = checkpoints.restore_trained(str(model_dir))
    exporting.export_keras(state.model, str(model_dir), state.completed_epochs)
    names = {value for name, value in vars(layout).items()
             if name.isupper() and isinstance(value, str)}
    found = set(os.listdir(model_dir))
    assert found - {layout.keras_file(2)} <= names, found - names
    assert {layout.CHECKPOINT_DIR, layout.TENSORBOARD_DIR, layout.FIGURES_DIR,
            layout.EXPORT_DIR, layout.EVALUATION_FILE, layout.EVALUATIONS_DIR,
            layout.METRICS_FILE, layout.FLAGS_FILE, layout.CONFIG_FILE, layout.DATA_FILE,
            layout.keras_file(2)} <= found
    for folder in (layout.HISTORY_DIR, layout.TENSORBOARD_FIGURES_DIR,
                   layout.TENSORBOARD_EVALUATION_DIR):
        assert (model_dir / folder).is_dir(), folder
