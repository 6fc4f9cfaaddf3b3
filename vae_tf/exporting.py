"""The decoder (and encoder) as a SavedModel that loads without vae_tf.

`export_model` writes `<model_dir>/saved_model/` with the signatures

- `decode` (also `serving_default`): `z` [None, z_dim] float32 (and `label`
  [None] int32 for conditional models) -> `images` [None, 28, 28, 1], the mean
  of p(x|z) in [0, 1];
- `encode`: `images` [None, 28, 28, 1] in [0, 1] -> `z_mean`, `z_log_var`
  (a log-variance whatever the training parameterisation), and `class_probs`
  for conditional models;
- `generate`: `num_images` int32 and `seed` int64 scalars (and `label` int32
  scalar) -> `images`, decoded from z ~ N(0, I) drawn with that seed;

and `assets/config.json` describing the model. The export is written to a
temporary folder and moved into place, so an interrupted export never leaves a
half-written model behind.
"""

import json
import os
import shutil
import tempfile

import tensorflow as tf

import vae_tf
from vae_tf.checkpoints import random_states
from vae_tf.data import CLASS_NAMES, IMAGE_SHAPE
from vae_tf.errors import RunDirError

EXPORT_DIR = "saved_model"


def model_description(config) -> dict:
    """What `assets/config.json` says about an exported model."""
    return {"z_dim": config.z_dim, "arch": config.arch, "likelihood": config.likelihood,
            "decoder_std": config.decoder_std, "dataset": config.dataset,
            "class_names": list(CLASS_NAMES[config.dataset]),
            "conditional": config.conditional, "image_shape": list(IMAGE_SHAPE),
            "scale": config.scale, "vae_tf_version": vae_tf.__version__}


class ExportModule(tf.Module):
    """Holds the model and exposes its serving functions."""

    def __init__(self, model, config_path: str):
        super().__init__()
        self.model = model
        self.random_states = random_states(model)
        self.config_file = tf.saved_model.Asset(config_path)
        self.z_dim = model.z_dim
        self.num_classes = model.num_classes

    @staticmethod
    def _after(checks, tensor):
        """`tensor`, usable only once every check has passed.

        Without the control dependency nothing orders an assertion before the
        model's own ops, and a wrong shape could fail first with a bare
        matrix-size error.
        """
        with tf.control_dependencies(checks):
            return tf.identity(tensor)

    def _checked_z(self, z):
        return self._after([tf.debugging.assert_equal(tf.shape(z)[1], self.z_dim, message=(
            f"z must have z_dim={self.z_dim} columns; pass a [batch, {self.z_dim}] tensor"))], z)

    def _checked_labels(self, labels):
        return self._after([
            tf.debugging.assert_greater_equal(labels, 0, message="label must be 0 or more"),
            tf.debugging.assert_less(labels, self.num_classes, message=(
                f"label must be below {self.num_classes}, the number of classes"))], labels)

    def _decode(self, z, label=None):
        z = self._checked_z(z)
        if label is not None:
            label = self._checked_labels(label)
        return {"images": self.model.decode(z, label)}

    def _encode(self, images):
        images = self._after([tf.debugging.assert_equal(
            tf.shape(images)[1:], tf.constant(IMAGE_SHAPE),
            message=f"images must be [batch, {', '.join(map(str, IMAGE_SHAPE))}]")], images)
        z_mean, z_log_var = self.model.encoder(images, training=False)
        outputs = {"z_mean": z_mean, "z_log_var": z_log_var}
        if self.model.conditional:
            outputs["class_probs"] = tf.nn.softmax(self.model.classifier(images, training=False))
        return outputs

    def _generate(self, num_images, seed, label=None):
        num_images = self._after([tf.debugging.assert_non_negative(
            num_images, message="num_images must be 0 or more")], num_images)
        z = tf.random.stateless_normal(tf.stack([num_images, self.z_dim]),
                                       seed=tf.stack([seed, tf.constant(0, tf.int64)]))
        if label is not None:
            label = tf.fill([num_images], label)
        return self._decode(z, label)

    def signatures(self) -> dict:
        """Concrete functions for every signature, with typed, named inputs."""
        z = tf.TensorSpec([None, self.z_dim], tf.float32, name="z")
        images = tf.TensorSpec([None] + list(IMAGE_SHAPE), tf.float32, name="images")
        count = tf.TensorSpec([], tf.int32, name="num_images")
        seed = tf.TensorSpec([], tf.int64, name="seed")
        encode = tf.function(self._encode).get_concrete_function(images)
        if self.model.conditional:
            labels = tf.TensorSpec([None], tf.int32, name="label")
            label = tf.TensorSpec([], tf.int32, name="label")
            decode = tf.function(self._decode).get_concrete_function(z, labels)
            generate = tf.function(self._generate).get_concrete_function(count, seed, label)
        else:
            decode = tf.function(lambda z: self._decode(z)).get_concrete_function(z)
            generate = tf.function(
                lambda num_images, seed: self._generate(num_images, seed)
            ).get_concrete_function(count, seed)
        return {"decode": decode, "serving_default": decode, "encode": encode,
                "generate": generate}


def export_model(model, config, model_dir: str, overwrite: bool = False) -> str:
    """Writes the SavedModel into `<model_dir>/saved_model`; returns its path.

    An existing export is replaced only with `overwrite`; the new one is built
    in a temporary folder beside it and swapped in.
    """
    target = os.path.join(model_dir, EXPORT_DIR)
    if os.path.exists(target) and not overwrite:
        raise RunDirError(f"{target} already exists; pass --overwrite to replace it with an "
                          f"export of the latest checkpoint.")
    staging = tempfile.mkdtemp(prefix=f".{EXPORT_DIR}.", dir=model_dir)
    try:
        config_path = os.path.join(staging, "config.json")
        with open(config_path, "w") as stream:
            json.dump(model_description(config), stream, indent=2)
        module = ExportModule(model, config_path)
        saved = os.path.join(staging, EXPORT_DIR)
        tf.saved_model.save(module, saved, signatures=module.signatures())
        if os.path.exists(target):
            retired = os.path.join(staging, "previous")
            os.rename(target, retired)
        os.rename(saved, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
