"""Throughput of training and evaluation, measured against this machine's limits.

`run(config, ...)` yields one dict per measurement; `python -m vae_tf.benchmark`
prints them as JSON lines. Training speed is compared, in one process, with two
references: a float32 matmul's FLOP rate (the machine's practical peak) and the
same model trained the plain way (`model.fit` with the custom `train_step`, no
XLA, one step per execution). FLOPs per image are counted from the traced graph
of one training step with TensorFlow's profiler.
"""

import collections
import contextlib
import dataclasses
import glob
import math
import os
import platform
import resource
import statistics
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from vae_tf import compat
from vae_tf.data import pipelines, sources
from vae_tf.evaluation import elbo_iwae
from vae_tf.model import vae
from vae_tf.run import distribution, trainable, training, tuning

FLOPS_METHOD = "counted from the traced graph of one training step (tf.profiler float_operation)"


def _timed(function, repeats: int) -> list:
    """Seconds of each of `repeats` calls of `function`."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def _spread(seconds_per_unit: list, scale: float = 1e3) -> dict:
    return {"median": statistics.median(seconds_per_unit) * scale,
            "min": min(seconds_per_unit) * scale, "max": max(seconds_per_unit) * scale}


def matmul_peak(size: int = 2048, repeats: int = 7) -> dict:
    """The FLOP rate of float32 [size, size] matmuls, the practical peak of this CPU.

    One independent matmul per core runs in the same step, so that every core
    is busy whether TensorFlow splits one op across cores or runs ops side by
    side (as under --intra_op_threads=1).
    """
    count = os.cpu_count() or 1
    pairs = [(tf.random.normal([size, size]), tf.random.normal([size, size]))
             for _ in range(count)]
    matmuls = tf.function(lambda: tf.add_n([tf.reduce_sum(tf.matmul(a, b)) for a, b in pairs]))
    matmuls().numpy()
    seconds = statistics.median(_timed(lambda: matmuls().numpy(), repeats))
    return {"measure": "matmul_peak", "size": size, "concurrent_matmuls": count,
            "gflop_per_s": count * 2 * size ** 3 / seconds / 1e9}


def flops_per_image(model, batch_size: int) -> float:
    """Float operations of one training step per image, from its traced graph."""
    spec = (tf.TensorSpec([batch_size, *model.image_shape], tf.float32),
            tf.TensorSpec([batch_size], tf.int32))
    step = tf.function(lambda images, labels: model.train_step((images, labels)))
    return _graph_flops(step, spec) / batch_size


def _graph_flops(function: tf.function, spec) -> int:
    """Float operations of `function`'s graph traced for `spec`, by TF's profiler."""
    graph = function.get_concrete_function(*spec).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops


def _synthetic_batches(split, batch_size: int):
    """One real batch repeated forever: a pipeline that costs nothing."""
    images = tf.constant(np.asarray(split.images[:batch_size]))
    labels = tf.constant(split.labels[:batch_size].astype(np.int32))
    return tf.data.Dataset.from_tensors((images, labels)).repeat()


def time_training(model, batches, steps: int, repeats: int, steps_per_execution: int) -> list:
    """Seconds per step of each repeat of `steps` steps, after a warm-up."""
    iterator = iter(batches)
    model.make_train_function(force=True)
    calls = max(1, steps // steps_per_execution)
    for _ in range(3):  # trace, compile and warm the pipeline
        model.train_function(iterator)
    model.optimizer.iterations.numpy()

    def run():
        for _ in range(calls):
            model.train_function(iterator)
        model.optimizer.iterations.numpy()  # waits for the last step

    return [seconds / (calls * steps_per_execution) for seconds in _timed(run, repeats)]


class _StepClock(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.ends = []

    def on_train_batch_end(self, batch, logs=None):
        self.ends.append(time.perf_counter())


def time_plain_training(config, dataset, steps: int, repeats: int, warmup: int = 10) -> list:
    """Seconds per step of `model.fit` on the same model the plain way, per repeat.

    The plain way computes in float32, whatever --mixed_precision says. Thread
    pools are the process's, so --intra_op_threads applies to both ways.
    """
    config = dataclasses.replace(config, mixed_precision="none")
    keras.utils.set_random_seed(config.seed)
    model = vae.build_vae(config, dataset.spec.num_classes, dataset.image_shape)
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), jit_compile=False,
                  steps_per_execution=1)
    clock = _StepClock()
    batches = pipelines.train_pipeline(dataset.train, config.batch_size, config.seed,
                                  binarize=config.binarize)
    model.fit(batches, epochs=1, steps_per_epoch=warmup + steps * repeats, callbacks=[clock],
              verbose=0)
    intervals = np.diff(clock.ends[warmup - 1:])
    return [float(np.mean(chunk)) for chunk in np.array_split(intervals, repeats)]


# Whole epochs are timed in one run of each way: the median of the intervals between
# successive epoch ends after the first, so that start-up (data loading, building,
# tracing) and the first epoch's tuning fall out, and a slow spell of the shared machine
# moves the median of a few epochs little. (Differences of whole runs of 4 and 2 epochs,
# the method before, swung by seconds with the start-up and teardown of either run.)
WHOLE_EPOCHS = 6


class _EpochClock(keras.callbacks.Callback):
    """The time at which each epoch ended, after every other callback of the `fit`."""

    def __init__(self):
        super().__init__()
        self.ends = []

    def on_epoch_end(self, epoch, logs=None):
        self.ends.append(time.perf_counter())


def epoch_seconds(ends: list) -> dict:
    """Median, min and max seconds between successive epoch ends, the first epoch left out."""
    intervals = np.diff(ends)
    if not len(intervals):
        raise ValueError("whole epochs need at least two epochs")
    return {"median": float(np.median(intervals)), "min": float(intervals.min()),
            "max": float(intervals.max())}


def _plain_fit(config, dataset, steps_per_epoch: int):
    """A function training a fresh model `epochs` epochs the plain way, testing each epoch."""
    config = dataclasses.replace(config, mixed_precision="none")
    test_split = pipelines.prepare_test_split(dataset.test, config.binarize)
    test_batches = pipelines.eval_pipeline(test_split, config.eval_batch_size)

    def fit(epochs: int, clock):
        keras.utils.set_random_seed(config.seed)
        model = vae.build_vae(config, dataset.spec.num_classes, dataset.image_shape)
        model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), jit_compile=False,
                      steps_per_execution=1)
        model.fit(pipelines.train_pipeline(dataset.train, config.batch_size, config.seed,
                                      binarize=config.binarize),
                  epochs=epochs, steps_per_epoch=steps_per_epoch, validation_data=test_batches,
                  callbacks=[clock], verbose=0)
        return None
    return fit


def _vae_tf_train(config, scratch: str):
    """A function running `vae_tf.train`'s training for `epochs` epochs in a fresh folder.

    Everything an epoch does is in: the test evaluation, TensorBoard, figures,
    checkpoints. Only the export at the end is left out (it is not per epoch).
    """
    def train(epochs: int, clock):
        run = dataclasses.replace(config, epochs=epochs, progress_bar=False, export=False,
                                  model_dir=os.path.join(scratch, f"vae_tf_{epochs}"))
        with contextlib.redirect_stdout(sys.stderr):  # standard output is JSON lines only
            return training.train_and_evaluate(run, observers=(clock,)).metrics
    return train


def time_whole_epochs(config, dataset, scratch: str, epochs: int = WHOLE_EPOCHS):
    """Yields the whole-epoch time of vae_tf and of the plain way, then their ratio.

    Each way trains a fresh model `epochs` epochs in one run; an epoch is timed
    from the end of the one before to its own end, every callback included
    (vae_tf's figures, checkpoints, TensorBoard; both ways' test evaluation).
    """
    steps = config.steps_per_epoch or math.ceil(len(dataset.train) / config.batch_size)
    ways = {"vae_tf": _vae_tf_train(config, scratch), "plain": _plain_fit(config, dataset, steps)}
    seconds, metrics = {}, None
    for way, train in ways.items():
        clock = _EpochClock()
        metrics = train(epochs, clock) or metrics
        seconds[way] = epoch_seconds(clock.ends)
    # What vae_tf's last epoch spent, as its metrics.csv says (training includes the test).
    last_epoch = {name: value for name, value in metrics[-1].items()
                  if name.endswith("_seconds")}
    how = {"vae_tf": "python -m vae_tf.train's training (test set, TensorBoard, figures, "
                     "checkpoints each epoch; no export)",
           "plain": "model.fit, custom train_step, float32, no XLA, one step per execution, "
                    "validation_data = the test split each epoch"}
    for way in ways:
        yield {"measure": "whole_epoch", "way": way, "epoch_s": seconds[way]["median"],
               "epoch_s_min": seconds[way]["min"], "epoch_s_max": seconds[way]["max"],
               "epochs": epochs, "steps_per_epoch": steps, "test_images": len(dataset.test),
               "how": how[way], **({"last_epoch_metrics": last_epoch} if way == "vae_tf" else {})}
    yield {"measure": "whole_epoch_speedup_over_plain",
           "ratio": seconds["plain"]["median"] / seconds["vae_tf"]["median"],
           "method": f"median of epochs 2 to {epochs} of one run of {epochs} epochs each way, "
                     f"each timed from the previous epoch's end to its own"}


def _iwae_samples_per_second(model, config, images, iw_samples: int, batch: int, chunk: int,
                             jit_compile: bool) -> float:
    estimate = elbo_iwae.iwae_function(model, config, iw_samples, chunk, jit_compile)

    def run():
        for start in range(0, len(images), batch):
            estimate(tf.constant(images[start:start + batch]), tf.constant(start)).numpy()

    run()  # trace and compile
    return len(images) * iw_samples / min(_timed(run, 2))


def decoder_flops_per_sample(model, config, batch: int, chunk: int) -> float:
    """Float operations of the IWAE's log p(x|z) per importance sample, from its graph."""
    _, log_likelihood_fn, _ = elbo_iwae.model_functions(model, config)
    spec = (tf.TensorSpec([batch, *model.image_shape], tf.float32),
            tf.TensorSpec([chunk, batch, model.z_dim], tf.float32))
    return _graph_flops(tf.function(log_likelihood_fn), spec) / (batch * chunk)


def time_evaluation(model, config, split, spec, peak: float, iw_samples: int = 500,
                    iw_images: int = 100) -> dict:
    """Test ELBO images per second; IWAE importance samples per second with the settings
    `vae_tf.evaluate` measures (auto) and with the fixed 100 x 500 calls without XLA that
    it used before, in the same process; the auto settings' fraction of the matmul peak."""
    model.make_test_function(force=True)
    batches = pipelines.eval_pipeline(split, config.eval_batch_size)
    count = len(split)

    def elbo():
        model.reset_metrics()
        for batch in batches:
            model.test_function(iter([batch]))
        model.metrics[0].result().numpy()

    elbo()
    elbo_seconds = statistics.median(_timed(elbo, 3))
    images = split.float_images(iw_images)
    with contextlib.redirect_stdout(sys.stderr):  # its status line; standard output is JSON
        settings = elbo_iwae.iwae_settings(model, config, spec, images, iw_samples)
    batch, chunk = settings["batch_size"], settings["chunk_size"]
    tuned = _iwae_samples_per_second(model, config, images, iw_samples, batch, chunk,
                                     settings["jit_compile"] == "true")
    fixed = _iwae_samples_per_second(model, config, images, iw_samples, min(100, iw_images),
                                     min(500, iw_samples), False)
    flops = decoder_flops_per_sample(model, config, batch, chunk)
    return {"measure": "evaluation", "elbo_images_per_s": count / elbo_seconds,
            "iwae_k": iw_samples, "iwae_images": len(images),
            "iwae_batch_size": batch, "iwae_chunk_size": chunk,
            "iwae_jit_compile": settings["jit_compile"], "iwae_how": settings["how"],
            "iwae_samples_per_s": tuned, "iwae_fixed_100x500_samples_per_s": fixed,
            "iwae_speedup_over_fixed": tuned / fixed,
            "iwae_mflop_per_sample": flops / 1e6,
            "iwae_fraction_of_peak": flops * tuned / 1e9 / peak,
            "iwae_10k_images_k5000_projected_s": 10000 * 5000 / tuned}


def profile_training(model, batches, steps_per_execution: int, logdir: str,
                     calls: int = 10, top: int = 12) -> dict:
    """Traces `calls` training calls with the TensorFlow profiler into `logdir`.

    Returns the CPU time per step of the costliest op types, read from the trace;
    TensorBoard's profile plugin shows the whole trace.
    """
    iterator = iter(batches)
    model.train_function(iterator)
    tf.profiler.experimental.start(logdir)
    for _ in range(calls):
        model.train_function(iterator)
    model.optimizer.iterations.numpy()
    tf.profiler.experimental.stop()
    steps = calls * steps_per_execution
    space = compat.xplane_pb2().XSpace()
    newest = max(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True),
                 key=os.path.getmtime)
    with open(newest, "rb") as file:
        space.ParseFromString(file.read())
    per_type = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue  # the threads that run the step's ops
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if ":" in name and "::" not in name:  # "<op name>:<op type>", not executor events
                    per_type[name.rsplit(":", 1)[1]] += event.duration_ps
    return {"measure": "profile", "trace_dir": logdir, "steps": steps,
            "op_cpu_us_per_step": {op: picoseconds / 1e6 / steps
                                   for op, picoseconds in per_type.most_common(top)}}


def _training_row(way, seconds_per_step, config, flops, peak, **extra) -> dict:
    median = statistics.median(seconds_per_step)
    images_per_s = config.batch_size / median
    gflop_per_s = flops * images_per_s / 1e9
    return {"measure": "train", "way": way, "batch_size": config.batch_size,
            "images_per_s": images_per_s, "step_ms": _spread(seconds_per_step),
            "epoch_60k_s": 60000 / images_per_s, "gflop_per_s": gflop_per_s,
            "fraction_of_peak": gflop_per_s / peak, **extra}


def run(config, steps: int, repeats: int, synthetic: bool, plain: bool = True,
        profile_dir: str = "", whole_epochs: bool = False):
    """Yields the benchmark's measurements, one dict each."""
    yield {"measure": "machine", "cpus": os.cpu_count(), "processor": platform.machine(),
           "tensorflow": tf.__version__, "keras": keras.__version__,
           "python": platform.python_version()}
    distribution.configure_threads(config.intra_op_threads, config.inter_op_threads)
    peak = matmul_peak()
    yield peak
    dataset = sources.load_for(config)
    keras.utils.set_random_seed(config.seed)
    with tempfile.TemporaryDirectory() as scratch:  # no checkpoint is read or written
        # --jit_compile=auto decided as training decides it (and cached alike), without its
        # status line: the benchmark's standard output is JSON lines only.
        config, _ = tuning.choose(config, dataset, scratch, distributed=False, chief=False)
        keras.utils.set_random_seed(config.seed)
        model, _ = trainable.build(config, dataset.spec)  # as training builds it
    flops = flops_per_image(model, config.batch_size)
    yield {"measure": "flops_per_image", "mflop": flops / 1e6, "method": FLOPS_METHOD}
    settings = {"jit_compile": config.jit_compile,
                "steps_per_execution": config.steps_per_execution,
                "mixed_precision": config.mixed_precision,
                "intra_op_threads": config.intra_op_threads,
                "inter_op_threads": config.inter_op_threads}
    pipeline = pipelines.train_pipeline(dataset.train, config.batch_size, config.seed,
                                   binarize=config.binarize)
    ours = time_training(model, pipeline, steps, repeats, config.steps_per_execution)
    row = _training_row("vae_tf", ours, config, flops, peak["gflop_per_s"], data="pipeline",
                        **settings)
    yield row
    if profile_dir:
        yield profile_training(model, pipeline, config.steps_per_execution, profile_dir)
    if synthetic:
        fake = time_training(model, _synthetic_batches(dataset.train, config.batch_size), steps,
                             repeats, config.steps_per_execution)
        synthetic_row = _training_row("vae_tf", fake, config, flops, peak["gflop_per_s"],
                                      data="synthetic", **settings)
        yield synthetic_row
        yield {"measure": "pipeline_vs_synthetic",
               "ratio": row["images_per_s"] / synthetic_row["images_per_s"]}
    if plain:
        plain_row = _training_row(
            "plain", time_plain_training(config, dataset, steps, repeats), config, flops,
            peak["gflop_per_s"], data="pipeline", jit_compile=False, steps_per_execution=1,
            mixed_precision="none", intra_op_threads=config.intra_op_threads,
            inter_op_threads=config.inter_op_threads,
            how="model.fit, custom train_step, no XLA, one step per execution")
        yield plain_row
        yield {"measure": "speedup_over_plain",
               "ratio": row["images_per_s"] / plain_row["images_per_s"]}
    test_split = pipelines.prepare_test_split(dataset.test, config.binarize)
    yield time_evaluation(model, config, test_split, dataset.spec, peak["gflop_per_s"])
    if whole_epochs:
        with tempfile.TemporaryDirectory() as scratch:
            yield from time_whole_epochs(config, dataset, scratch)
    # ru_maxrss is in KiB on Linux.
    yield {"measure": "memory", "peak_rss_mb": resource.getrusage(
        resource.RUSAGE_SELF).ru_maxrss / 1024}
