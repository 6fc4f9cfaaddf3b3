"""Runs one process of a distribution test: `python distributed_worker.py MODE OUT ARGS...`.

MODE `mirrored_step` builds the same tiny VAE under the default strategy and under a
MirroredStrategy over two logical CPU devices, takes one training step on the same
global batch with each, and saves both models' weights to OUT (.npz). The latent
noise is switched off so that the two steps are comparable number for number.

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


def mirrored_step(out, args):
    _two_logical_cpus()
    import keras

    from vae_tf import models

    from conftest import parse_config

    models.Sampling.call = lambda self, z_mean, z_log_var: z_mean  # no noise: comparable steps
    config = parse_config(*args)
    rng = np.random.default_rng(0)
    images = (rng.random((config.batch_size, 28, 28, 1)) < 0.3).astype(np.float32)
    labels = rng.integers(0, 10, config.batch_size).astype(np.int32)
    batch = tf.data.Dataset.from_tensors((images, labels))
    results = {}
    for name, strategy in (("default", tf.distribute.get_strategy()),
                           ("mirrored", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))):
        keras.utils.set_random_seed(config.seed)
        with strategy.scope():
            model = models.build_vae(config, 10)
            model.compile(optimizer=keras.optimizers.SGD(0.01))
        logs = model.fit(batch, epochs=1, verbose=0).history
        results[name] = (model, logs["loss"][0], strategy.num_replicas_in_sync)
    weights = {}
    for name, (model, loss, replicas) in results.items():
        for index, weight in enumerate(model.trainable_weights):
            weights[f"{name}_{index}"] = weight.numpy()
        weights[f"{name}_loss"] = np.float32(loss)
        weights[f"{name}_replicas"] = np.int32(replicas)
    np.savez(out, **weights)


def train(out, args):
    from vae_tf import training

    from conftest import parse_config

    if "--strategy=mirrored" in args:
        _two_logical_cpus()
    result = training.train_and_evaluate(parse_config(*args))
    _save(out, result.model)


def train_without_workarounds(out, args):
    from vae_tf import compat, models

    def keras_own_build(self, iterator=None, data_batch=None):
        return super(compat.SkipSymbolicBuildWhenBuilt, self)._maybe_symbolic_build(
            iterator=iterator, data_batch=data_batch)

    compat.SkipSymbolicBuildWhenBuilt._maybe_symbolic_build = keras_own_build
    models.compat.step_logs = lambda logs: logs
    train(out, args)


if __name__ == "__main__":
    mode, out, *rest = sys.argv[1:]
    {"mirrored_step": mirrored_step, "train": train,
     "train_without_workarounds": train_without_workarounds}[mode](out, rest)
