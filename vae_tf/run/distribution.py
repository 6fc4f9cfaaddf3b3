"""Where a run computes: its `tf.distribute` strategy, which worker writes files, threads.

`--strategy=default` trains on one device. `mirrored` replicates the model on
every local device (`tf.distribute.MirroredStrategy`: several GPUs, or logical
CPU devices). `multi_worker` spans machines
(`tf.distribute.MultiWorkerMirroredStrategy`), configured by the `TF_CONFIG`
environment variable; every worker runs the same command, and only the chief
writes checkpoints, summaries, figures and the export into --model_dir.
"""

import json
import os

import tensorflow as tf

from vae_tf import log
from vae_tf.errors import ConfigError


def _multi_worker() -> tf.distribute.Strategy:
    text = os.environ.get("TF_CONFIG", "")
    try:
        tf_config = json.loads(text) if text else None
    except json.JSONDecodeError as error:
        raise ConfigError(f"--strategy=multi_worker: TF_CONFIG is not valid JSON ({error}).") \
            from None
    if not tf_config or "cluster" not in tf_config or "task" not in tf_config:
        raise ConfigError(
            "--strategy=multi_worker needs TF_CONFIG set on every worker, e.g. "
            '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
            '"task": {"type": "worker", "index": 0}}.')
    return tf.distribute.MultiWorkerMirroredStrategy()


# --strategy: a function making each strategy.
STRATEGIES = {
    "default": tf.distribute.get_strategy,
    "mirrored": tf.distribute.MirroredStrategy,
    "multi_worker": _multi_worker,
}


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The strategy called `name`; multi_worker must be made before any other TF op."""
    if name not in STRATEGIES:
        raise ConfigError(f"--strategy={name} is not one of {', '.join(STRATEGIES)}.")
    return STRATEGIES[name]()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's files: always, unless it is a non-chief worker."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def configure_threads(intra_op: int, inter_op: int) -> None:
    """Sets TensorFlow's thread pools (0 keeps its default) before its runtime starts.

    Once TensorFlow has run an op in this process (as in a notebook that already
    trained), the pools are fixed: a warning says so and the run goes on with them.
    """
    for name, wanted, get, set_ in (
            ("intra_op_threads", intra_op, tf.config.threading.get_intra_op_parallelism_threads,
             tf.config.threading.set_intra_op_parallelism_threads),
            ("inter_op_threads", inter_op, tf.config.threading.get_inter_op_parallelism_threads,
             tf.config.threading.set_inter_op_parallelism_threads)):
        if not wanted or get() == wanted:
            continue
        try:
            set_(wanted)
        except RuntimeError:
            log.warning(f"--{name}={wanted} not applied: TensorFlow already started in this "
                        f"process with {get() or 'its default'}; start a new process to "
                        f"change it.")
