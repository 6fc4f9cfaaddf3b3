"""Whole runs on tiny data: artefacts, resumption, refusal, and TensorBoard contents."""

import glob
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from vae_tf.errors import ConfigError, RunDirError
from vae_tf.run import run_dir, training

from conftest import FAST, FLAGFILES, parse_config, real_data_dir


def _weights(model):
    return [w.numpy() for w in model.trainable_weights]


def _event_scalars(folder):
    """{tag: [(step, value), ...]} of every scalar in a TensorBoard event folder."""
    scalars = {}
    for path in glob.glob(os.path.join(folder, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                number = float(tf.make_ndarray(value.tensor))
                scalars.setdefault(value.tag, []).append((event.step, number))
    return {tag: sorted(values) for tag, values in scalars.items()}  # files come in any order


@pytest.mark.parametrize("flagfile", FLAGFILES, ids=lambda path: path.rsplit("/", 1)[-1])
def test_one_epoch_of_each_preset_writes_every_artefact(flagfile, tiny_args):
    config = parse_config(f"--flagfile={flagfile}", *tiny_args, "--epochs=1",
                          "--steps_per_epoch=2", "--batch_size=16")
    result = training.train_and_evaluate(config)
    model_dir = result.model_dir
    assert result.epochs == 1
    assert os.path.isfile(os.path.join(model_dir, "checkpoints", "ckpt-1.index"))
    assert glob.glob(os.path.join(model_dir, "tensorboard", "train", "events.out.tfevents.*"))
    assert glob.glob(os.path.join(model_dir, "tensorboard", "test", "events.out.tfevents.*"))
    rows = run_dir.read_metrics(model_dir)
    assert [row["epoch"] for row in rows] == [0]
    expected = {"loss", "reconstruction_loss", "kl_loss", "val_loss", "val_kl_loss"}
    if config.conditional:
        expected |= {"classifier_loss", "classifier_accuracy", "val_classifier_accuracy"}
    assert expected <= set(rows[0]) and all(np.isfinite(v) for v in rows[0].values())
    flags_text = open(os.path.join(model_dir, "flags.txt")).read()
    assert f"--model_dir={model_dir}" in flags_text and "--nooverwrite" in flags_text
    assert parse_config(f"--flagfile={model_dir}/flags.txt") == config
    with open(os.path.join(model_dir, "config.json")) as stream:
        assert json.load(stream)["arch"] == config.arch


def test_tensorboard_holds_train_and_test_scalars_per_epoch(tiny_args):
    result = training.train_and_evaluate(parse_config(*FAST, *tiny_args, "--epochs=2"))
    train = _event_scalars(os.path.join(result.model_dir, "tensorboard", "train"))
    test = _event_scalars(os.path.join(result.model_dir, "tensorboard", "test"))
    for tag in ("loss", "reconstruction_loss", "kl_loss"):
        assert [step for step, _ in train[tag]] == [0, 1]
        assert [step for step, _ in test[tag]] == [0, 1]
    rows = run_dir.read_metrics(result.model_dir)
    assert test["loss"][1][1] == pytest.approx(rows[1]["val_loss"], rel=1e-6)
    assert "val_loss" not in train


def test_rerun_resumes_at_the_next_epoch_with_identical_weights(tiny_args):
    straight = training.train_and_evaluate(
        parse_config(*FAST, *tiny_args[:1], "--model_dir=" + tiny_args[1].split("=")[1] + "_a",
                     *tiny_args[2:], "--epochs=3"))
    first = training.train_and_evaluate(parse_config(*FAST, *tiny_args, "--epochs=1"))
    resumed = training.train_and_evaluate(parse_config(*FAST, *tiny_args, "--epochs=3"))
    assert (first.epochs, resumed.initial_epoch, resumed.epochs) == (1, 1, 3)
    assert [row["epoch"] for row in resumed.metrics] == [0, 1, 2]
    for a, b in zip(_weights(straight.model), _weights(resumed.model)):
        np.testing.assert_array_equal(a, b)
    for key in ("loss", "val_loss"):
        assert resumed.metrics[2][key] == pytest.approx(straight.metrics[2][key], rel=1e-6)


def test_steps_per_execution_is_lowered_to_divide_the_epoch_and_sees_the_same_batches(
        tiny_args, capsys):
    model_dir = tiny_args[1].split("=")[1]
    one = training.train_and_evaluate(parse_config(
        *FAST, *tiny_args, "--epochs=2", "--steps_per_epoch=6", "--steps_per_execution=1"))
    capsys.readouterr()
    many = training.train_and_evaluate(parse_config(
        *FAST, *tiny_args, f"--model_dir={model_dir}_b", "--epochs=2", "--steps_per_epoch=6",
        "--steps_per_execution=4"))
    assert "--steps_per_execution=4 lowered to 3, the largest divisor of the epoch's 6 " \
           "steps" in capsys.readouterr().out
    assert int(many.model.optimizer.iterations.numpy()) == 12
    for a, b in zip(_weights(one.model), _weights(many.model)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_new_learning_rate_applies_on_resume_and_is_logged_per_epoch(tiny_args):
    training.train_and_evaluate(parse_config(*FAST, *tiny_args, "--epochs=1"))
    resumed = training.train_and_evaluate(parse_config(*FAST, *tiny_args, "--epochs=2",
                                                       "--learning_rate=0.0002"))
    assert resumed.initial_epoch == 1
    assert float(resumed.model.optimizer.learning_rate.numpy()) == pytest.approx(2e-4)
    train = _event_scalars(os.path.join(resumed.model_dir, "tensorboard", "train"))
    assert [(step, pytest.approx(value)) for step, value in train["learning_rate"]] == [
        (0, 1e-3), (1, 2e-4)]


def test_hparams_dashboard_gets_the_run_settings(tiny_args):
    from tensorboard.plugins.hparams import plugin_data_pb2

    config = parse_config(*FAST, *tiny_args, "--epochs=1", "--beta=0.5")
    result = training.train_and_evaluate(config)
    sessions = []
    for path in glob.glob(os.path.join(result.model_dir, "tensorboard", "events.out.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "hparams":
                    data = plugin_data_pb2.HParamsPluginData.FromString(
                        value.metadata.plugin_data.content)
                    if data.HasField("session_start_info"):
                        sessions.append(data.session_start_info)
    assert len(sessions) == 1
    logged = sessions[0].hparams
    assert logged["beta"].number_value == 0.5 and logged["arch"].string_value == "mlp"
    assert logged["encoder_layers"].string_value == "32"
    assert "model_dir" not in logged and sessions[0].group_name == "run"


def test_finished_run_is_not_trained_again(tiny_args):
    training.train_and_evaluate(parse_config(*FAST, *tiny_args, "--epochs=1"))
    again = training.train_and_evaluate(parse_config(*FAST, *tiny_args, "--epochs=1"))
    assert (again.initial_epoch, again.epochs, len(again.metrics)) == (1, 1, 1)


def test_interrupted_epoch_rows_are_dropped_on_resume(tiny_args):
    first = training.train_and_evaluate(parse_config(*FAST, *tiny_args, "--epochs=1"))
    metrics_path = os.path.join(first.model_dir, "metrics.csv")
    with open(metrics_path) as stream:
        lines = stream.read().splitlines()
    # A row written for epoch 1 whose checkpoint was never saved, as after a kill.
    with open(metrics_path, "a") as stream:
        stream.write(lines[1].replace("0,", "1,", 1) + "\n")
    resumed = training.train_and_evaluate(parse_config(*FAST, *tiny_args, "--epochs=2"))
    assert [row["epoch"] for row in resumed.metrics] == [0, 1]


def test_model_dir_of_another_configuration_is_refused_and_left_alone(tiny_args):
    first = training.train_and_evaluate(parse_config(*FAST, *tiny_args, "--epochs=1"))
    before = {path: os.path.getmtime(path)
              for path in glob.glob(os.path.join(first.model_dir, "**"), recursive=True)}
    with pytest.raises(RunDirError, match=r"holds a run with arch=mlp, z_dim=2, encoder_layers=32, "
                       r"decoder_layers=32 \(this run asks for arch=conv, z_dim=3, "
                       r"encoder_layers=128, decoder_layers=128\); .*--overwrite") as error:
        training.train_and_evaluate(parse_config(*tiny_args, "--arch=conv", "--z_dim=3"))
    assert "\n" not in str(error.value)
    after = {path: os.path.getmtime(path)
             for path in glob.glob(os.path.join(first.model_dir, "**"), recursive=True)}
    assert before == after


def test_a_rerun_with_another_seed_is_refused_naming_the_flag(tiny_args, tmp_path):
    """The seed draws a folder's test split: a new seed would let test images into training."""
    folder = tmp_path / "images"
    for index in range(40):
        (folder / str(index % 2)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8), index * 6, np.uint8)).save(
            folder / str(index % 2) / f"{index}.png")
    args = (*FAST, *tiny_args, f"--dataset={folder}", "--batch_size=8", "--steps_per_epoch=1")
    first = training.train_and_evaluate(parse_config(*args, "--epochs=1"))
    before = {path: os.path.getmtime(path)
              for path in glob.glob(os.path.join(first.model_dir, "**"), recursive=True)}
    with pytest.raises(RunDirError, match=r"holds a run with seed=0 \(this run asks for "
                       r"seed=1\); .*--overwrite"):
        training.train_and_evaluate(parse_config(*args, "--epochs=2", "--seed=1"))
    after = {path: os.path.getmtime(path)
             for path in glob.glob(os.path.join(first.model_dir, "**"), recursive=True)}
    assert before == after


@pytest.mark.parametrize("lose", ["deleted", "emptied"])
def test_a_trained_run_whose_checkpoints_vanished_is_refused_not_restarted(lose, tiny_args):
    args = (*FAST, *tiny_args, "--steps_per_epoch=1")
    first = training.train_and_evaluate(parse_config(*args, "--epochs=2"))
    folder = os.path.join(first.model_dir, "checkpoints")
    if lose == "deleted":
        shutil.rmtree(folder)
    else:
        for path in glob.glob(os.path.join(folder, "*")):
            os.remove(path) if os.path.isfile(path) else shutil.rmtree(path)
    before = {path: os.path.getmtime(path)
              for path in glob.glob(os.path.join(first.model_dir, "**"), recursive=True)
             if os.path.isfile(path)}
    with pytest.raises(RunDirError, match=r"holds a trained run \(metrics.csv of 2 epochs\) "
                       r"but no checkpoint in .*checkpoints; .*--overwrite") as error:
        training.train_and_evaluate(parse_config(*args, "--epochs=3"))
    assert "\n" not in str(error.value)
    after = {path: os.path.getmtime(path)
             for path in glob.glob(os.path.join(first.model_dir, "**"), recursive=True)
             if os.path.isfile(path)}
    assert before == after
    # --overwrite keeps the old run aside and starts afresh.
    fresh = training.train_and_evaluate(parse_config(*args, "--epochs=1", "--overwrite"))
    assert fresh.initial_epoch == 0 and glob.glob(first.model_dir + ".replaced-*")


def test_a_first_epoch_killed_before_its_checkpoint_is_redone(tiny_args):
    """metrics.csv's first row is written before the epoch's checkpoint: a kill between the two."""
    args = (*FAST, *tiny_args, "--steps_per_epoch=1")
    first = training.train_and_evaluate(parse_config(*args, "--epochs=1"))
    shutil.rmtree(os.path.join(first.model_dir, "checkpoints"))
    rows = run_dir.read_metrics(first.model_dir)
    del rows[0]["checkpoint_seconds"]
    run_dir._write_metrics(os.path.join(first.model_dir, "metrics.csv"), rows)
    again = training.train_and_evaluate(parse_config(*args, "--epochs=1"))
    assert again.initial_epoch == 0 and [row["epoch"] for row in again.metrics] == [0]


def test_overwrite_moves_the_old_run_aside(tiny_args):
    first = training.train_and_evaluate(parse_config(*FAST, *tiny_args, "--epochs=1"))
    training.train_and_evaluate(parse_config(*FAST, *tiny_args, "--epochs=1", "--z_dim=3",
                                             "--steps_per_epoch=1", "--overwrite"))
    moved = glob.glob(first.model_dir + ".replaced-*")
    assert len(moved) == 1
    assert os.path.isfile(os.path.join(moved[0], "checkpoints", "ckpt-1.index"))
    with open(os.path.join(first.model_dir, "config.json")) as stream:
        assert json.load(stream)["z_dim"] == 3


def test_model_dir_that_is_a_file_is_refused(tiny_args, tmp_path):
    path = tmp_path / "a_file"
    path.write_text("not a folder")
    with pytest.raises(RunDirError, match="is a file, not a folder"):
        training.train_and_evaluate(parse_config(*FAST, *tiny_args, f"--model_dir={path}"))
    assert path.read_text() == "not a folder"


def test_batch_larger_than_the_split_is_refused(tiny_args):
    with pytest.raises(ConfigError, match="--batch_size=1000 is larger than the 240 images"):
        training.train_and_evaluate(parse_config(*FAST, *tiny_args, "--batch_size=1000"))


def test_kl_warmup_weights_are_recorded(tiny_args):
    result = training.train_and_evaluate(
        parse_config(*FAST, *tiny_args, "--epochs=3", "--kl_warmup_epochs=2", "--beta=0.5",
                     "--steps_per_epoch=1"))
    assert [row["kl_weight"] for row in result.metrics] == [0.25, 0.5, 0.5]


def test_learning_rate_drops_hold_across_a_resume(tiny_args):
    args = (*FAST, *tiny_args, "--steps_per_epoch=1", "--learning_rate=0.001",
            "--learning_rate_drops=1:0.0005,2:0.0001")
    training.train_and_evaluate(parse_config(*args, "--epochs=2"))
    # The resumed run restores --learning_rate with the checkpoint; the drop must win.
    result = training.train_and_evaluate(parse_config(*args, "--epochs=3"))
    assert [row["learning_rate"] for row in result.metrics] == pytest.approx(
        [0.001, 0.0005, 0.0001])
    assert float(result.model.optimizer.learning_rate.numpy()) == pytest.approx(0.0001)
    logged = _event_scalars(os.path.join(result.model_dir, "tensorboard", "train"))
    assert [value for _, value in logged["learning_rate"]] == pytest.approx(
        [0.001, 0.0005, 0.0001])


@pytest.mark.slow
@pytest.mark.realdata
def test_real_fashion_mnist_test_loss_falls(tmp_path):
    folder = real_data_dir("fashion_mnist")
    # The preset's layers with 16 filters instead of 64: a quarter of the suite's slowest
    # test's time on an AVX2 CPU (44 s against 178 s), the same real data path. No figures
    # or export (tested elsewhere): they took half of its 33 s alone.
    config = parse_config(f"--flagfile={FLAGFILES[0].rsplit('/', 1)[0]}/conv_bernoulli.flags",
                          "--conv_filters=16,16,16",
                          f"--data_dir={folder}", f"--model_dir={tmp_path / 'run'}",
                          "--epochs=2", "--steps_per_epoch=150", "--noprogress_bar",
                          "--figures_every=0", "--noexport")
    result = training.train_and_evaluate(config)
    first, second = (row["val_loss"] for row in result.metrics)
    # A untrained model scores about 545 nats per image; two short epochs must beat it well.
    assert second < first < 400, (first, second)


def test_a_run_checkpointed_before_in_epoch_checkpoints_existed_resumes(tiny_args):
    from vae_tf.run import checkpoints

    config = parse_config(*FAST, *tiny_args, "--epochs=1")
    training.train_and_evaluate(config)
    model_dir = config.model_dir
    state = checkpoints.restore_run(config, model_dir)
    # ckpt-1 rewritten in the layout of earlier versions: no step, no metric totals.
    folder = os.path.join(model_dir, "checkpoints")
    shutil.rmtree(folder)
    earlier = tf.train.Checkpoint(model=state.model, optimizer=state.checkpoint.optimizer,
                                  epoch=state.epoch,
                                  random_states=checkpoints.random_states(state.model))
    tf.train.CheckpointManager(earlier, folder, max_to_keep=3).save(checkpoint_number=1)
    names = tf.train.load_checkpoint(folder).get_variable_to_shape_map()
    assert "epoch/.ATTRIBUTES/VARIABLE_VALUE" in names
    assert "step/.ATTRIBUTES/VARIABLE_VALUE" not in names
    _, restored = checkpoints.restore_trained(model_dir)  # as evaluate and export read it
    assert restored.completed_epochs == 1
    for expected, actual in zip(state.model.weights, restored.model.weights):
        np.testing.assert_array_equal(expected.numpy(), actual.numpy())
    result = training.train_and_evaluate(parse_config(*FAST, *tiny_args, "--epochs=2"))
    assert (result.initial_epoch, result.epochs) == (1, 2)


def test_weight_averaging_scores_and_ships_the_average_but_trains_on_the_raw_weights(
        tiny_args):
    import keras

    from vae_tf.run import checkpoints

    class Snapshots(keras.callbacks.Callback):
        """The model's weights while it is scored on the test split, and at each epoch's end."""

        def __init__(self):
            super().__init__()
            self.scored, self.ended = [], []

        def on_test_begin(self, logs=None):
            self.scored.append(_weights(self.model))

        def on_epoch_end(self, epoch, logs=None):
            self.ended.append(_weights(self.model))

    snapshots = Snapshots()
    config = parse_config(*FAST, *tiny_args, "--epochs=2", "--steps_per_epoch=6",
                          "--learning_rate=0.01", "--ema_momentum=0.8")
    result = training.train_and_evaluate(config, observers=(snapshots,))
    raw = checkpoints.restore_run(config, config.model_dir, in_epoch=True).model
    finished = checkpoints.restore_trained(config.model_dir)[1].model
    for a, b, c, d, e in zip(_weights(raw), snapshots.ended[-1], _weights(finished),
                             _weights(result.model), snapshots.scored[-1]):
        np.testing.assert_array_equal(a, b)  # training goes on from the raw weights
        np.testing.assert_array_equal(c, d)  # evaluate, export and the result: the average
        np.testing.assert_allclose(c, e, atol=1e-6)  # the test loss was the average's too
    assert max(np.abs(a - c).max() for a, c in zip(_weights(raw), _weights(finished))) > 1e-3
