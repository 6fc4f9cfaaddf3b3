"""How long until a model is good: a run's test loss against its minutes of training.

A run's minutes are the running sum of `epoch_seconds` in its metrics.csv: the
training steps and everything an epoch does besides (the test pass, figures,
checkpoint, TensorBoard), but not the pauses of a run stopped and resumed, nor
the final export. The importance-weighted estimates come from the run's
evaluations (`evaluation.json` and `evaluations/`), each placed at the minutes
of the epoch it scored; `evaluate` runs after training and its own time is not
counted.
"""

import contextlib
import dataclasses
import glob
import json
import os
import sys
import tempfile
from typing import Optional

import numpy as np

from vae_tf.errors import RunDirError
from vae_tf.run import run_dir
from vae_tf.run.layout import EVALUATION_FILE, EVALUATIONS_DIR


@dataclasses.dataclass
class Curve:
    name: str
    minutes: np.ndarray  # [E]: training minutes when each epoch ended
    test_loss: np.ndarray  # [E]: the test -ELBO after each epoch, nats
    iwae: list  # (minutes, IWAE NLL in nats, K) of each evaluated epoch, oldest first


def _evaluations(model_dir: str) -> list:
    paths = [os.path.join(model_dir, EVALUATION_FILE),
             *sorted(glob.glob(os.path.join(model_dir, EVALUATIONS_DIR, "*.json")))]
    found = []
    for path in paths:
        try:
            with open(path) as stream:
                found.append(json.load(stream))
        except (OSError, json.JSONDecodeError):
            continue
    return [result for result in found if "nll_iwae_nats" in result and "epoch" in result]


def curve(model_dir: str, name: str = "") -> Curve:
    """The time-to-quality curve of the run in `model_dir`."""
    rows = [row for row in run_dir.read_metrics(model_dir) if "val_loss" in row]
    if not rows:
        raise RunDirError(f"--model_dir={model_dir} has no epoch with a test loss in its "
                          f"metrics.csv; train at least one epoch first.")
    minutes = np.cumsum([row.get("epoch_seconds", 0.0) for row in rows]) / 60.0
    by_epoch = {row["epoch"] + 1: minute for row, minute in zip(rows, minutes)}
    best = {}  # epoch -> the evaluation with the most importance samples
    for result in _evaluations(model_dir):
        epoch = int(result["epoch"])
        if epoch in by_epoch and result.get("iw_samples", 0) >= best.get(
                epoch, {}).get("iw_samples", 0):
            best[epoch] = result
    iwae = [(float(by_epoch[epoch]), float(best[epoch]["nll_iwae_nats"]),
             int(best[epoch].get("iw_samples", 0))) for epoch in sorted(best)]
    return Curve(name or os.path.basename(os.path.normpath(model_dir)), minutes,
                 np.array([_negative_elbo(row) for row in rows]), iwae)


def _negative_elbo(row: dict) -> float:
    """The test -ELBO of a metrics.csv row: reconstruction plus the whole KL. `val_loss`
    weighs the KL by the epoch's warm-up weight (and adds a classifier's loss), so during
    a KL warm-up it is no likelihood bound at all."""
    if "val_reconstruction_loss" in row and "val_kl_loss" in row:
        return row["val_reconstruction_loss"] + row["val_kl_loss"]
    return row["val_loss"]


def epochs_to_reach(run: Curve, target: float) -> Optional[int]:
    """Epochs until the test loss was first at or below `target`; None if never."""
    reached = np.flatnonzero(run.test_loss <= target)
    return int(reached[0]) + 1 if len(reached) else None


def minutes_to_reach(run: Curve, target: float) -> Optional[float]:
    """Training minutes until the test loss was first at or below `target`; None if never."""
    epochs = epochs_to_reach(run, target)
    return float(run.minutes[epochs - 1]) if epochs else None


def measure(config, target: float) -> dict:
    """Trains `config` as `vae_tf.train` does, in a scratch folder, and returns the
    `time_to_quality` measurement of `vae_tf.benchmark --time_to_loss=TARGET`."""
    from vae_tf.run import training

    with tempfile.TemporaryDirectory() as scratch:
        run_config = dataclasses.replace(config, progress_bar=False, export=False,
                                         model_dir=os.path.join(scratch, "run"))
        with contextlib.redirect_stdout(sys.stderr):  # standard output is JSON lines only
            training.train_and_evaluate(run_config)
        run = curve(run_config.model_dir)
    return {"measure": "time_to_quality", "target_test_loss": target,
            "minutes": minutes_to_reach(run, target),
            "epochs_to_target": epochs_to_reach(run, target),
            "epochs": len(run.minutes), "minutes_trained": float(run.minutes[-1]),
            "final_test_loss": float(run.test_loss[-1]),
            "how": "python -m vae_tf.train's training from scratch; minutes are the sum of "
                   "epoch_seconds (training, test pass and every per-epoch extra)"}
