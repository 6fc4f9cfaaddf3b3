"""`python -m vae_tf.benchmark` runs a few steps and prints well-formed JSON lines.

Only the structure is checked: speeds on shared CI machines are noise.
"""

import glob
import json
import os
import subprocess
import sys

import pytest

from conftest import FAST, REPO_ROOT, parse_config


def test_benchmark_prints_one_json_line_per_measurement(tiny_data_dir, tmp_path):
    model_dir = tmp_path / "untouched"
    result = subprocess.run(
        [sys.executable, "-m", "vae_tf.benchmark", "--flagfile=flags/mlp_conditional.flags",
         f"--data_dir={tiny_data_dir}", f"--model_dir={model_dir}", "--batch_size=20",
         "--eval_batch_size=30", "--steps=4", "--repeats=2", "--synthetic",
         "--steps_per_execution=2"],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONPATH=REPO_ROOT))
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    measures = [row["measure"] for row in rows]
    assert measures == ["machine", "matmul_peak", "flops_per_image", "train", "train",
                        "pipeline_vs_synthetic", "train", "speedup_over_plain", "evaluation",
                        "memory"]
    by_kind = {(row["measure"], row.get("way"), row.get("data")): row for row in rows}
    assert by_kind[("matmul_peak", None, None)]["gflop_per_s"] > 0
    flops = by_kind[("flops_per_image", None, None)]
    # The conditional MLP preset: about 1.5 MFLOP per training image.
    assert 1.0 < flops["mflop"] < 2.0 and "traced graph" in flops["method"]
    for key in (("train", "vae_tf", "pipeline"), ("train", "vae_tf", "synthetic"),
                ("train", "plain", "pipeline")):
        row = by_kind[key]
        assert row["images_per_s"] > 0 and 0 < row["fraction_of_peak"]
        assert row["step_ms"]["min"] <= row["step_ms"]["median"] <= row["step_ms"]["max"]
        assert row["batch_size"] == 20
    assert by_kind[("train", "vae_tf", "pipeline")]["steps_per_execution"] == 2
    assert by_kind[("speedup_over_plain", None, None)]["ratio"] > 0
    evaluation = by_kind[("evaluation", None, None)]
    assert evaluation["elbo_images_per_s"] > 0 and evaluation["iwae_samples_per_s"] > 0
    assert by_kind[("memory", None, None)]["peak_rss_mb"] > 100
    assert not model_dir.exists()  # a benchmark writes nothing


def test_benchmark_profile_writes_a_trace_and_names_the_matmuls(tiny_data_dir, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "vae_tf.benchmark", "--flagfile=flags/mlp_conditional.flags",
         f"--data_dir={tiny_data_dir}", "--batch_size=20", "--eval_batch_size=30",
         "--steps=2", "--repeats=1", "--noplain", "--steps_per_execution=2",
         f"--profile_dir={tmp_path / 'trace'}", "--mixed_precision=bfloat16"],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONPATH=REPO_ROOT))
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    profile = next(row for row in rows if row["measure"] == "profile")
    assert profile["steps"] == 20
    assert any("MatMul" in op for op in profile["op_cpu_us_per_step"])
    assert all(us > 0 for us in profile["op_cpu_us_per_step"].values())
    assert list((tmp_path / "trace").rglob("*.xplane.pb"))
    train = next(row for row in rows if row["measure"] == "train")
    assert train["mixed_precision"] == "bfloat16" and train["intra_op_threads"] == 1


def test_benchmark_whole_epochs_times_both_ways_and_their_ratio(tiny_data_dir, tmp_path):
    model_dir = tmp_path / "untouched"
    result = subprocess.run(
        [sys.executable, "-m", "vae_tf.benchmark", "--arch=mlp", "--encoder_layers=32",
         "--decoder_layers=32", "--z_dim=2", f"--data_dir={tiny_data_dir}",
         f"--model_dir={model_dir}", "--batch_size=20", "--eval_batch_size=30", "--steps=2",
         "--repeats=1", "--noplain", "--whole_epochs", "--nojit_compile",
         "--steps_per_execution=1"],
        capture_output=True, text=True, timeout=600, cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONPATH=REPO_ROOT))
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in result.stdout.splitlines()]  # JSON lines only
    whole = {row["way"]: row for row in rows if row["measure"] == "whole_epoch"}
    assert set(whole) == {"vae_tf", "plain"}
    for row in whole.values():
        # 240 training images in batches of 20; the test split is the tiny set's 60.
        assert row["steps_per_epoch"] == 12 and row["test_images"] == 60
        assert row["epochs"] == 6
        assert 0 < row["epoch_s_min"] <= row["epoch_s"] <= row["epoch_s_max"]
    (ratio,) = [row for row in rows if row["measure"] == "whole_epoch_speedup_over_plain"]
    assert ratio["ratio"] == whole["plain"]["epoch_s"] / whole["vae_tf"]["epoch_s"]
    evaluation = next(row for row in rows if row["measure"] == "evaluation")
    assert evaluation["iwae_samples_per_s"] > 0 and 0 < evaluation["iwae_fraction_of_peak"]
    assert evaluation["iwae_speedup_over_fixed"] > 0
    assert not model_dir.exists()


def test_epoch_seconds_are_the_intervals_between_epoch_ends():
    from vae_tf.evaluation import benchmarking

    # Ends of epochs 1-5: epoch 2 took 10 s (a slow spell), the others 1-2 s; the first
    # epoch (tracing, tuning) is not among the intervals.
    assert benchmarking.epoch_seconds([100.0, 110.0, 111.0, 113.0, 114.0]) == {
        "median": 1.5, "min": 1.0, "max": 10.0}
    with pytest.raises(ValueError, match="at least two epochs"):
        benchmarking.epoch_seconds([100.0])


def test_observers_see_each_epoch_recorded_and_saved(tiny_data_dir, tmp_path):
    """The benchmark's epoch clock runs after vae_tf's own callbacks, checkpoint included."""
    import keras

    from vae_tf.run import training

    seen = []

    class Watch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            checkpoints = glob.glob(str(tmp_path / "run" / "checkpoints" / "ckpt-*.index"))
            with open(tmp_path / "run" / "metrics.csv") as stream:
                rows = len(stream.read().splitlines()) - 1
            seen.append((epoch, len(checkpoints), rows))

    config = parse_config(*FAST, f"--data_dir={tiny_data_dir}", f"--model_dir={tmp_path / 'run'}",
                          "--epochs=2", "--noprogress_bar")
    training.train_and_evaluate(config, observers=(Watch(),))
    assert seen == [(0, 1, 1), (1, 2, 2)]
