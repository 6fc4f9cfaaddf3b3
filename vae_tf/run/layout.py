"""The layout of a run folder (`--model_dir`): every name under it, defined here only.

    <model_dir>/
      .lock                    held while a run trains (`run_lock`)
      flags.txt, config.json   the run's settings (`run_dir`)
      data.json                the image shape and class names the model was built for
      metrics.csv              one row per epoch
      tuning.json              settings chosen by measurement (`tuning`)
      checkpoints/             the epoch checkpoints; in_epoch/: the newest inside an epoch
      tensorboard/             train/, test/, figures/ (images, graph, projector), evaluation/
      figures/                 PNGs and GIFs; history/: the arrays of each epoch's figures
      saved_model/             the exported versions 1, 2, ...; current: the newest
      evaluation.json          the newest evaluation; evaluations/: every one, and
                               in_progress/: the sums of one stopped part-way
      vae-<epoch>.keras        `vae-tf-export --format=keras`
"""

import os

LOCK_FILE = ".lock"
FLAGS_FILE = "flags.txt"
CONFIG_FILE = "config.json"
DATA_FILE = "data.json"
METRICS_FILE = "metrics.csv"
TUNING_FILE = "tuning.json"
CHECKPOINT_DIR = "checkpoints"
IN_EPOCH_DIR = "in_epoch"  # under CHECKPOINT_DIR
TENSORBOARD_DIR = "tensorboard"
TENSORBOARD_FIGURES_DIR = os.path.join(TENSORBOARD_DIR, "figures")
TENSORBOARD_EVALUATION_DIR = os.path.join(TENSORBOARD_DIR, "evaluation")
FIGURES_DIR = "figures"
HISTORY_DIR = os.path.join(FIGURES_DIR, "history")
EXPORT_DIR = "saved_model"
CURRENT = "current"  # in EXPORT_DIR: the one link naming the newest version
EVALUATION_FILE = "evaluation.json"
EVALUATIONS_DIR = "evaluations"
EVALUATIONS_IN_PROGRESS_DIR = os.path.join(EVALUATIONS_DIR, "in_progress")


def keras_file(epoch: int) -> str:
    """The name of the `.keras` file exported after `epoch`."""
    return f"vae-{epoch}.keras"
