"""Time to quality: a run's test loss against its minutes of training, and the figure."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from vae_tf.errors import ConfigError, RunDirError
from vae_tf.evaluation import time_to_quality
from vae_tf.figures import plots, visualization

from conftest import FAST, REPO_ROOT, parse_config


def _run(folder, epoch_seconds, val_loss, evaluations=()):
    """A run folder with the metrics.csv and evaluations that training and evaluate write."""
    os.makedirs(folder / "evaluations", exist_ok=True)
    # The first epoch is in a KL warm-up (weight 0.5), whose val_loss is below the -ELBO.
    lines = ["epoch,epoch_seconds,kl_weight,loss,val_kl_loss,val_loss,val_reconstruction_loss"]
    lines += [f"{epoch},{seconds},{0.5 if epoch == 0 else 1.0},{loss + 3},20.0,"
              f"{loss - 10.0 if epoch == 0 else loss},{loss - 20.0}"
              for epoch, (seconds, loss) in enumerate(zip(epoch_seconds, val_loss))]
    (folder / "metrics.csv").write_text("\n".join(lines) + "\n")
    for index, result in enumerate(evaluations):
        (folder / "evaluations" / f"{index}.json").write_text(json.dumps(result))
    if evaluations:
        (folder / "evaluation.json").write_text(json.dumps(evaluations[-1]))
    return str(folder)


def test_minutes_are_the_running_sum_of_epoch_seconds_and_iwae_sits_at_its_epoch(tmp_path):
    model_dir = _run(tmp_path / "a", [60, 120, 30, 90], [260.0, 240.0, 236.0, 235.0], [
        {"epoch": 2, "nll_iwae_nats": 238.5, "iw_samples": 100},
        {"epoch": 2, "nll_iwae_nats": 237.9, "iw_samples": 5000},  # the better estimate wins
        {"epoch": 4, "nll_iwae_nats": 233.1, "iw_samples": 5000},
        {"epoch": 3, "elbo_nats": -236.0}])  # no IWAE: not a point
    run = time_to_quality.curve(model_dir)
    assert run.name == "a"
    np.testing.assert_allclose(run.minutes, [1.0, 3.0, 3.5, 5.0])
    np.testing.assert_allclose(run.test_loss, [260.0, 240.0, 236.0, 235.0])
    assert run.iwae == [(3.0, 237.9, 5000), (5.0, 233.1, 5000)]
    assert time_to_quality.minutes_to_reach(run, 240.0) == 3.0
    assert time_to_quality.minutes_to_reach(run, 236.5) == 3.5
    assert time_to_quality.minutes_to_reach(run, 230.0) is None


def test_the_figure_draws_each_runs_curve_its_iwae_and_the_target(tmp_path):
    first = time_to_quality.curve(_run(tmp_path / "a", [60, 60], [250.0, 240.0],
                                       [{"epoch": 2, "nll_iwae_nats": 238.0,
                                         "iw_samples": 5000}]))
    second = time_to_quality.curve(_run(tmp_path / "b", [30, 30, 30], [255.0, 245.0, 239.0]))
    figure = plots.time_to_quality([first, second], target=239.5)
    lines = {line.get_label(): line for line in figure.axes[0].get_lines()}
    np.testing.assert_allclose(lines["a: test -ELBO"].get_xdata(), [1.0, 2.0])
    np.testing.assert_allclose(lines["b: test -ELBO"].get_ydata(), [255.0, 245.0, 239.0])
    np.testing.assert_allclose(lines["a: IWAE NLL (K=5000)"].get_xydata(), [[2.0, 238.0]])
    assert "b: IWAE NLL (K=5000)" not in lines
    np.testing.assert_allclose(lines["target 239.5 nats"].get_ydata(), [239.5, 239.5])


def test_visualize_draws_runs_and_prints_their_minutes_to_the_target(tmp_path):
    fast = _run(tmp_path / "fast", [60, 60, 60], [250.0, 238.0, 236.0])
    slow = _run(tmp_path / "slow", [120, 120], [255.0, 245.0])
    result = subprocess.run(
        [sys.executable, "-m", "vae_tf.visualize", "--plot=time_to_quality",
         f"--model_dirs={fast},{slow}", "--target_loss=240"], capture_output=True, text=True,
        timeout=300, env=dict(os.environ, PYTHONPATH=REPO_ROOT), cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    printed = result.stdout.strip().splitlines()
    png = os.path.join(fast, "figures", "time_to_quality_fast_vs_slow.png")
    assert printed == [f"{fast}: test loss 240 reached after 2.0 minutes of training",
                       f"{slow}: test loss 240 not reached", png]
    with open(png, "rb") as stream:
        assert stream.read(8) == b"\x89PNG\r\n\x1a\n"


def test_a_folder_without_epochs_or_runs_is_refused(tmp_path):
    with pytest.raises(RunDirError, match="has no epoch with a test loss"):
        time_to_quality.curve(str(tmp_path))
    with pytest.raises(ConfigError, match="needs one or more --model_dirs"):
        visualization.time_to_quality_runs([])


def test_the_benchmark_trains_from_scratch_and_reports_minutes_to_the_target(tiny_args):
    config = parse_config(*FAST, *tiny_args, "--epochs=2")
    reached = time_to_quality.measure(config, target=10_000.0)  # any first epoch beats it
    assert reached["measure"] == "time_to_quality" and reached["epochs"] == 2
    assert reached["epochs_to_target"] == 1
    assert 0 < reached["minutes"] < reached["minutes_trained"]
    missed = time_to_quality.measure(config, target=1.0)  # no VAE of these images gets there
    assert missed["minutes"] is None and missed["epochs_to_target"] is None
    assert missed["final_test_loss"] > 1.0
    assert not os.path.exists(config.model_dir)  # trained in a scratch folder
