"""Training and per-epoch evaluation of a VAE, with checkpoints and resumption.

`train_and_evaluate(config)` is what `python -m vae_tf.train` runs and what
tests call directly. Each epoch it evaluates the test split, writes TensorBoard
scalars and a row of metrics.csv, and saves a checkpoint (model, optimizer,
epoch and the state of every random generator). Calling it again with the
same configuration resumes after the last completed epoch, with the data
order an uninterrupted run would have had.
"""

import dataclasses
import glob
import math
import os
import re
import shutil
import sys
import tempfile

import keras
import tensorflow as tf

from vae_tf import callbacks, data, distribution, exporting, figures, run_dir
from vae_tf.config import Config
from vae_tf.errors import ConfigError, RunDirError
from vae_tf.models import VAE, build_vae, random_states
from vae_tf.optimizers import FusedAdam


@dataclasses.dataclass
class TrainResult:
    model_dir: str
    model: VAE
    initial_epoch: int  # epochs already completed when this call started
    epochs: int  # epochs completed when it returned
    metrics: list  # rows of metrics.csv, one per completed epoch


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


def restore_run(config: Config, model_dir: str, num_classes: int = data.NUM_CLASSES,
                save_dir: str = None) -> RunState:
    """Builds the model and optimizer, then restores the newest checkpoint if any.

    Restoring into unbuilt objects silently does nothing, so the model is
    called on a batch and the optimizer built before the restore, which is then
    checked to have matched every object. Checkpoints are read from
    `model_dir`; with `save_dir`, new ones are saved there instead.
    """
    model = build_vae(config, num_classes)
    optimizer = FusedAdam(config.learning_rate)
    model.compile(optimizer=optimizer, jit_compile=config.jit_compile,
                  steps_per_execution=config.steps_per_execution)
    # Under --mixed_precision=float16, compile wraps Adam in a LossScaleOptimizer; the
    # checkpoint holds Adam itself, so its layout does not depend on the precision (the
    # loss scale is not saved, and starts afresh on resume).
    model.optimizer.build(model.trainable_variables)
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch,
                                     random_states=random_states(model))
    manager = tf.train.CheckpointManager(
        checkpoint, os.path.join(model_dir, run_dir.CHECKPOINT_DIR),
        max_to_keep=config.keep_checkpoints)
    _restore_newest_readable(checkpoint, manager)
    if save_dir:
        manager = tf.train.CheckpointManager(checkpoint, save_dir, max_to_keep=1)
    # The checkpoint holds the learning rate it was saved with; --learning_rate may change
    # between resumes (to fine-tune at a lower rate), so the flag wins.
    optimizer.learning_rate.assign(config.learning_rate)
    return RunState(model, checkpoint, manager, epoch)


def _checkpoint_paths(manager: tf.train.CheckpointManager) -> list:
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
    paths = _checkpoint_paths(manager)
    skipped = []
    for path in reversed(paths):
        try:
            status = checkpoint.restore(path)
        except (tf.errors.OpError, IndexError) as error:  # unreadable files
            skipped.append(f"{path} ({_first_line(error)})")
            continue
        except ValueError as error:  # a variable of another shape
            raise _foreign_checkpoint(path, error) from None
        try:
            status.assert_existing_objects_matched()
        except AssertionError as error:
            raise _foreign_checkpoint(path, error) from None
        for unreadable in skipped:
            print(f"vae_tf: warning: skipped the unreadable checkpoint {unreadable}; "
                  f"resuming from {path}.", file=sys.stderr)
        return
    if skipped:
        raise RunDirError(f"no checkpoint in {manager.directory} can be read: {skipped[0]}; "
                          f"move the folder aside to start over, or pass --overwrite.")


def _remove_interrupted_writes(model_dir: str) -> None:
    """Deletes the temporary folders of checkpoint writes that a kill interrupted.

    TensorFlow writes a checkpoint into `ckpt-N_temp/` and renames the files
    into place, so these folders never hold a usable checkpoint.
    """
    for folder in glob.glob(os.path.join(model_dir, run_dir.CHECKPOINT_DIR, "ckpt-*_temp")):
        shutil.rmtree(folder, ignore_errors=True)


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _foreign_checkpoint(path: str, error: Exception) -> RunDirError:
    return RunDirError(f"{path}: does not match this configuration ({_first_line(error)}); use "
                       f"another --model_dir, or --overwrite to move the old run aside.")


def restore_trained(model_dir: str):
    """(config, RunState) of a run with at least one checkpoint; RunDirError otherwise."""
    config = run_dir.load_config(model_dir)
    state = restore_run(config, model_dir)
    if not _checkpoint_paths(state.manager):
        raise RunDirError(f"--model_dir={model_dir} has no checkpoint yet; train at least one "
                          f"epoch first.")
    return config, state


def _epoch_callbacks(config, state, model_dir, dataset, test_split, chief: bool) -> list:
    """The callbacks of `fit`, in order; a non-chief worker only keeps its own checkpoint."""
    # Order matters: the epoch is recorded everywhere before its checkpoint is saved.
    epoch_callbacks = [
        callbacks.StopOnInterrupt(),
        callbacks.KLWarmup(config.beta, config.kl_warmup_epochs),
        callbacks.EpochTimer(),
        callbacks.StopOnNonFinite(),
    ]
    if chief:
        epoch_callbacks += [
            callbacks.TensorBoardScalars(os.path.join(model_dir, run_dir.TENSORBOARD_DIR)),
            keras.callbacks.CSVLogger(os.path.join(model_dir, run_dir.METRICS_FILE),
                                      append=True),
        ]
        if config.figures_every:
            fixed = figures.FixedInputs.from_split(test_split, dataset.class_names,
                                                   config.seed)
            epoch_callbacks.append(callbacks.FigureWriter(
                fixed, model_dir, os.path.join(model_dir, run_dir.TENSORBOARD_DIR),
                config.figures_every, config.epochs))
    epoch_callbacks.append(callbacks.EpochCheckpoint(state.manager, state.epoch))
    return epoch_callbacks


def train_and_evaluate(config: Config) -> TrainResult:
    """Trains `config.epochs` epochs in total, resuming a run in the model directory.

    Under `--strategy=multi_worker` every worker calls this; all of them read
    the chief's checkpoints from the model directory, and the others write
    theirs (which tf.distribute needs every worker to save) to a scratch folder
    that is deleted at the end.
    """
    config.validate()
    distribution.configure_threads(config.intra_op_threads, config.inter_op_threads)
    strategy = distribution.make_strategy(config.strategy)  # before any other TF op
    chief = distribution.is_chief(strategy)
    dataset = data.load_dataset(config.dataset, config.data_dir)
    if config.batch_size > len(dataset.train):
        raise ConfigError(f"--batch_size={config.batch_size} is larger than the "
                          f"{len(dataset.train):,} images of the {config.dataset} training "
                          f"split; use a smaller --batch_size.")
    if config.batch_size % strategy.num_replicas_in_sync:
        raise ConfigError(f"--batch_size={config.batch_size} does not split evenly over the "
                          f"{strategy.num_replicas_in_sync} replicas of --strategy="
                          f"{config.strategy}; use a multiple of "
                          f"{strategy.num_replicas_in_sync}.")
    if chief:
        model_dir = run_dir.prepare(config)  # only now, so bad data leaves no folder behind
        _remove_interrupted_writes(model_dir)
        scratch = None
    else:
        model_dir = config.resolved_model_dir()
        scratch = tempfile.mkdtemp(prefix="vae_tf-worker-")
    try:
        return _train(config, strategy, dataset, model_dir, scratch)
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)


def _whole_executions(config: Config, steps_per_epoch: int, chief: bool) -> Config:
    """`config` with --steps_per_execution lowered, if need be, to divide the epoch's steps.

    Keras would otherwise run whole executions past the end of each epoch, and a
    resumed run would no longer see the batches an uninterrupted one saw.
    """
    wanted = config.steps_per_execution
    fitting = max(n for n in range(1, min(wanted, steps_per_epoch) + 1)
                  if steps_per_epoch % n == 0)
    if fitting == wanted:
        return config
    if chief:
        print(f"vae_tf: --steps_per_execution={wanted} lowered to {fitting}, the largest "
              f"divisor of the epoch's {steps_per_epoch} steps.", file=sys.stderr)
    return dataclasses.replace(config, steps_per_execution=fitting)


def _train(config, strategy, dataset, model_dir: str, scratch) -> TrainResult:
    chief = scratch is None
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    steps_per_epoch = config.steps_per_epoch or math.ceil(len(dataset.train) / config.batch_size)
    with strategy.scope():
        state = restore_run(_whole_executions(config, steps_per_epoch, chief), model_dir,
                            save_dir=scratch)
    initial_epoch = state.completed_epochs
    if chief:
        run_dir.write_config(config, model_dir)
        run_dir.trim_metrics(model_dir, initial_epoch)
        print(f"vae_tf: {config.arch} VAE on {config.dataset} ({len(dataset.train):,} training "
              f"and {len(dataset.test):,} test images from {dataset.source}) in {model_dir}"
              + (f" on {strategy.num_replicas_in_sync} replicas"
                 if strategy.num_replicas_in_sync > 1 else "")
              + (f", resuming after epoch {initial_epoch}" if initial_epoch else ""))
    if initial_epoch >= config.epochs:
        if chief:
            print(f"vae_tf: already trained for {initial_epoch} epochs (--epochs="
                  f"{config.epochs}); raise --epochs to train further.")
    else:
        train_batches = data.train_pipeline(dataset.train, config.batch_size, config.seed,
                                            start_batch=initial_epoch * steps_per_epoch,
                                            binarize=config.binarize)
        test_split = data.prepare_test_split(dataset.test, config.binarize)
        test_batches = data.eval_pipeline(test_split, config.eval_batch_size)
        state.model.fit(train_batches, epochs=config.epochs, initial_epoch=initial_epoch,
                        steps_per_epoch=steps_per_epoch, validation_data=test_batches,
                        callbacks=_epoch_callbacks(config, state, model_dir, dataset,
                                                   test_split, chief),
                        shuffle=False, verbose=1 if config.progress_bar and chief else 0)
    if config.export and (initial_epoch < config.epochs or not os.path.isdir(
            os.path.join(model_dir, exporting.EXPORT_DIR))):
        # Every worker saves (tf.distribute needs them all); only the chief's is kept.
        path = exporting.export_model(state.model, config, scratch or model_dir, overwrite=True)
        if chief:
            print(f"vae_tf: exported the decoder as a SavedModel to {path}")
    return TrainResult(model_dir, state.model, initial_epoch, state.completed_epochs,
                       run_dir.read_metrics(model_dir))
