"""The model directory of a run: who owns it, and its small text artefacts.

A model directory belongs to one configuration, recorded in `config.json`.
Running the same configuration again resumes it; a different one is refused,
or with `--overwrite` moved aside to `<model_dir>.replaced-<time>` so that no
earlier run is lost. `flags.txt` holds the resolved flags, so that
`--flagfile=<model_dir>/flags.txt` reruns the run.
"""

import csv
import dataclasses
import io
import json
import os
import time

from vae_tf import log
from vae_tf.config import Config
from vae_tf.data import sources
from vae_tf.errors import RunDirError
from vae_tf.files import write_text_atomically
from vae_tf.run import run_lock
from vae_tf.run.layout import (
    CONFIG_FILE,
    DATA_FILE,
    EVALUATION_FILE,
    EVALUATIONS_DIR,
    EXPORT_DIR,
    FLAGS_FILE,
    LOCK_FILE,
    METRICS_FILE,
)


def trained_artefacts(model_dir: str) -> list:
    """What in the folder shows that a checkpoint was saved there: names, for a message.

    A row of metrics.csv with `checkpoint_seconds` (added once the epoch's
    checkpoint is saved) or a second epoch's row, an export or an evaluation
    all come after a checkpoint; a first row alone may be an epoch killed
    before its checkpoint was written, which training redoes.
    """
    found = []
    rows = read_metrics(model_dir)
    if any(row["epoch"] >= 1 or "checkpoint_seconds" in row for row in rows):
        found.append(f"{METRICS_FILE} of {len(rows)} epochs")
    for name in (EXPORT_DIR, EVALUATION_FILE, EVALUATIONS_DIR):
        if os.path.exists(os.path.join(model_dir, name)):
            found.append(name)
    return found


def _describe(identity: dict, keys) -> str:
    """Settings as flags would spell them: `arch=mlp, encoder_layers=64,32`."""
    def spell(value):
        return ",".join(map(str, value)) if isinstance(value, list) else value
    return ", ".join(f"{key}={spell(identity.get(key))}" for key in keys)


def prepare(config: Config) -> str:
    """Checks that the model directory can hold this run and creates it.

    Returns the model directory. Raises RunDirError for a directory that holds
    another configuration's run (unless `config.overwrite`), or that is a file.
    """
    model_dir = config.resolved_model_dir()
    if os.path.exists(model_dir) and not os.path.isdir(model_dir):
        raise RunDirError(f"--model_dir={model_dir} is a file, not a folder; choose another "
                          f"--model_dir.")
    config_path = os.path.join(model_dir, CONFIG_FILE)
    if os.path.isdir(model_dir) and set(os.listdir(model_dir)) - {LOCK_FILE}:
        problem = None
        if not os.path.isfile(config_path):
            problem = "holds files but no vae_tf run (no config.json)"
        else:
            with open(config_path) as stream:
                stored = Config.from_dict(json.load(stream)).identity()
            wanted = config.identity()
            differing = [key for key in wanted if stored.get(key) != wanted[key]]
            if differing:
                problem = (f"holds a run with {_describe(stored, differing)} (this run asks for "
                           f"{_describe(wanted, differing)})")
        if problem and not config.overwrite:
            raise RunDirError(f"--model_dir={model_dir} {problem}; choose another --model_dir, "
                              f"or pass --overwrite to move the old run aside.")
        if config.overwrite and run_lock.owner(model_dir):
            raise RunDirError(f"--model_dir={model_dir} is in use by a running vae_tf run; "
                              f"--overwrite moves a folder aside only when no run holds it.")
        if config.overwrite:
            moved = f"{model_dir.rstrip(os.sep)}.replaced-{time.strftime('%Y%m%d-%H%M%S')}"
            os.rename(model_dir, moved)
            log.info(f"moved the previous run in {model_dir} to {moved}.")
    try:
        os.makedirs(model_dir, exist_ok=True)
    except OSError as error:
        raise RunDirError(f"--model_dir={model_dir} cannot be created ({error.strerror}); "
                          f"choose a writable --model_dir.") from None
    if not os.access(model_dir, os.W_OK):
        raise RunDirError(f"--model_dir={model_dir} is not writable; choose a writable "
                          f"--model_dir.")
    return model_dir


def write_config(config: Config, model_dir: str) -> None:
    """Writes config.json and flags.txt for this invocation.

    The stored flags name the resolved model directory and never --overwrite,
    so rerunning them resumes this run rather than moving it aside.
    """
    stored = dataclasses.replace(config, model_dir=model_dir, overwrite=False)
    write_text_atomically(os.path.join(model_dir, CONFIG_FILE), stored.to_json() + "\n")
    lines = [f"# Resolved flags of this run; rerun it with --flagfile={model_dir}/{FLAGS_FILE}"]
    write_text_atomically(os.path.join(model_dir, FLAGS_FILE),
                      "\n".join(lines + stored.to_flag_lines()) + "\n")


def write_data_spec(dataset, model_dir: str) -> None:
    """Records the data set's image shape, class names and origin in data.json.

    A run trained on data of another shape or other classes than the recorded
    ones is refused: its model could not restore the checkpoints.
    """
    path = os.path.join(model_dir, DATA_FILE)
    if os.path.isfile(path):
        stored = load_data_spec(model_dir, dataset.name)
        if stored != dataset.spec:
            raise RunDirError(
                f"--model_dir={model_dir} holds a model of {_spec_text(stored)} images, but "
                f"--dataset={dataset.name} now gives {_spec_text(dataset.spec)}; choose "
                f"another --model_dir, or pass --overwrite to move the old run aside.")
    record = dict(dataset.spec.to_dict(), source=dataset.source,
                  train_examples=len(dataset.train), test_examples=len(dataset.test),
                  streamed=dataset.streamed)
    write_text_atomically(path, json.dumps(record, indent=2) + "\n")


def _spec_text(spec) -> str:
    classes = f"{spec.num_classes} classes" if spec.num_classes else "no labels"
    return f"{'x'.join(map(str, spec.image_shape))} ({classes})"


def load_data_spec(model_dir: str, dataset_name: str):
    """The DataSpec recorded in a run; MNIST's for runs recorded before data.json existed."""
    path = os.path.join(model_dir, DATA_FILE)
    if not os.path.isfile(path):
        return sources.mnist_spec(dataset_name)
    with open(path) as stream:
        return sources.DataSpec.from_dict(json.load(stream))


def load_config(model_dir: str) -> Config:
    """The configuration stored in a model directory."""
    path = os.path.join(model_dir, CONFIG_FILE)
    if not os.path.isfile(path):
        raise RunDirError(f"--model_dir={model_dir} holds no vae_tf run (no {CONFIG_FILE}); "
                          f"train one there first with python -m vae_tf.train.")
    with open(path) as stream:
        return Config.from_dict(json.load(stream))


def read_metrics(model_dir: str) -> list:
    """The rows of metrics.csv as dicts of floats (epoch as int)."""
    path = os.path.join(model_dir, METRICS_FILE)
    if not os.path.isfile(path):
        return []
    with open(path, newline="") as stream:
        rows = list(csv.DictReader(stream))
    return [{key: (int(value) if key == "epoch" else float(value))
             for key, value in row.items() if value not in (None, "")} for row in rows]


def _write_metrics(path: str, rows: list) -> None:
    columns = ["epoch"] + sorted({key for row in rows for key in row} - {"epoch"})
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomically(path, text.getvalue())


def write_metrics_row(model_dir: str, epoch: int, values: dict) -> None:
    """Adds the row of `epoch` (0-based) to metrics.csv, or updates its columns in place.

    The file is rewritten whole and atomically, with a column for every key any
    row has (left empty in rows without it), so a kill never leaves half a row
    and later versions may add columns.
    """
    path = os.path.join(model_dir, METRICS_FILE)
    rows = []
    if os.path.isfile(path):
        with open(path, newline="") as stream:
            rows = [{key: value for key, value in row.items() if value not in (None, "")}
                    for row in csv.DictReader(stream)]
    mine = [row for row in rows if int(row["epoch"]) == epoch]
    if mine:
        mine[0].update({key: repr(float(value)) for key, value in values.items()})
    else:
        rows.append({"epoch": str(epoch),
                     **{key: repr(float(value)) for key, value in values.items()}})
    _write_metrics(path, rows)


def trim_metrics(model_dir: str, first_epoch: int) -> None:
    """Drops metrics.csv rows of epochs >= first_epoch, which a resumed run redoes."""
    path = os.path.join(model_dir, METRICS_FILE)
    if not os.path.isfile(path):
        return
    with open(path, newline="") as stream:
        rows = list(csv.reader(stream))
    if not rows:
        return
    kept = [rows[0]] + [row for row in rows[1:] if row and int(row[0]) < first_epoch]
    if len(kept) != len(rows):
        text = io.StringIO()
        csv.writer(text).writerows(kept)
        write_text_atomically(path, text.getvalue())
