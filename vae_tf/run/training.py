"""Training and per-epoch evaluation of a VAE, with checkpoints and resumption.

`train_and_evaluate(config)` is what `python -m vae_tf.train` runs and what
tests call directly. Each epoch it evaluates the test split, writes TensorBoard
scalars and a row of metrics.csv, and saves a checkpoint (model, optimizer,
epoch and the state of every random generator). Calling it again with the
same configuration resumes after the last completed epoch, with the data
order an uninterrupted run would have had.
"""

import dataclasses
import math
import os
import tempfile
from typing import Optional

import keras
import tensorflow as tf

from vae_tf import files, log
from vae_tf.config import Config
from vae_tf.data import pipelines, sources
from vae_tf.errors import ConfigError, Preempted, RunDirError
from vae_tf.figures import per_epoch
from vae_tf.model.vae import VAE
from vae_tf.run import (
    callbacks,
    checkpoints,
    distribution,
    exporting,
    layout,
    optimizers,
    run_dir,
    run_lock,
    schedules,
    tuning,
)


@dataclasses.dataclass
class TrainResult:
    model_dir: str
    model: VAE
    initial_epoch: int  # epochs already completed when this call started
    epochs: int  # epochs completed when it returned
    metrics: list  # rows of metrics.csv, one per completed epoch


@dataclasses.dataclass
class RunContext:
    """What one call of `train_and_evaluate` works with, handed on as one object."""

    config: Config  # as given
    compiled: Config  # `auto` settings decided, --steps_per_execution fitted to the epoch
    strategy: tf.distribute.Strategy
    dataset: object  # vae_tf.data.datatypes.Dataset
    model_dir: str
    scratch: Optional[str]  # a non-chief worker's own checkpoint folder; None on the chief
    steps_per_epoch: int
    tuning_seconds: float  # what `vae_tf.run.tuning` spent measuring, in the first epoch
    observers: tuple  # Keras callbacks run after vae_tf's own

    @property
    def chief(self) -> bool:
        return self.scratch is None

    @property
    def multi_worker(self) -> bool:
        return self.config.strategy == "multi_worker"


def _epoch_callbacks(run: RunContext, state, test_split, first_step: int, final: bool,
                     tuning_seconds: float) -> list:
    """The callbacks of one `fit` call, in order; a non-chief worker only keeps checkpoints.

    `first_step` is the step inside the first epoch at which this call starts
    (a run resumed from an in-epoch checkpoint); `final` says whether the call
    ends the run, which writes the GIFs and the projector. `tuning_seconds`
    counts in the call's first epoch's time.
    """
    config, model_dir, multi_worker = run.compiled, run.model_dir, run.multi_worker
    # Order matters: the epoch is recorded everywhere before its checkpoint is saved, and
    # a signal is acted on after the checkpoints.
    epoch_callbacks = [
        callbacks.KLWarmup(config.beta, config.kl_warmup_epochs),
        callbacks.EpochTimer(tuning_seconds),
        callbacks.StopOnNonFinite(),
    ]
    drops = schedules.parse_drops(config.learning_rate_drops)
    if drops:  # right after the KL weight, before anything that reads the rate
        epoch_callbacks.insert(1, schedules.scheduler(config.learning_rate, drops))
    if config.ema_momentum:  # the test loss of each epoch is the averaged weights'
        epoch_callbacks.insert(0, keras.callbacks.SwapEMAWeights(swap_on_epoch=False))
    metrics_log = None
    if run.chief:
        epoch_callbacks.append(callbacks.TensorBoardScalars(
            os.path.join(model_dir, layout.TENSORBOARD_DIR), config))
        if config.figures_every:
            fixed = per_epoch.FixedInputs.from_split(test_split, run.dataset.class_names,
                                                     config.seed)
            epoch_callbacks.append(callbacks.FigureWriter(
                fixed, model_dir, config.figures_every, config.epochs, final=final,
                budget=config.figures_budget))
        metrics_log = callbacks.MetricsLog(model_dir)
        epoch_callbacks.append(metrics_log)
    # Workers must save at the same step, so a timed save is for one process only.
    every_seconds = 0 if multi_worker else checkpoints.DEFAULT_CHECKPOINT_SECONDS
    step_checkpoint = checkpoints.StepCheckpoint(
        state, run.steps_per_epoch, first_step, every_steps=_every_steps(config),
        every_seconds=0 if config.checkpoint_every_steps else every_seconds)
    epoch_callbacks += [step_checkpoint, checkpoints.EpochCheckpoint(state, metrics_log),
                        callbacks.StopOnSignal(None if multi_worker else step_checkpoint)]
    return epoch_callbacks


def _stop_if_signalled(epoch_callbacks: list, multi_worker: bool) -> None:
    """Preempted, for a worker whose collective failed because a signalled peer stopped.

    A scheduler sends SIGTERM to every worker of a multi-worker run, and each
    stops at its next step; a worker whose step had already begun then waits
    for a peer that has left, and TensorFlow aborts its collective. With a
    signal received, that abort is the stop the signal asked for, not an error.
    """
    stopper = next(c for c in epoch_callbacks if isinstance(c, callbacks.StopOnSignal))
    if multi_worker and stopper.requested:
        stopper.on_train_end()
        raise Preempted() from None


def _every_steps(config: Config) -> int:
    """--checkpoint_every_steps rounded up to whole executions of --steps_per_execution."""
    every, execution = config.checkpoint_every_steps, config.steps_per_execution
    return -(-every // execution) * execution if every else 0


def train_and_evaluate(config: Config, observers: tuple = ()) -> TrainResult:
    """Trains `config.epochs` epochs in total, resuming a run in the model directory.

    `observers` are Keras callbacks run after all of vae_tf's own each epoch (the
    benchmark's epoch clock, which so sees the checkpoint and figures included).

    Under `--strategy=multi_worker` every worker calls this; all of them read
    the chief's checkpoints from the model directory, and the others write
    theirs (which tf.distribute needs every worker to save) to a scratch folder
    that is deleted at the end.
    """
    config.validate()
    distribution.configure_threads(config.intra_op_threads, config.inter_op_threads)
    strategy = distribution.make_strategy(config.strategy)  # before any other TF op
    chief = distribution.is_chief(strategy)
    dataset = sources.load_for(config)
    sources.check_config(config, dataset)
    if config.batch_size % strategy.num_replicas_in_sync:
        raise ConfigError(f"--batch_size={config.batch_size} does not split evenly over the "
                          f"{strategy.num_replicas_in_sync} replicas of --strategy="
                          f"{config.strategy}; use a multiple of "
                          f"{strategy.num_replicas_in_sync}.")
    if not chief:
        with files.staging_folder(tempfile.gettempdir(), "vae_tf-worker-") as scratch:
            with files.reporting_full_disk(scratch):
                return _train(config, strategy, dataset, config.resolved_model_dir(), scratch,
                              observers)
    with files.reporting_full_disk(config.resolved_model_dir()):
        model_dir = run_dir.prepare(config)  # only now, so bad data leaves no folder behind
        lock = run_lock.acquire(model_dir)
    try:
        with files.reporting_full_disk(model_dir):
            _refuse_lost_checkpoints(model_dir)
            run_dir.write_data_spec(dataset, model_dir)
            checkpoints.remove_interrupted_writes(model_dir)
            return _train(config, strategy, dataset, model_dir, None, observers)
    finally:
        run_lock.release(lock)


def _refuse_lost_checkpoints(model_dir: str) -> None:
    """RunDirError for a trained run whose checkpoints are gone: never a silent fresh start."""
    if checkpoints.any_saved(model_dir):
        return
    found = run_dir.trained_artefacts(model_dir)
    if found:
        folder = os.path.join(model_dir, layout.CHECKPOINT_DIR)
        raise RunDirError(
            f"--model_dir={model_dir} holds a trained run ({', '.join(found)}) but no "
            f"checkpoint in {folder}; put the checkpoints back to resume, or pass --overwrite "
            f"to move this run aside and start afresh.")


def _whole_executions(config: Config, steps_per_epoch: int, chief: bool,
                      first_step: int = 0) -> Config:
    """`config` with --steps_per_execution lowered, if need be, to divide the epoch's steps.

    Keras would otherwise run whole executions past the end of each epoch, and a
    resumed run would no longer see the batches an uninterrupted one saw. A run
    resumed at step `first_step` of an epoch needs it to divide that too.
    """
    wanted = config.steps_per_execution
    fitting = max(n for n in range(1, min(wanted, steps_per_epoch) + 1)
                  if steps_per_epoch % n == 0 and first_step % n == 0)
    if fitting == wanted:
        return config
    if chief:
        log.info(f"--steps_per_execution={wanted} lowered to {fitting}, the largest divisor of "
                 f"the epoch's {steps_per_epoch} steps"
                 + (f" and of the {first_step} done before the resume." if first_step else "."))
    return dataclasses.replace(config, steps_per_execution=fitting)


def _train(config, strategy, dataset, model_dir: str, scratch, observers=()) -> TrainResult:
    chief = scratch is None
    # Before the seed is set: measuring builds and trains throwaway models.
    tuned, tuning_seconds = tuning.choose(config, dataset, model_dir,
                                          distributed=config.strategy != "default", chief=chief)
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    steps_per_epoch = config.steps_per_epoch or math.ceil(len(dataset.train) / config.batch_size)
    _, first_step = checkpoints.resume_position(model_dir)
    compiled = _whole_executions(tuned, steps_per_epoch, chief, first_step)
    with strategy.scope():
        state = checkpoints.restore_run(compiled, model_dir, dataset.spec, save_dir=scratch,
                                        in_epoch=True)
    run = RunContext(config, compiled, strategy, dataset, model_dir, scratch, steps_per_epoch,
                     tuning_seconds, tuple(observers))
    with files.reporting_full_disk(scratch or model_dir,
                                   lambda: checkpoints.checkpoint_bytes(state), "this model"):
        return _fit_and_export(run, state)


def _fit_and_export(run: RunContext, state) -> TrainResult:
    config, dataset, model_dir, chief = run.config, run.dataset, run.model_dir, run.chief
    initial_epoch, first_step = state.completed_epochs, state.step_in_epoch
    if chief:
        run_dir.write_config(config, model_dir)
        run_dir.trim_metrics(model_dir, initial_epoch)
        shape = "x".join(map(str, dataset.image_shape))
        log.info(f"{config.arch} VAE on {config.dataset} ({len(dataset.train):,} training and "
                 f"{len(dataset.test):,} test images of {shape}"
                 + (f", {dataset.spec.num_classes} classes" if dataset.labelled else
                    ", unlabelled")
                 + (", streamed" if dataset.streamed else "")
                 + f", from {dataset.source}) in {model_dir}"
                 + (f" on {run.strategy.num_replicas_in_sync} replicas"
                    if run.strategy.num_replicas_in_sync > 1 else "")
                 + (f", resuming after epoch {initial_epoch}" if initial_epoch and not first_step
                    else "")
                 + (f", resuming in epoch {initial_epoch + 1} at step {first_step}"
                    if first_step else ""))
    if initial_epoch >= config.epochs:
        if chief:
            log.info(f"already trained for {initial_epoch} epochs (--epochs={config.epochs}); "
                     f"raise --epochs to train further.")
    else:
        test_split = pipelines.prepare_test_split(dataset.test, config.binarize)
        test_batches = pipelines.eval_pipeline(test_split, config.eval_batch_size)
        # A part-done epoch is one `fit` call of its remaining steps, the other epochs another.
        calls = [(initial_epoch, first_step)] if first_step else []
        if initial_epoch + bool(first_step) < config.epochs:
            calls.append((initial_epoch + bool(first_step), 0))
        for index, (epoch, step) in enumerate(calls):
            last = epoch + 1 if step else config.epochs
            train_batches = pipelines.train_pipeline(
                dataset.train, config.batch_size, config.seed,
                start_batch=epoch * run.steps_per_epoch + step, binarize=config.binarize)
            epoch_callbacks = _epoch_callbacks(run, state, test_split, step,
                                               index == len(calls) - 1,
                                               run.tuning_seconds if index == 0 else 0.0)
            try:
                state.model.fit(train_batches, epochs=last, initial_epoch=epoch,
                                steps_per_epoch=run.steps_per_epoch - step,
                                validation_data=test_batches,
                                callbacks=epoch_callbacks + list(run.observers), shuffle=False,
                                verbose=1 if config.progress_bar and chief else 0)
            except tf.errors.OpError:
                _stop_if_signalled(epoch_callbacks, run.multi_worker)
                raise
    # From here on the model is a finished one: with --ema_momentum, its averaged weights.
    optimizers.load_average(state.model)
    if config.export and (initial_epoch < config.epochs or not os.path.isdir(
            os.path.join(model_dir, layout.EXPORT_DIR))):
        # Every worker saves (tf.distribute needs them all); only the chief's is kept.
        path = exporting.export_model(state.model, config, run.scratch or model_dir,
                                      overwrite=True,
                                      version=state.completed_epochs,
                                      class_names=dataset.class_names)
        if chief:
            log.info(f"exported the decoder as a SavedModel to {path}")
    return TrainResult(model_dir, state.model, initial_epoch, state.completed_epochs,
                       run_dir.read_metrics(model_dir))
