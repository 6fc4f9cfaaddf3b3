"""--jit_compile=auto and --steps_per_execution=auto: measured once, recorded in the run and
cached; resumed runs keep the choice."""

import json
import os

import pytest

from vae_tf.config import Config
from vae_tf.errors import ConfigError
from vae_tf.run import training, tuning

from conftest import FAST, parse_config


def _run(tiny_args, *extra):
    return training.train_and_evaluate(parse_config(*FAST, *tiny_args, *extra))


def _record(model_dir):
    with open(os.path.join(model_dir, tuning.TUNING_FILE)) as stream:
        return json.load(stream)


def test_auto_measures_both_records_the_faster_and_a_resumed_run_keeps_it(
        tiny_args, tmp_path, capsys, monkeypatch):
    cache = tmp_path / "cache"  # empty, so that this run measures
    monkeypatch.setenv("VAE_TF_CACHE_DIR", str(cache))
    first = _run(tiny_args, "--epochs=1", "--jit_compile=auto", "--steps_per_execution=3")
    record = _record(first.model_dir)
    timings = {trial["jit_compile"]: trial["seconds_per_step"] for trial in record["trials"]}
    assert set(timings) == {"true", "false"} and all(t > 0 for t in timings.values())
    assert {trial["steps_per_execution"] for trial in record["trials"]} == {3}  # as given
    assert record["jit_compile"] == min(timings, key=timings.get)
    assert first.model.jit_compile == (record["jit_compile"] == "true")
    said = capsys.readouterr().out
    assert "--jit_compile=auto: XLA o" in said and "recorded in" in said
    # The measurement counts in the first epoch's time.
    assert first.metrics[0]["epoch_seconds"] > record["tuning_seconds"] > 0
    # The cache holds the same choice, keyed by the machine, libraries and model.
    cached = os.path.join(cache, "tuning", record["cache_key"] + ".json")
    with open(cached) as stream:
        assert json.load(stream)["jit_compile"] == record["jit_compile"]

    # Whatever the record says, a resumed run compiles with it: its numerics do not change.
    flipped = "false" if record["jit_compile"] == "true" else "true"
    with open(os.path.join(first.model_dir, tuning.TUNING_FILE), "w") as stream:
        json.dump(dict(record, jit_compile=flipped), stream)
    resumed = _run(tiny_args, "--epochs=2", "--jit_compile=auto")
    assert resumed.initial_epoch == 1
    assert resumed.model.jit_compile == (flipped == "true")
    assert "as recorded in" in capsys.readouterr().out

    # A new run of the same model on this machine takes the cached choice without measuring.
    other = training.train_and_evaluate(parse_config(
        *FAST, *tiny_args[:1], f"--model_dir={tmp_path / 'other'}", *tiny_args[2:],
        "--epochs=1", "--jit_compile=auto", "--steps_per_execution=3"))
    again = _record(other.model_dir)
    assert again["jit_compile"] == record["jit_compile"]
    assert again["how"].startswith("measured before, cached in")
    assert again["tuning_seconds"] < record["tuning_seconds"]


def test_auto_steps_per_execution_keeps_the_fastest_and_a_resumed_run_keeps_it(
        tiny_args, tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_TF_CACHE_DIR", str(tmp_path / "cache"))
    first = _run(tiny_args, "--epochs=1", "--nojit_compile", "--steps_per_execution=auto")
    record = _record(first.model_dir)
    timings = {trial["steps_per_execution"]: trial["seconds_per_step"]
               for trial in record["trials"]}
    # A step of this tiny MLP takes milliseconds: every candidate's call is under a second.
    assert set(timings) == set(tuning.STEPS_PER_EXECUTION)
    assert all(trial["jit_compile"] == "false" for trial in record["trials"])  # as given
    chosen = record["steps_per_execution"]
    assert chosen == min(timings, key=timings.get)
    # The epoch's 8 steps (240 images in batches of 32) are split into whole executions.
    assert first.model.steps_per_execution in (1, 2, 4, 8)
    assert first.model.steps_per_execution <= chosen
    # A resumed run takes the record's value, even if it is not what this machine would pick.
    other = 10 if chosen != 10 else 50
    with open(os.path.join(first.model_dir, tuning.TUNING_FILE), "w") as stream:
        json.dump(dict(record, steps_per_execution=other), stream)
    resumed = _run(tiny_args, "--epochs=2", "--nojit_compile", "--steps_per_execution=auto")
    assert resumed.initial_epoch == 1
    assert tuning.resolved(parse_config("--steps_per_execution=auto"),
                           first.model_dir).steps_per_execution == other
    assert resumed.model.steps_per_execution == 8  # the largest divisor of 8 steps, up to 10


def test_steps_per_execution_takes_auto_or_a_positive_integer():
    assert parse_config().steps_per_execution == tuning.AUTO
    assert parse_config("--steps_per_execution=auto").steps_per_execution == tuning.AUTO
    assert parse_config("--steps_per_execution=7").steps_per_execution == 7
    with pytest.raises(ConfigError, match="expected auto or a positive integer"):
        parse_config("--steps_per_execution=-2")
    assert "--steps_per_execution=auto" in Config().to_flag_lines()
    assert Config.from_dict({"steps_per_execution": 5}).steps_per_execution == 5


@pytest.mark.parametrize("flag, expected", [("--jit_compile", True), ("--nojit_compile", False),
                                            ("--jit_compile=false", False)])
def test_an_explicit_value_wins_and_nothing_is_measured(tiny_args, flag, expected):
    result = _run(tiny_args, "--epochs=1", flag)
    assert result.model.jit_compile is expected
    assert not os.path.exists(os.path.join(result.model_dir, tuning.TUNING_FILE))


def test_the_flag_takes_true_false_or_auto_and_old_runs_read_as_booleans():
    assert parse_config().jit_compile == "auto"
    assert parse_config("--jit_compile=1").jit_compile == "true"
    with pytest.raises(ConfigError, match="--jit_compile=maybe: expected true, false or auto"):
        parse_config("--jit_compile=maybe")
    # config.json of runs made when the flag was a boolean.
    assert Config.from_dict({"jit_compile": False}).jit_compile == "false"
    assert Config.from_dict({"jit_compile": True}).jit_compile == "true"
    assert "--jit_compile=auto" in Config().to_flag_lines()


def test_every_epoch_times_its_extras_in_metrics_csv(tiny_args):
    result = _run(tiny_args, "--epochs=2", "--nojit_compile", "--figures_every=1")
    for row in result.metrics:
        for column in ("eval_seconds", "tensorboard_seconds", "figures_seconds",
                       "checkpoint_seconds"):
            assert 0 < row[column] < row["epoch_seconds"] + 60, column
        assert row["eval_seconds"] < row["epoch_seconds"]
    figures = os.listdir(os.path.join(result.model_dir, "figures"))
    # Drawn in the background, yet every figure of both epochs is there when training ends.
    assert {"samples_epoch_001.png", "samples_epoch_002.png", "losses.png",
            "scatter.gif"} <= set(figures)
