"""`vae_tf.visualize`: every plot from a checkpoint, comparisons, and clear refusals."""

import os
import subprocess
import sys

import pytest

from vae_tf.errors import ConfigError, RunDirError
from vae_tf.figures import catalogue, inspection, per_epoch, plots, visualization
from vae_tf.figures.visualization import PLOTS
from vae_tf.run import training

from conftest import REPO_ROOT, SETTLED, parse_config

SMALL = ["--arch=mlp", "--encoder_layers=32", "--decoder_layers=32", "--batch_size=32",
         "--noprogress_bar", "--figures_every=0", "--noexport", *SETTLED]


@pytest.fixture(scope="module")
def runs(tiny_data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("visualize")
    made = {}
    for name, extra in (("conditional", ["--z_dim=2", "--classifier_weight=1", "--epochs=2"]),
                        ("no_kl", ["--z_dim=2", "--beta=0", "--epochs=1"]),
                        ("z3", ["--z_dim=3", "--epochs=1"])):
        config = parse_config(*SMALL, *extra, f"--data_dir={tiny_data_dir}",
                              f"--model_dir={root / name}")
        made[name] = training.train_and_evaluate(config).model_dir
    return made


@pytest.mark.parametrize("plot", list(PLOTS))
def test_every_plot_writes_its_png_named_after_the_checkpoint(runs, plot):
    [path] = visualization.plot_run(runs["conditional"], plot)
    assert path == os.path.join(runs["conditional"], "figures",
                                f"{plot}_checkpoint_epoch_002.png")
    with open(path, "rb") as stream:
        assert stream.read(8) == b"\x89PNG\r\n\x1a\n"


def test_compare_writes_runs_side_by_side(runs):
    [path] = visualization.compare_runs([runs["conditional"], runs["no_kl"]])
    assert os.path.basename(path) == "compare_conditional_vs_no_kl.png" and os.path.isfile(path)


def test_conditional_plot_needs_a_conditional_model(runs):
    with pytest.raises(ConfigError, match="needs a conditional model"):
        visualization.plot_run(runs["no_kl"], "conditional")


def test_manifold_needs_a_2d_latent(runs):
    with pytest.raises(ConfigError, match="needs z_dim=2 and .* has z_dim=3; try --plot=traversal"):
        visualization.plot_run(runs["z3"], "manifold")


def test_label_out_of_range_is_refused(runs):
    with pytest.raises(ConfigError, match="--label=10 is outside 0-9"):
        visualization.plot_run(runs["conditional"], "manifold",
                               visualization.PlotOptions(label=10))


def test_run_without_a_checkpoint_is_refused(tmp_path):
    with pytest.raises(RunDirError, match="holds no vae_tf run"):
        visualization.plot_run(str(tmp_path), "samples")


def test_compare_needs_two_runs(runs):
    with pytest.raises(ConfigError, match="needs two or more --model_dirs"):
        visualization.compare_runs([runs["conditional"]])


def test_visualize_command_prints_the_paths_it_wrote(runs):
    environment = dict(os.environ, PYTHONPATH=REPO_ROOT)
    result = subprocess.run(
        [sys.executable, "-m", "vae_tf.visualize", f"--model_dir={runs['z3']}",
         "--plot=traversal", "--traversal_range=2"], capture_output=True, text=True,
        timeout=300, env=environment, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    printed = result.stdout.strip().splitlines()
    assert printed == [os.path.join(runs["z3"], "figures", "traversal_checkpoint_epoch_001.png")]
    assert os.path.isfile(printed[0])
    bad = subprocess.run([sys.executable, "-m", "vae_tf.visualize", "--plot=pie"],
                         capture_output=True, text=True, timeout=120, env=environment)
    assert bad.returncode == 1 and "error: --plot=pie is not one of" in bad.stderr


def test_visualize_draws_the_figures_training_draws_with_the_same_titles(runs, tiny_data_dir):
    run = visualization.load_run(runs["conditional"])
    fixed = per_epoch.FixedInputs.from_split(run.dataset.test, run.dataset.class_names, seed=0)
    arrays = per_epoch.epoch_arrays(run.model, fixed)
    trained = per_epoch.epoch_figures(run.epoch, arrays, {run.epoch: arrays}, fixed, [])
    for plot, name in (("reconstructions", "reconstructions_epoch_002.png"),
                       ("samples", "samples_epoch_002.png"),
                       ("scatter", "scatter_epoch_002.png"),
                       ("manifold", "manifold_epoch_002.png")):
        drawn = visualization.figure_for(run, plot, visualization.PlotOptions())
        assert _title(drawn) == _title(trained[name]) and _title(drawn).startswith("Epoch 2:")


def _title(figure):
    return figure._suptitle.get_text() if figure._suptitle else figure.axes[0].get_title()


def test_a_figure_added_to_the_catalogue_is_drawn_by_training_and_by_visualize(
        runs, monkeypatch):
    """One entry in `catalogue.CATALOGUE`, and nothing else, makes a new figure."""
    def mean_reconstruction(model, inputs, options):
        return {"mean": inspection.reconstructions(model, inputs.examples).mean(0)[None]}

    def draw(epoch, arrays, inputs, options):
        return plots.samples(arrays["mean"], title=f"Epoch {epoch}: the mean reconstruction")

    monkeypatch.setitem(catalogue.CATALOGUE, "mean", catalogue.Figure(
        catalogue.EPOCH, mean_reconstruction, draw, ("mean",), gif="mean.gif"))
    run = visualization.load_run(runs["conditional"])
    fixed = per_epoch.FixedInputs.from_split(run.dataset.test, run.dataset.class_names, seed=0)
    arrays = per_epoch.epoch_arrays(run.model, fixed)
    trained = per_epoch.epoch_figures(run.epoch, arrays, {run.epoch: arrays}, fixed, [])
    assert _title(trained["mean_epoch_002.png"]) == "Epoch 2: the mean reconstruction"
    [path] = visualization.plot_run(runs["conditional"], "mean")
    assert path.endswith("mean_checkpoint_epoch_002.png") and os.path.isfile(path)
    gifs = per_epoch.write_animations(str(run.model_dir), fixed, {1: arrays, 2: arrays})
    assert os.path.join(run.model_dir, "figures", "mean.gif") in gifs
