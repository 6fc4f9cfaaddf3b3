"""A run's checkpoints: what they hold, how they are saved, and how a run is restored.

A checkpoint holds the model, the optimizer, the number of completed epochs
and the state of every random generator (latent noise, dropout), so that a
resumed run continues exactly where the saved one stopped. TensorFlow writes
each checkpoint into `ckpt-N_temp/` and renames the files into place, so a
checkpoint is whole or absent; one that cannot be read (a truncated or missing
file) is skipped with a warning in favour of the one before it, and a folder
left behind by an interrupted write is deleted when training starts.
"""

import dataclasses
import glob
import os
import re
import shutil

import keras
import numpy as np
import tensorflow as tf

from vae_tf import compat, log, run_dir
from vae_tf.data import NUM_CLASSES
from vae_tf.errors import RunDirError, TrainingError
from vae_tf.models import VAE, build_vae

CHECKPOINT_DIR = "checkpoints"


@dataclasses.dataclass
class RunState:
    """A built model with its optimizer and checkpoint, restored if one exists."""

    model: VAE
    checkpoint: tf.train.Checkpoint
    manager: tf.train.CheckpointManager
    epoch: tf.Variable  # completed epochs

    @property
    def completed_epochs(self) -> int:
        return int(self.epoch.numpy())


def random_states(model: keras.Model) -> list:
    """The state variables of the model's seed generators (latent noise, dropout).

    Keras does not count them as weights, so checkpoints and SavedModels must
    be given them explicitly.
    """
    weight_ids = {id(variable) for variable in model.weights}
    return [variable for variable in model.variables if id(variable) not in weight_ids]


def restore_run(config, model_dir: str, num_classes: int = NUM_CLASSES,
                save_dir: str = None) -> RunState:
    """Builds the model and optimizer, then restores the newest checkpoint if any.

    Restoring into unbuilt objects silently does nothing, so the model is
    called on a batch and the optimizer built before the restore, which is then
    checked to have matched every object. Checkpoints are read from
    `model_dir`; with `save_dir`, new ones are saved there instead.
    """
    model = build_vae(config, num_classes)
    optimizer = compat.make_adam(config.learning_rate)
    model.compile(optimizer=optimizer, jit_compile=config.jit_compile,
                  steps_per_execution=config.steps_per_execution)
    # Under --mixed_precision=float16, compile wraps Adam in a LossScaleOptimizer; the
    # checkpoint holds Adam itself, so its layout does not depend on the precision (the
    # loss scale is not saved, and starts afresh on resume).
    model.optimizer.build(model.trainable_variables)
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch,
                                     random_states=random_states(model))
    manager = tf.train.CheckpointManager(checkpoint, os.path.join(model_dir, CHECKPOINT_DIR),
                                         max_to_keep=config.keep_checkpoints)
    _restore_newest_readable(checkpoint, manager)
    if save_dir:
        manager = tf.train.CheckpointManager(checkpoint, save_dir, max_to_keep=1)
    # The checkpoint holds the learning rate it was saved with; --learning_rate may change
    # between resumes (to fine-tune at a lower rate), so the flag wins.
    optimizer.learning_rate.assign(config.learning_rate)
    return RunState(model, checkpoint, manager, epoch)


def restore_trained(model_dir: str):
    """(config, RunState) of a run with at least one checkpoint; RunDirError otherwise."""
    config = run_dir.load_config(model_dir)
    state = restore_run(config, model_dir)
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


def _restore_newest_readable(checkpoint: tf.train.Checkpoint,
                             manager: tf.train.CheckpointManager) -> None:
    """Restores the newest checkpoint that reads whole, saying which unreadable ones it skipped.

    A checkpoint whose files are truncated or missing (a kill during the
    write, a full disk) is skipped with a one-line warning in favour of the one
    before it. One that reads but does not fit the model is another
    configuration's, and refused. If checkpoints exist but none reads, the run
    stops rather than start over.
    """
    paths = checkpoint_paths(manager)
    skipped = []
    for path in reversed(paths):
        try:
            status = checkpoint.restore(path)
        except compat.UNREADABLE_CHECKPOINT_ERRORS as error:
            skipped.append(f"{path} ({_first_line(error)})")
            continue
        except ValueError as error:  # a variable of another shape
            raise _foreign_checkpoint(path, error) from None
        try:
            status.assert_existing_objects_matched()
        except AssertionError as error:
            raise _foreign_checkpoint(path, error) from None
        for unreadable in skipped:
            log.warning(f"skipped the unreadable checkpoint {unreadable}; resuming from {path}.")
        return
    if skipped:
        raise RunDirError(f"no checkpoint in {manager.directory} can be read: {skipped[0]}; "
                          f"move the folder aside to start over, or pass --overwrite.")


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


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves model, optimizer, epoch and RNG state through a CheckpointManager."""

    def __init__(self, manager: tf.train.CheckpointManager, epoch_variable: tf.Variable):
        super().__init__()
        self.manager = manager
        self.epoch_variable = epoch_variable

    def on_epoch_end(self, epoch, logs=None):
        for variable in self.model.trainable_variables:
            if not np.all(np.isfinite(keras.ops.convert_to_numpy(variable))):
                raise TrainingError(
                    f"weight {variable.path} is not finite after epoch {epoch + 1}; it was not "
                    f"saved, and the previous checkpoint is kept. Try a lower --learning_rate.")
        self.epoch_variable.assign(epoch + 1)
        self.manager.save(checkpoint_number=epoch + 1)
