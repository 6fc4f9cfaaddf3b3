"""Keras callbacks of a vae_tf run: KL warm-up, a NaN guard, signals, TensorBoard, figures.

They run in the order `training.train_and_evaluate` lists them: the
checkpoints (`checkpoints.StepCheckpoint`, `checkpoints.EpochCheckpoint`) come
after everything else but `StopOnSignal`. Everything that records an epoch (TensorBoard,
metrics.csv) runs before the checkpoint of that epoch is saved, so a run
stopped at any moment resumes from a checkpoint whose epoch is fully recorded;
the checkpoint's own save time is then added to the epoch's row.

Each per-epoch extra is timed into the epoch's row of metrics.csv:
`eval_seconds` (the test split's evaluation), `tensorboard_seconds`,
`figures_seconds` (what the epoch waits for: computing the figures' arrays;
drawing them runs in a background thread while training goes on) and
`checkpoint_seconds`.
"""

import concurrent.futures
import dataclasses
import math
import os
import signal
import threading
import time

import keras
import tensorflow as tf

from vae_tf import compat, log
from vae_tf.errors import Preempted, TrainingError
from vae_tf.figures import inspection, per_epoch
from vae_tf.model import losses
from vae_tf.run import layout, run_dir, stop_signals


class KLWarmup(keras.callbacks.Callback):
    """Sets the model's KL weight at the start of every epoch."""

    def __init__(self, beta: float, warmup_epochs: int):
        super().__init__()
        self.beta = beta
        self.warmup_epochs = warmup_epochs
        self.current = beta

    def on_epoch_begin(self, epoch, logs=None):
        self.current = losses.kl_weight(epoch, self.beta, self.warmup_epochs)
        self.model.kl_weight.assign(self.current)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["kl_weight"] = self.current


class StopOnNonFinite(keras.callbacks.Callback):
    """Stops training with a clear message as soon as the loss is NaN or infinite."""

    def __init__(self):
        super().__init__()
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = compat.log_value((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss):
            raise TrainingError(
                f"the loss became {loss} in epoch {self.epoch + 1}, step {batch + 1}; the "
                f"checkpoint of the last completed epoch is kept. Try a lower "
                f"--learning_rate, or --scale=softplus, which bounds the variance.")


class StopOnSignal(keras.callbacks.Callback):
    """Turns Ctrl-C (SIGINT) and SIGTERM during training into an exit at a step boundary.

    Python delivers a signal to whatever happens to be running, and code that
    TensorFlow runs from finalisers or iterators can swallow the resulting
    exception, so that training carries on. Here the signal only sets a flag,
    and the next boundary raises, in the main thread:

    - Ctrl-C raises KeyboardInterrupt at the next training or test step (or
      epoch end), keeping the checkpoint of the last completed epoch.
    - SIGTERM, which schedulers and preemptible machines send with seconds to
      spare, first saves an in-epoch checkpoint at the next training step
      (through `step_checkpoint`), then raises `Preempted`; arriving during
      the test evaluation, it lets the epoch finish and save its checkpoint.

    After the first signal both go back to their default action, so that a
    second one ends the process at once. This callback runs last, after the
    epoch's checkpoint.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, step_checkpoint=None):
        super().__init__()
        self.step_checkpoint = step_checkpoint
        self.requested = None
        self.previous = {}

    def _request(self, signum, frame):
        self.requested = signum
        for handled in self.SIGNALS:
            signal.signal(handled, signal.SIG_DFL)

    def _stop(self, saved=None):
        self.on_train_end()
        if self.requested == signal.SIGTERM:
            raise Preempted(saved)
        raise KeyboardInterrupt

    def on_train_batch_end(self, batch, logs=None):
        if self.requested == signal.SIGTERM and self.step_checkpoint is not None:
            steps = self.step_checkpoint.steps_done
            if steps < self.step_checkpoint.steps_per_epoch:
                self._stop(f"epoch {self.step_checkpoint.epoch + 1}, step {steps}: "
                           f"{self.step_checkpoint.save()}")
        if self.requested:
            self._stop()

    def on_test_batch_end(self, batch, logs=None):
        if self.requested == signal.SIGINT:
            self._stop()

    def on_epoch_end(self, epoch, logs=None):
        if self.requested:
            self._stop(f"the end of epoch {epoch + 1}")

    def on_train_begin(self, logs=None):
        stop_signals.stop_if_received()  # one whose exception was lost before training
        if threading.current_thread() is threading.main_thread():
            self.previous = {signum: signal.signal(signum, self._request)
                             for signum in self.SIGNALS}

    def on_train_end(self, logs=None):
        for signum, previous in self.previous.items():
            signal.signal(signum, previous)
        self.previous = {}


def hparams(config) -> dict:
    """The run's settings as TensorBoard HParams values (lists spelled as flags spell them)."""
    values = {}
    for name, value in dataclasses.asdict(config).items():
        if name in ("model_dir", "data_dir", "overwrite", "progress_bar"):
            continue  # where and how the run is shown, not what it is
        values[name] = ",".join(map(str, value)) if isinstance(value, list) else value
    return values


class TensorBoardScalars(keras.callbacks.Callback):
    """Writes each epoch's metrics under tensorboard/train and tensorboard/test.

    Keras reports test metrics with a `val_` prefix; here they go to the test
    writer under the same names as their training counterparts. The learning
    rate (which a resumed run may change) is a training scalar too. At the start
    the run's settings go to TensorBoard's HParams dashboard, which shows them
    beside each run's latest train and test metrics, so that runs compare.
    """

    def __init__(self, log_dir: str, config=None):
        super().__init__()
        self.log_dir = log_dir
        self.config = config
        self.writers = {split: tf.summary.create_file_writer(os.path.join(log_dir, split))
                        for split in ("train", "test")}

    def on_train_begin(self, logs=None):
        if self.config is None:
            return
        from tensorboard.plugins.hparams import api as hparams_api

        writer = tf.summary.create_file_writer(self.log_dir)
        with writer.as_default():
            hparams_api.hparams(hparams(self.config),
                                trial_id=os.path.basename(os.path.dirname(self.log_dir)))
        writer.close()

    def on_epoch_end(self, epoch, logs=None):
        start = time.perf_counter()
        self._write(epoch, logs)
        if logs is not None:
            logs["tensorboard_seconds"] = time.perf_counter() - start

    def _write(self, epoch, logs):
        with self.writers["train"].as_default():
            # convert_to_tensor reads a distributed (mirrored) variable too.
            tf.summary.scalar("learning_rate",
                              float(tf.convert_to_tensor(self.model.optimizer.learning_rate)),
                              step=epoch)
        by_split = {"train": {}, "test": {}}
        for name, value in (logs or {}).items():
            if name == "learning_rate":  # the scheduler's copy of what was just written
                continue
            if name.startswith("val_"):
                by_split["test"][name[len("val_"):]] = value
            else:
                by_split["train"][name] = value
        for split, scalars in by_split.items():
            with self.writers[split].as_default():
                for name, value in scalars.items():
                    tf.summary.scalar(name, float(value), step=epoch)
            self.writers[split].flush()

    def on_train_end(self, logs=None):
        for writer in self.writers.values():
            writer.close()


class EpochTimer(keras.callbacks.Callback):
    """Adds the wall-clock seconds of each epoch (training and test), and of its test
    evaluation, to its logs; `first_epoch_extra` seconds (spent before training, such
    as tuning) count in the first epoch."""

    def __init__(self, first_epoch_extra: float = 0.0):
        super().__init__()
        self.extra = first_epoch_extra

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter() - self.extra
        self.extra = 0.0
        self.eval_seconds = 0.0

    def on_test_begin(self, logs=None):
        self.test_start = time.perf_counter()

    def on_test_end(self, logs=None):
        self.eval_seconds += time.perf_counter() - self.test_start

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_seconds"] = time.perf_counter() - self.start
            logs["eval_seconds"] = self.eval_seconds


class MetricsLog(keras.callbacks.Callback):
    """Writes each epoch's logs as its row of metrics.csv; `add` puts more columns in it.

    What Keras' CSVLogger did, except that each row is written atomically and
    a callback that runs later (the epoch's checkpoint) can still add its own
    column to the row.
    """

    def __init__(self, model_dir: str):
        super().__init__()
        self.model_dir = model_dir

    def on_epoch_end(self, epoch, logs=None):
        run_dir.write_metrics_row(self.model_dir, epoch, dict(logs or {}))

    def add(self, epoch: int, **values) -> None:
        run_dir.write_metrics_row(self.model_dir, epoch, values)


class FigureWriter(keras.callbacks.Callback):
    """Writes the run's figures every `every` epochs, and GIFs and the projector at the end.

    The figures' arrays are computed at the epoch's end, from the model as it
    is then; drawing and saving them (matplotlib, PNG, TensorBoard images) runs
    in a background thread during the next epoch. The end of training waits
    for every drawing, and so does the interpreter's exit after Ctrl-C.

    With a `budget` (a share of the run's time, --figures_budget), an epoch due
    by `every` gets figures only if the time since the last figures is at least
    that drawing's duration / budget, and no drawing is still running; the last
    epoch always gets them. The first time this skips an epoch, one line says
    how often figures come.

    It also records the op graph of one training step in TensorBoard, through
    `tf.summary.trace_on` and `trace_export` around the first step.
    """

    def __init__(self, fixed, model_dir: str, every: int, last_epoch: int,
                 final: bool = True, budget: float = 0.0):
        super().__init__()
        self.budget = budget
        self.last_figures = None  # perf_counter() when the latest figures were started
        self.draw_seconds = 0.0  # how long the latest finished drawing took
        self.said_skipping = False
        self.final = final  # whether this `fit` call ends the run (GIFs, projector)
        self.fixed = fixed
        self.model_dir = model_dir
        self.every = every
        self.last_epoch = last_epoch
        self.figures_log_dir = os.path.join(model_dir, layout.TENSORBOARD_FIGURES_DIR)
        self.writer = tf.summary.create_file_writer(self.figures_log_dir)
        self.tracing = False
        self.graph_written = False
        # One drawing thread, so that the figures of successive epochs are drawn in order.
        self.drawer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="figures")
        self.pending = []

    def on_train_begin(self, logs=None):
        # Earlier epochs' arrays, read once, so that a resumed run's figures span all epochs.
        self.history = per_epoch.load_history(self.model_dir)

    def on_train_batch_begin(self, batch, logs=None):
        if not self.graph_written and not self.tracing:
            tf.summary.trace_on(graph=True, profiler=False)
            self.tracing = True

    def on_train_batch_end(self, batch, logs=None):
        if self.tracing:
            with self.writer.as_default():
                tf.summary.trace_export(name="train_step", step=0)
            self.tracing = False
            self.graph_written = True

    def _within_budget(self, now: float) -> bool:
        if not self.budget or self.last_figures is None:
            return True
        if self.pending:  # still drawing: that alone takes more than an epoch
            return False
        return now - self.last_figures >= self.draw_seconds / self.budget

    def on_epoch_end(self, epoch, logs=None):
        completed = epoch + 1
        self._finish_drawings(wait=False)
        now = time.perf_counter()
        due = completed % self.every == 0
        if due and completed != self.last_epoch and not self._within_budget(now):
            if not self.said_skipping:
                log.info(f"figures: drawing took {self.draw_seconds:.1f} s; drawn once per "
                         f"{self.draw_seconds / self.budget:.0f} s of training from now on, "
                         f"to keep them under {self.budget:.0%} of the time "
                         f"(--figures_budget), and at the last epoch.")
                self.said_skipping = True
            return
        if due or completed == self.last_epoch:
            start = now
            self.last_figures = start
            arrays = per_epoch.record_epoch(self.model, self.fixed, completed, self.model_dir,
                                          self.history)
            # This epoch's row is not in metrics.csv yet: the loss curves get it from `logs`.
            metrics = [row for row in run_dir.read_metrics(self.model_dir)
                       if row["epoch"] < epoch] + [{"epoch": epoch, **(logs or {})}]
            self.pending.append(self.drawer.submit(
                self._timed_drawing, completed, arrays, dict(self.history), metrics))
            if logs is not None:
                logs["figures_seconds"] = time.perf_counter() - start

    def _timed_drawing(self, epoch, arrays, history, metrics) -> float:
        """Draws in the drawing thread; returns its seconds (read by the training thread
        from the future, so that no attribute is shared between the threads)."""
        start = time.perf_counter()
        per_epoch.draw_epoch(epoch, arrays, history, self.fixed, metrics, self.model_dir,
                           self.writer)
        return time.perf_counter() - start

    def _finish_drawings(self, wait: bool) -> None:
        """Re-raises the error of a drawing that failed; with `wait`, waits for all of them."""
        for future in list(self.pending):
            if wait or future.done():
                self.draw_seconds = future.result()
                self.pending.remove(future)

    def on_train_end(self, logs=None):
        self._finish_drawings(wait=True)
        if self.final:
            per_epoch.write_animations(self.model_dir, self.fixed, self.history)
            z_mean, _ = inspection.encode(self.model, self.fixed.test_images)
            per_epoch.write_projector(self.figures_log_dir, z_mean, self.fixed)
        self.writer.close()
