"""Settings chosen by measurement: `--jit_compile=auto` and `--steps_per_execution=auto`.

Whether XLA speeds up a training step depends on the CPU (it measured 1.4x
faster for the conv preset on an AVX2 CPU and slower on an AVX-512 one) and on
the model, so no fixed default is right everywhere; how many steps one call
into the compiled step should run depends on how long a step takes against
the per-call overhead. With `auto`, training starts by timing a few steps of
the run's own model on its own data with and without XLA, then with 1, 10 and
50 steps per call, and keeps the fastest. The choice is

- printed in one line;
- recorded in `<model_dir>/tuning.json`, which a resumed run reuses, so that
  its numerics do not change halfway (XLA fuses and reorders float operations);
- cached under the user's cache folder (`$VAE_TF_CACHE_DIR/tuning/`, by default
  `~/.cache/vae_tf/tuning/`), keyed by the CPU model, the oneDNN ISA limit,
  the TensorFlow and Keras versions and every setting that shapes the step, so
  a second run of the same model on the same machine does not measure again.

The seconds spent measuring count in the first epoch's `epoch_seconds`. An
explicit value is never overridden. Under a distribution strategy nothing is
measured (every worker would have to agree): `auto` means no XLA and one step
per call there. Thread counts are not tuned: TensorFlow fixes its thread pools
when its runtime starts, before a model exists to be timed.
"""

import dataclasses
import hashlib
import json
import os
import platform
import time

import keras
import tensorflow as tf

from vae_tf import files, log
from vae_tf.config import AUTO
from vae_tf.data import pipelines
from vae_tf.files import write_text_atomically
from vae_tf.run import stop_signals, trainable
from vae_tf.run.layout import TUNING_FILE

# How long one candidate's timed steps take, at least, after its warm-up.
TRIAL_SECONDS = 0.5
TRIAL_REPEATS = 3
# --steps_per_execution=auto's candidates, and the longest call worth timing.
STEPS_PER_EXECUTION = (1, 10, 50)
MAX_CALL_SECONDS = 1.0


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
                "inter_op_threads", "dropout", "leaky_relu_slope", "train_iw_samples")}
    for name in ("dataset", "seed"):  # the data matter only through their shape
        step.pop(name, None)
    described = {"cpu": cpu_model(), "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
                 "cpus": os.cpu_count(), "tensorflow": tf.__version__,
                 "keras": keras.__version__, "image_shape": list(spec.image_shape),
                 "num_classes": spec.num_classes, "step": step}
    text = json.dumps(described, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _cache_path(key: str) -> str:
    return os.path.join(files.cache_dir(), "tuning", f"{key}.json")


def cached(key: str):
    """The record measured before under `key` on this machine, or None."""
    if not os.path.isfile(_cache_path(key)):
        return None
    with open(_cache_path(key)) as stream:
        return dict(json.load(stream), how=f"measured before, cached in {_cache_path(key)}")


def store(key: str, record: dict) -> None:
    os.makedirs(os.path.dirname(_cache_path(key)), exist_ok=True)
    write_text_atomically(_cache_path(key), json.dumps(record, indent=2) + "\n")


def recorded(model_dir: str):
    """The tuning record of a run ({"jit_compile": "true" or "false", ...}), or None."""
    path = os.path.join(model_dir, TUNING_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as stream:
        return json.load(stream)


def _settings(record: dict) -> dict:
    """The Config values a tuning record decides."""
    return {"jit_compile": record["jit_compile"],
            "steps_per_execution": record.get("steps_per_execution", 1)}


def _undecided(config) -> set:
    return ({"jit_compile"} if config.jit_compile == "auto" else set()) | (
        {"steps_per_execution"} if config.steps_per_execution == AUTO else set())


def resolved(config, model_dir: str):
    """`config` with `auto` replaced by the run's recorded choice (no XLA, 1 step if none)."""
    undecided = _undecided(config)
    if not undecided:
        return config
    record = recorded(model_dir) or {"jit_compile": "false", "steps_per_execution": 1}
    settings = _settings(record)
    return dataclasses.replace(config, **{name: settings[name] for name in undecided})


def seconds_per_step(config, dataset, jit_compile: bool, steps_per_execution: int) -> float:
    """The fastest of TRIAL_REPEATS timings of training steps of the run's model."""
    keras.utils.set_random_seed(config.seed)
    model, _ = trainable.build(dataclasses.replace(
        config, jit_compile="true" if jit_compile else "false",
        steps_per_execution=steps_per_execution), dataset.spec)
    iterator = iter(pipelines.train_pipeline(dataset.train, config.batch_size, config.seed,
                                        binarize=config.binarize))
    model.make_train_function(force=True)
    model.train_function(iterator)  # trace, compile and warm up
    model.optimizer.iterations.numpy()
    start = time.perf_counter()
    model.train_function(iterator)
    model.optimizer.iterations.numpy()
    calls = max(1, round(TRIAL_SECONDS / max(time.perf_counter() - start, 1e-6)))
    timings = []
    for _ in range(TRIAL_REPEATS):
        start = time.perf_counter()
        for _ in range(calls):
            stop_signals.stop_if_received()
            model.train_function(iterator)
        model.optimizer.iterations.numpy()  # waits for the last step
        timings.append((time.perf_counter() - start) / (calls * steps_per_execution))
    return min(timings)


def measure(config, dataset) -> dict:
    """A tuning record: the fastest XLA choice, then the fastest steps per execution.

    XLA is decided first, at the given steps per execution (1 if auto); then, with
    it, the STEPS_PER_EXECUTION candidates whose call would take under
    MAX_CALL_SECONDS (a longer call saves nothing measurable and makes the
    progress bar and step checkpoints coarse).
    """
    trials = []

    def trial(jit_compile: str, steps_per_execution: int) -> float:
        for done in trials:
            if (done["jit_compile"], done["steps_per_execution"]) == (jit_compile,
                                                                      steps_per_execution):
                return done["seconds_per_step"]
        seconds = seconds_per_step(config, dataset, jit_compile == "true", steps_per_execution)
        trials.append({"jit_compile": jit_compile, "steps_per_execution": steps_per_execution,
                       "seconds_per_step": seconds})
        return seconds

    auto_steps = config.steps_per_execution == AUTO
    steps = 1 if auto_steps else config.steps_per_execution
    jit_choices = ("false", "true") if config.jit_compile == "auto" else (config.jit_compile,)
    jit_compile = min(jit_choices, key=lambda choice: trial(choice, steps))
    if auto_steps:
        step = trial(jit_compile, 1)
        candidates = [n for n in STEPS_PER_EXECUTION if n == 1 or n * step < MAX_CALL_SECONDS]
        steps = min(candidates, key=lambda n: trial(jit_compile, n))
    best = trial(jit_compile, steps)
    return {"jit_compile": jit_compile, "steps_per_execution": steps, "trials": trials,
            "cpu": cpu_model(), "tensorflow": tf.__version__,
            "how": "measured " + ", ".join(
                f"{'XLA' if t['jit_compile'] == 'true' else 'no XLA'} x{t['steps_per_execution']}"
                f" {t['seconds_per_step'] * 1e3:.2f} ms" for t in trials)
                   + f" per step; kept {best * 1e3:.2f} ms"}


def choose(config, dataset, model_dir: str, distributed: bool, chief: bool = True):
    """(config with --jit_compile and --steps_per_execution decided, seconds spent measuring)."""
    undecided = _undecided(config)
    if not undecided:
        return config, 0.0
    record = recorded(model_dir)
    if record is not None:
        if chief:
            log.info(f"{_flags(undecided)}: {_said(record, undecided)}, as recorded in "
                     f"{os.path.join(model_dir, TUNING_FILE)} when the run started.")
        return resolved(config, model_dir), 0.0
    start = time.perf_counter()
    key = cache_key(config, dataset.spec)
    if distributed:
        record = {"jit_compile": "false", "steps_per_execution": 1,
                  "how": "not measured under a distribution strategy"}
    else:
        record = cached(key)
        if record is None:
            record = measure(config, dataset)
            store(key, record)
    seconds = time.perf_counter() - start
    record = dict(record, tuning_seconds=seconds, cache_key=key)
    if chief:
        write_text_atomically(os.path.join(model_dir, TUNING_FILE),
                              json.dumps(record, indent=2) + "\n")
        log.info(f"{_flags(undecided)}: {_said(record, undecided)} ({record['how']}; "
                 f"{seconds:.1f} s); recorded in {os.path.join(model_dir, TUNING_FILE)}.")
    settings = _settings(record)
    return dataclasses.replace(config, **{name: settings[name] for name in undecided}), seconds


def _flags(undecided: set) -> str:
    return " and ".join(f"--{name}=auto" for name in sorted(undecided))


def _said(record: dict, undecided: set) -> str:
    said = []
    if "jit_compile" in undecided:
        said.append("XLA on" if record["jit_compile"] == "true" else "XLA off")
    if "steps_per_execution" in undecided:
        steps = _settings(record)["steps_per_execution"]
        said.append(f"{steps} step{'s' if steps > 1 else ''} per execution")
    return ", ".join(said)
