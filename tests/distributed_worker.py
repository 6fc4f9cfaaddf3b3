"""Runs one process of a distribution test: `python distributed_worker.py MODE OUT ARGS...`.

MODE `train` runs `training.train_and_evaluate` with the flags in ARGS (TF_CONFIG
configures multi-worker runs; --strategy=mirrored gets two logical CPU devices) and
saves the final weights to OUT. MODE `train_without_workarounds` does the same with
the keras-team/keras#20585 workarounds of `vae_tf.compat` switched off.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def _save(path, model):
    np.savez(path, *[w.numpy() for w in model.trainable_weights])


def _two_logical_cpus():
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)


def train(out, args):
    from vae_tf.run import training

    from conftest import parse_config

    if "--strategy=mirrored" in args:
        _two_logical_cpus()
    result = training.train_and_evaluate(parse_config(*args))
    _save(out, result.model)


def train_without_workarounds(out, args):
    from vae_tf import compat
    from vae_tf.model import vae

    def keras_own_build(self, iterator=None, data_batch=None):
        return super(compat.SkipSymbolicBuildWhenBuilt, self)._maybe_symbolic_build(
            iterator=iterator, data_batch=data_batch)

    compat.SkipSymbolicBuildWhenBuilt._maybe_symbolic_build = keras_own_build
    vae.compat.step_logs = lambda logs: logs
    train(out, args)


if __name__ == "__main__":
    mode, out, *rest = sys.argv[1:]
    {"train": train,
     "train_without_workarounds": train_without_workarounds}[mode](out, rest)
