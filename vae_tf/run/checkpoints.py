"""A run's checkpoints: what they hold, how they are saved, and how a run is restored.

A checkpoint holds the model, the optimizer, the number of completed epochs
and the state of every random generator (latent noise, dropout), so that a
resumed run continues exactly where the saved one stopped. TensorFlow writes
each checkpoint into `ckpt-N_temp/` and renames the files into place, so a
checkpoint is whole or absent; one that cannot be read (a truncated or missing
file) is skipped with a warning in favour of the one before it, and a folder
left behind by an interrupted write is deleted when training starts.

Inside an epoch, `StepCheckpoint` saves the same state with the number of steps
done in the epoch (and the running means of its metrics) into
`checkpoints/in_epoch/`, so that a run stopped mid-epoch (a kill, a preemption's
SIGTERM) resumes at that step of the data stream rather than at the epoch's
start. Only training reads these; evaluation, figures and export read the
per-epoch checkpoints, which are whole epochs.
"""

import dataclasses
import glob
import math
import os
import re
import shutil
import time

import keras
import numpy as np
import tensorflow as tf

from vae_tf import compat, log
from vae_tf.errors import RunDirError, TrainingError
from vae_tf.model.vae import VAE
from vae_tf.run import optimizers, run_dir, trainable, tuning
from vae_tf.run.layout import CHECKPOINT_DIR, IN_EPOCH_DIR

# --checkpoint_every_steps=0 saves inside an epoch once this much training time has passed
# since the last checkpoint: a preemption then costs at most ten minutes of work.
DEFAULT_CHECKPOINT_SECONDS = 600
# What StepCheckpoint times training with; tests replace it with a clock of their own.
training_clock = time.monotonic


@dataclasses.dataclass
class RunState:
    """A built model with its optimizer and checkpoint, restored if one exists."""

    model: VAE
    checkpoint: tf.train.Checkpoint
    manager: tf.train.CheckpointManager
    epoch: tf.Variable  # completed epochs
    step: tf.Variable  # steps done in the epoch after them (0 at an epoch's end)
    in_epoch_manager: tf.train.CheckpointManager
    # The running metric means of the part-done epoch, restored from an in-epoch checkpoint;
    # Keras resets the metrics when an epoch begins, so they are put back after that.
    metric_values: list = dataclasses.field(default_factory=list)

    @property
    def completed_epochs(self) -> int:
        return int(self.epoch.numpy())

    @property
    def step_in_epoch(self) -> int:
        return int(self.step.numpy())


def random_states(model: keras.Model) -> list:
    """The state variables of the model's seed generators (`VAE.random_state_variables`)."""
    return model.random_state_variables()


def checkpoint_bytes(state: RunState) -> int:
    """About how many bytes one checkpoint of this run takes on disk (its variables' data)."""
    variables = {id(v): v for v in [*state.model.variables, *state.model.optimizer.variables]}
    return sum(int(np.prod(v.shape)) * tf.as_dtype(v.dtype).size for v in variables.values())


def metric_variables(model: keras.Model) -> list:
    """The state of the model's metric trackers (each mean's total and count)."""
    return [variable for metric in model.metrics for variable in metric.variables]


def restore_run(config, model_dir: str, spec=None, save_dir: str = None,
                in_epoch: bool = False) -> RunState:
    """Builds the trainable model (`trainable.build`; `config`'s `auto` settings decided),
    then restores the newest checkpoint if any, checked to have matched every object.

    Checkpoints are read from `model_dir`; with `save_dir`, new ones are saved there
    instead. With
    `in_epoch`, an in-epoch checkpoint newer than the last epoch's is restored
    (training); without, only whole epochs are (evaluation, figures, export).
    `spec` (the data's image shape and classes) defaults to the run's data.json.
    """
    spec = spec or run_dir.load_data_spec(model_dir, config.dataset)
    # The loss scale of --mixed_precision=float16 is not saved, and starts afresh on resume.
    model, optimizer = trainable.build(config, spec)
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch, step=step,
                                     random_states=random_states(model),
                                     metrics=metric_variables(model))
    folder = os.path.join(model_dir, CHECKPOINT_DIR)
    manager = tf.train.CheckpointManager(checkpoint, folder,
                                         max_to_keep=config.keep_checkpoints)
    in_epoch_manager = _in_epoch_manager(checkpoint, folder)
    # Checkpoints saved before vae_tf recorded the in-epoch step and the metrics lack both;
    # they restore through the layout they were written with.
    earlier_layout = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch,
                                         random_states=random_states(model))
    layouts = (checkpoint, earlier_layout)
    _restore_newest_readable(layouts, checkpoint_paths(manager), manager.directory)
    metric_values = []
    if in_epoch:
        done = (int(epoch.numpy()), int(step.numpy()))
        # Unreadable ones stay in, so that restoring them says why they were skipped.
        later = [path for path in checkpoint_paths(in_epoch_manager)
                 if (_position(path) or (math.inf,)) > done]
        try:
            restored = _restore_newest_readable(layouts, later, in_epoch_manager.directory)
        except RunDirError as error:
            log.warning(f"{error} Resuming from the last epoch's checkpoint instead.")
            _restore_newest_readable(layouts, checkpoint_paths(manager), manager.directory)
            restored = None
        if restored:
            metric_values = [variable.numpy() for variable in metric_variables(model)]
    if save_dir:
        manager = tf.train.CheckpointManager(checkpoint, save_dir, max_to_keep=1)
        in_epoch_manager = _in_epoch_manager(checkpoint, save_dir)
    # The checkpoint holds the learning rate it was saved with; --learning_rate may change
    # between resumes (to fine-tune at a lower rate), so the flag wins.
    optimizer.learning_rate.assign(config.learning_rate)
    if not in_epoch:  # a finished model is used with its averaged weights (--ema_momentum)
        optimizers.load_average(model)
    return RunState(model, checkpoint, manager, epoch, step, in_epoch_manager, metric_values)


def _in_epoch_manager(checkpoint, folder: str) -> tf.train.CheckpointManager:
    return tf.train.CheckpointManager(checkpoint, os.path.join(folder, IN_EPOCH_DIR),
                                      max_to_keep=1)


def _position(path: str):
    """(completed epochs, steps into the next) that a checkpoint holds; None if unreadable."""
    try:
        reader = tf.train.load_checkpoint(path)
        return (int(reader.get_tensor("epoch/.ATTRIBUTES/VARIABLE_VALUE")),
                int(reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE")))
    except (*compat.UNREADABLE_CHECKPOINT_ERRORS, ValueError):
        return None  # restoring it reports why


def resume_position(model_dir: str) -> tuple:
    """(completed epochs, steps into the next) where training in `model_dir` would resume.

    Read from the files, without building the model: the steps per execution
    must divide the steps left in a part-done epoch before the model is compiled.
    """
    folder = os.path.join(model_dir, CHECKPOINT_DIR)
    positions = [(0, 0)]
    for directory in (folder, os.path.join(folder, IN_EPOCH_DIR)):
        path = tf.train.latest_checkpoint(directory) if os.path.isdir(directory) else None
        if path:
            positions.append(_position(path) or (0, 0))
    return max(positions)


def any_saved(model_dir: str) -> bool:
    """Whether the run's folder holds any checkpoint's files, per epoch or in an epoch."""
    folder = os.path.join(model_dir, CHECKPOINT_DIR)
    return bool(glob.glob(os.path.join(folder, "ckpt-*.index")) or
                glob.glob(os.path.join(folder, IN_EPOCH_DIR, "ckpt-*.index")))


def restore_trained(model_dir: str):
    """(config, RunState) of a run with at least one checkpoint; RunDirError otherwise."""
    config = run_dir.load_config(model_dir)
    # --jit_compile=auto and --steps_per_execution=auto were decided when training started.
    state = restore_run(tuning.resolved(config, model_dir), model_dir)
    if not checkpoint_paths(state.manager):
        raise RunDirError(f"--model_dir={model_dir} has no checkpoint yet; train at least one "
                          f"epoch first.")
    return config, state


def checkpoint_paths(manager: tf.train.CheckpointManager) -> list:
    """Checkpoint prefixes, oldest first: the manager's record, or the files if it is lost."""
    if manager.checkpoints:
        return list(manager.checkpoints)
    # Without the record (a deleted or unreadable `checkpoint` file) the files still count:
    # training must not silently start over beside them.
    indexes = glob.glob(os.path.join(manager.directory, "ckpt-*.index"))
    numbered = [(int(m.group(1)), path[:-len(".index")]) for path in indexes
                if (m := re.search(r"ckpt-(\d+)\.index$", path))]
    return [path for _, path in sorted(numbered)]


def _restore_one(layouts, path: str) -> None:
    """Restores `path` through the first layout all of whose objects it matches.

    Unreadable files raise one of compat.UNREADABLE_CHECKPOINT_ERRORS; a
    checkpoint that matches no layout is another configuration's (RunDirError).
    """
    for layout in layouts:
        try:
            status = layout.restore(path)
        except ValueError as error:  # a variable of another shape
            raise _foreign_checkpoint(path, error) from None
        try:
            status.assert_existing_objects_matched()
            return
        except AssertionError as error:
            mismatch = error
    raise _foreign_checkpoint(path, mismatch) from None


def _restore_newest_readable(layouts, paths: list, directory: str):
    """Restores the newest checkpoint that reads whole, saying which unreadable ones it skipped.

    A checkpoint whose files are truncated or missing (a kill during the
    write, a full disk) is skipped with a one-line warning in favour of the one
    before it. One that reads but does not fit the model is another
    configuration's, and refused. If checkpoints exist but none reads, the run
    stops rather than start over. Returns the path restored, or None.
    """
    skipped = []
    for path in reversed(paths):
        try:
            _restore_one(layouts, path)
        except compat.UNREADABLE_CHECKPOINT_ERRORS as error:
            skipped.append(f"{path} ({_first_line(error)})")
            continue
        for unreadable in skipped:
            log.warning(f"skipped the unreadable checkpoint {unreadable}; resuming from {path}.")
        return path
    if skipped:
        raise RunDirError(f"no checkpoint in {directory} can be read: {skipped[0]}; "
                          f"move the folder aside to start over, or pass --overwrite.")
    return None


def remove_interrupted_writes(model_dir: str) -> None:
    """Deletes the temporary folders of checkpoint writes that a kill interrupted.

    TensorFlow writes a checkpoint into `ckpt-N_temp/` and renames the files
    into place, so these folders never hold a usable checkpoint.
    """
    for folder in glob.glob(os.path.join(model_dir, CHECKPOINT_DIR, "ckpt-*_temp")):
        shutil.rmtree(folder, ignore_errors=True)


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _foreign_checkpoint(path: str, error: Exception) -> RunDirError:
    return RunDirError(f"{path}: does not match this configuration ({_first_line(error)}); use "
                       f"another --model_dir, or --overwrite to move the old run aside.")


def _require_finite(model: keras.Model, when: str) -> None:
    for variable in model.trainable_variables:
        if not np.all(np.isfinite(keras.ops.convert_to_numpy(variable))):
            raise TrainingError(
                f"weight {variable.path} is not finite {when}; it was not saved, and the "
                f"previous checkpoint is kept. Try a lower --learning_rate.")


def remove_in_epoch(state: RunState) -> None:
    """Deletes the in-epoch checkpoints, which a newer epoch checkpoint has made stale."""
    directory = state.in_epoch_manager.directory
    for path in glob.glob(os.path.join(directory, "*")):
        if os.path.isfile(path):
            os.remove(path)
    state.in_epoch_manager = _in_epoch_manager(state.checkpoint, os.path.dirname(directory))


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves model, optimizer, epoch and RNG state through a CheckpointManager.

    The in-epoch checkpoint of the epoch, if any, is deleted once the epoch's own is saved.
    With a `metrics_log` (`callbacks.MetricsLog`), the seconds the save took are
    added to the epoch's row of metrics.csv as `checkpoint_seconds`.
    """

    def __init__(self, state: RunState, metrics_log=None):
        super().__init__()
        self.state = state
        self.metrics_log = metrics_log

    def on_epoch_end(self, epoch, logs=None):
        start = time.perf_counter()
        _require_finite(self.model, f"after epoch {epoch + 1}")
        self.state.epoch.assign(epoch + 1)
        self.state.step.assign(0)
        self.state.manager.save(checkpoint_number=epoch + 1)
        if self.state.in_epoch_manager.checkpoints:
            remove_in_epoch(self.state)
        if self.metrics_log is not None:
            self.metrics_log.add(epoch, checkpoint_seconds=time.perf_counter() - start)


class StepCheckpoint(keras.callbacks.Callback):
    """Saves an in-epoch checkpoint every `every_steps` steps, or every `every_seconds`.

    `first_step` is the step of the epoch at which this `fit` call started (a
    run resumed inside an epoch); the saved `step` counts from the epoch's
    start, so that the resumed run starts its data stream there. With both
    `every_steps` and `every_seconds` falsy it only saves when asked (`save`).
    """

    def __init__(self, state: RunState, steps_per_epoch: int, first_step: int = 0,
                 every_steps: int = 0, every_seconds: float = 0):
        super().__init__()
        self.state = state
        self.steps_per_epoch = steps_per_epoch
        self.first_step = first_step
        self.every_steps = every_steps
        self.every_seconds = every_seconds
        self.epoch = 0
        self.steps_done = first_step  # in the current epoch
        self.last_save = training_clock()
        self.saved = (None, None, None)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        if self.first_step and self.state.metric_values:
            # Keras has just reset the metrics; the part-done epoch's running means go back.
            for variable, value in zip(metric_variables(self.model), self.state.metric_values):
                variable.assign(value)

    def on_epoch_end(self, epoch, logs=None):
        self.first_step = self.steps_done = 0
        self.last_save = training_clock()

    def on_train_batch_end(self, batch, logs=None):
        self.steps_done = self.first_step + batch + 1
        if self.steps_done >= self.steps_per_epoch:
            return  # the epoch's own checkpoint follows
        due = (self.steps_done % self.every_steps == 0 if self.every_steps else
               bool(self.every_seconds) and
               training_clock() - self.last_save >= self.every_seconds)
        if due:
            self.save()

    def save(self) -> str:
        """Saves the state after the steps done so far; returns the checkpoint's path."""
        if self.saved[:2] == (self.epoch, self.steps_done):
            return self.saved[2]
        _require_finite(self.model, f"in epoch {self.epoch + 1}, step {self.steps_done}")
        self.state.epoch.assign(self.epoch)
        self.state.step.assign(self.steps_done)
        path = self.state.in_epoch_manager.save(
            checkpoint_number=self.epoch * self.steps_per_epoch + self.steps_done)
        self.last_save = training_clock()
        self.saved = (self.epoch, self.steps_done, path)
        return path
