"""Settings chosen by measurement: `--jit_compile=auto`.

Whether XLA speeds up a training step depends on the CPU (it measured 1.4x
faster for the conv preset on an AVX2 CPU and slower on an AVX-512 one) and on
the model, so no fixed default is right everywhere. With `auto`, training
starts by timing a few steps of the run's own model on its own data with and
without XLA, and keeps the faster. The choice is

- printed in one line;
- recorded in `<model_dir>/tuning.json`, which a resumed run reuses, so that
  its numerics do not change halfway (XLA fuses and reorders float operations);
- cached under the user's cache folder (`$VAE_TF_CACHE_DIR/tuning/`, by default
  `~/.cache/vae_tf/tuning/`), keyed by the CPU model, the oneDNN ISA limit,
  the TensorFlow and Keras versions and every setting that shapes the step, so
  a second run of the same model on the same machine does not measure again.

The seconds spent measuring count in the first epoch's `epoch_seconds`. An
explicit `--jit_compile` or `--nojit_compile` is never overridden. Under a
distribution strategy nothing is measured (every worker would have to agree):
`auto` means no XLA there.
"""

import dataclasses
import hashlib
import json
import os
import platform
import time

import keras
import tensorflow as tf

from vae_tf import compat, data, files, log, models
from vae_tf.files import write_text_atomically

TUNING_FILE = "tuning.json"
# How long one candidate's timed steps take, at least, after its warm-up.
TRIAL_SECONDS = 0.5
TRIAL_REPEATS = 3


def cpu_model() -> str:
    """The CPU's model name, as /proc/cpuinfo (or the platform) gives it."""
    try:
        with open("/proc/cpuinfo") as stream:
            for line in stream:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cache_key(config, spec) -> str:
    """What a measured choice depends on: the machine, the libraries and the step."""
    step = {name: value for name, value in dataclasses.asdict(config).items()
            if name in config.identity() or name in (
                "batch_size", "steps_per_execution", "mixed_precision", "intra_op_threads",
                "inter_op_threads", "dropout", "leaky_relu_slope")}
    step.pop("dataset", None)  # the data matter only through their shape
    described = {"cpu": cpu_model(), "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
                 "cpus": os.cpu_count(), "tensorflow": tf.__version__,
                 "keras": keras.__version__, "image_shape": list(spec.image_shape),
                 "num_classes": spec.num_classes, "step": step}
    text = json.dumps(described, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _cache_path(key: str) -> str:
    return os.path.join(files.cache_dir(), "tuning", f"{key}.json")


def recorded(model_dir: str):
    """The tuning record of a run ({"jit_compile": "true" or "false", ...}), or None."""
    path = os.path.join(model_dir, TUNING_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as stream:
        return json.load(stream)


def resolved(config, model_dir: str):
    """`config` with `auto` replaced by the run's recorded choice (no XLA if none)."""
    if config.jit_compile != "auto":
        return config
    record = recorded(model_dir) or {}
    return dataclasses.replace(config, jit_compile=record.get("jit_compile", "false"))


def seconds_per_step(config, dataset, jit_compile: bool) -> float:
    """The fastest of TRIAL_REPEATS timings of training steps of the run's model."""
    keras.utils.set_random_seed(config.seed)
    model = models.build_vae(config, dataset.spec.num_classes, dataset.image_shape)
    model.compile(optimizer=compat.make_adam(config.learning_rate), jit_compile=jit_compile,
                  steps_per_execution=config.steps_per_execution)
    iterator = iter(data.train_pipeline(dataset.train, config.batch_size, config.seed,
                                        binarize=config.binarize))
    model.make_train_function(force=True)
    for _ in range(2):  # trace, compile and warm up
        model.train_function(iterator)
    model.optimizer.iterations.numpy()
    start = time.perf_counter()
    model.train_function(iterator)
    model.optimizer.iterations.numpy()
    calls = max(1, round(TRIAL_SECONDS / max(time.perf_counter() - start, 1e-6)))
    timings = []
    for _ in range(TRIAL_REPEATS):
        start = time.perf_counter()
        for _ in range(calls):
            model.train_function(iterator)
        model.optimizer.iterations.numpy()  # waits for the last step
        timings.append((time.perf_counter() - start) / (calls * config.steps_per_execution))
    return min(timings)


def choose(config, dataset, model_dir: str, distributed: bool, chief: bool = True):
    """(config with --jit_compile decided, seconds spent measuring)."""
    if config.jit_compile != "auto":
        return config, 0.0
    record = recorded(model_dir)
    if record is not None:
        if chief:
            log.info(f"--jit_compile=auto: {_said(record['jit_compile'])}, as recorded in "
                     f"{os.path.join(model_dir, TUNING_FILE)} when the run started.")
        return dataclasses.replace(config, jit_compile=record["jit_compile"]), 0.0
    start = time.perf_counter()
    key = cache_key(config, dataset.spec)
    if distributed:
        record = {"jit_compile": "false", "how": "not measured under a distribution strategy"}
    elif os.path.isfile(_cache_path(key)):
        with open(_cache_path(key)) as stream:
            record = dict(json.load(stream), how=f"measured before, cached in {_cache_path(key)}")
    else:
        timings = {choice: seconds_per_step(config, dataset, choice == "true")
                   for choice in ("false", "true")}
        faster = min(timings, key=timings.get)
        record = {"jit_compile": faster,
                  "seconds_per_step": timings, "cpu": cpu_model(), "tensorflow": tf.__version__,
                  "how": f"measured {timings['true'] * 1e3:.2f} ms per step with XLA against "
                         f"{timings['false'] * 1e3:.2f} without"}
        os.makedirs(os.path.dirname(_cache_path(key)), exist_ok=True)
        write_text_atomically(_cache_path(key), json.dumps(record, indent=2) + "\n")
    seconds = time.perf_counter() - start
    record = dict(record, tuning_seconds=seconds, cache_key=key)
    if chief:
        write_text_atomically(os.path.join(model_dir, TUNING_FILE),
                              json.dumps(record, indent=2) + "\n")
        log.info(f"--jit_compile=auto: {_said(record['jit_compile'])} ({record['how']}; "
                 f"{seconds:.1f} s); recorded in {os.path.join(model_dir, TUNING_FILE)}.")
    return dataclasses.replace(config, jit_compile=record["jit_compile"]), seconds


def _said(choice: str) -> str:
    return "XLA on" if choice == "true" else "XLA off"
