"""The decoder (and encoder) as a SavedModel that loads without vae_tf, and as TFLite.

`export_model` writes `<model_dir>/saved_model/<version>/` (the version is the
checkpoint's epoch), the layout TF Serving reads, and points the names in
`saved_model/` itself at the newest version through one link,
`saved_model/current`, so `tf.saved_model.load` of `saved_model/` loads the newest
model (`os.path.realpath("saved_model/current")` names it for readers that must
not see a switch between two files). The signatures are

- `decode` (also `serving_default`): `z` [None, z_dim] float32 (and `label`
  [None] int32 for conditional models) -> `images` [None, H, W, C], the mean
  of p(x|z) in [0, 1];
- `encode`: `images` [None, H, W, C] in [0, 1] -> `z_mean`, `z_log_var`
  (a log-variance whatever the training parameterisation), and `class_probs`
  for conditional models;
- `generate`: `num_images` int32 and `seed` int64 scalars (and `label` int32
  scalar) -> `images`, decoded from z drawn from the model's prior (N(0, I), or the
  VampPrior's mixture) with that seed;
- `sample_prior`: `num_images` int32 and `seed` int64 scalars -> `z` [num_images,
  z_dim], the draws `generate` decodes;

and `assets/config.json` describing the model. It is written by Keras'
`ExportArchive`, so TF Serving loads it. The export is written to a
temporary folder and moved into place, so an interrupted export never leaves a
half-written model behind.

`export_tflite` writes the decoder alone as a TFLite flatbuffer. TFLite has no
`Assert` op, so there the z width is checked by the input's shape, and a label
outside the classes decodes to NaN images instead of failing.
"""

import json
import os

import keras
import tensorflow as tf

import vae_tf
from vae_tf import compat, files
from vae_tf.errors import ConfigError, RunDirError
from vae_tf.run import layout, run_dir
from vae_tf.run.layout import CURRENT, EXPORT_DIR


def model_description(model, config, class_names) -> dict:
    """What `assets/config.json` says about an exported model."""
    return {"z_dim": model.z_dim, "arch": config.arch, "likelihood": config.likelihood,
            "decoder_std": config.decoder_std, "dataset": config.dataset,
            "class_names": list(class_names), "num_classes": len(class_names),
            "conditional": config.conditional, "image_shape": list(model.image_shape),
            "channels": model.image_shape[-1], "scale": config.scale,
            "vae_tf_version": vae_tf.__version__}


class ServingFunctions:
    """The serving functions of a model, with the input checks that name what to pass."""

    def __init__(self, model):
        self.model = model
        self.z_dim = model.z_dim
        self.num_classes = model.num_classes
        self.image_shape = model.image_shape

    @staticmethod
    def _checked(tensor, tail, checks):
        """`tensor`, passed on only once every (good, message) of `checks` holds, in order;
        else the first failing check's message. Then of static shape [None, *tail]
        (a scalar for tail None), which the model's layers need.

        One tf.cond over predicates computable for a tensor of any shape, whose
        refusing branch fails with the message and hands on a stand-in of the
        expected shape: with an assertion and a control dependency alone, Grappler
        ran ops that assume the declared shape on the bad tensor first, which then
        failed with TensorFlow's own message (seen with TensorFlow 2.21).
        """
        goods = tf.stack([good for good, _ in checks])
        first_bad = tf.argmin(tf.cast(goods, tf.int32))
        message = tf.gather(tf.constant([message for _, message in checks]), first_bad)

        def refuse():  # a stand-in of the right shape, so no other op can fail first
            with tf.control_dependencies([tf.debugging.Assert(False, [message])]):
                return tf.zeros([] if tail is None else [1, *tail], tensor.dtype)

        checked = tf.cond(tf.reduce_all(goods), lambda: tf.identity(tensor), refuse)
        checked.set_shape([] if tail is None else [None, *tail])
        return checked

    @staticmethod
    def _shape_is(tensor, tail) -> tf.Tensor:
        """Whether `tensor` is [batch, *tail] (a scalar for tail None), for any tensor."""
        rank = 0 if tail is None else 1 + len(tail)
        # Padded to the expected rank, so that comparing cannot fail on another rank.
        padded = tf.concat([tf.shape(tensor), tf.zeros([rank], tf.int32)], axis=0)[:rank]
        good = tf.equal(tf.rank(tensor), rank)
        if tail:
            good = tf.logical_and(good, tf.reduce_all(tf.equal(padded[1:], tail)))
        return good

    @staticmethod
    def _all(condition) -> tf.Tensor:
        return tf.reduce_all(tf.reshape(condition, [-1]))  # whatever the rank

    def _checked_z(self, z):
        expected = f"a [batch, {self.z_dim}] float32 matrix (z_dim={self.z_dim} columns)"
        return self._checked(z, [self.z_dim], [
            (self._shape_is(z, [self.z_dim]), f"z must be {expected}"),
            (self._all(tf.math.is_finite(z)), "z must be finite; it holds NaN or infinity")])

    def _checked_labels(self, labels, scalar: bool = False):
        tail = None if scalar else []
        return self._checked(labels, tail, [
            (self._shape_is(labels, tail), "label must be one class index, an int32 scalar"
             if scalar else "label must be one class index per row of z, a [batch] int32 "
             "vector"),
            (self._all(labels >= 0), "label must be 0 or more"),
            (self._all(labels < self.num_classes),
             f"label must be below {self.num_classes}, the number of classes")])

    def _checked_images(self, images):
        shape = ", ".join(map(str, self.image_shape))
        tail = list(self.image_shape)
        return self._checked(images, tail, [
            (self._shape_is(images, tail), f"images must be a [batch, {shape}] float32 tensor"),
            (self._all(tf.math.is_finite(images)),
             "images must be finite; it holds NaN or infinity"),
            (self._all((images >= 0.0) & (images <= 1.0)),
             "images must hold values in [0, 1]; divide 0-255 pixels by 255")])

    def decode(self, z, label=None):
        z = self._checked_z(z)
        if label is not None:
            label = self._checked_labels(label)
        return {"images": self.model.decode(z, label)}

    def encode(self, images):
        images = self._checked_images(images)
        z_mean, z_log_var = self.model.encode(images)
        outputs = {"z_mean": z_mean, "z_log_var": z_log_var}
        if self.model.conditional:
            outputs["class_probs"] = tf.nn.softmax(self.model.classifier(images, training=False))
        return outputs

    def sample_prior(self, num_images, seed):
        """{"z": [num_images, z_dim]} drawn from the model's own prior with `seed`."""
        num_images = self._checked(num_images, None, [
            (self._shape_is(num_images, None), "num_images must be an int32 scalar"),
            (self._all(num_images >= 0), "num_images must be 0 or more")])
        seed = self._checked(seed, None, [(self._shape_is(seed, None),
                                           "seed must be an int64 scalar")])
        return {"z": self.model.sample_prior(num_images, seed)}

    def generate(self, num_images, seed, label=None):
        z = self.sample_prior(num_images, seed)["z"]  # the model's own prior
        num_images = tf.shape(z)[0]
        if label is not None:
            label = tf.fill([num_images], self._checked_labels(label, scalar=True))
        return self.decode(z, label)


def serving_archive(model) -> keras.export.ExportArchive:
    """A Keras ExportArchive of the model with the decode, encode and generate endpoints.

    Keras' archive, rather than tf.saved_model.save of a tf.Module holding the
    model, because TF Serving and `saved_model_cli run` restore variables by
    name, which found none of the Keras 3 weights in the latter (seen with
    TensorFlow 2.21 and Keras 3.15).
    """
    functions = ServingFunctions(model)
    # No shapes declared: ServingFunctions checks them when the model is served, with a
    # message that names the input, where a declared shape would go unchecked.
    z = tf.TensorSpec(None, tf.float32, name="z")
    images = tf.TensorSpec(None, tf.float32, name="images")
    count = tf.TensorSpec(None, tf.int32, name="num_images")
    seed = tf.TensorSpec(None, tf.int64, name="seed")
    archive = keras.export.ExportArchive()
    # The first endpoint is also served as serving_default.
    if model.conditional:
        archive.add_endpoint("decode", lambda z, label: functions.decode(z, label),
                             input_signature=[z, tf.TensorSpec(None, tf.int32, name="label")])
    else:
        archive.add_endpoint("decode", lambda z: functions.decode(z), input_signature=[z])
    archive.add_endpoint("encode", lambda images: functions.encode(images),
                         input_signature=[images])
    if model.conditional:
        archive.add_endpoint(
            "generate", lambda num_images, seed, label: functions.generate(num_images, seed,
                                                                           label),
            input_signature=[count, seed, tf.TensorSpec(None, tf.int32, name="label")])
    else:
        archive.add_endpoint("generate",
                             lambda num_images, seed: functions.generate(num_images, seed),
                             input_signature=[count, seed])
    archive.add_endpoint("sample_prior",
                         lambda num_images, seed: functions.sample_prior(num_images, seed),
                         input_signature=[count, seed])
    return archive


def export_model(model, config, model_dir: str, overwrite: bool = False,
                 version: int = 0, class_names=None) -> str:
    """Writes the SavedModel into `<model_dir>/saved_model/<version>`; returns that path.

    The export is whole at every instant: it is written into a staging folder
    beside `saved_model/` and moved into place in one step (a rename, or an
    atomic exchange with the version it replaces, which only `overwrite`
    allows), then `saved_model/current`, one link, is switched to the newest
    version. A kill or an error at any point leaves the previous export or the
    new one, whole, behind `saved_model/`. `class_names` default to those
    recorded in the run's data.json.
    """
    if class_names is None:
        class_names = run_dir.load_data_spec(model_dir, config.dataset).class_names
    base = os.path.join(model_dir, EXPORT_DIR)
    _keep_unversioned_export(base)
    target = os.path.join(base, str(version))
    if os.path.exists(target) and not overwrite:
        raise RunDirError(f"{target} already exists; pass --overwrite to replace it with an "
                          f"export of the latest checkpoint.")
    with files.staging_folder(model_dir, f".{EXPORT_DIR}.") as staging:
        saved = os.path.join(staging, "model")
        serving_archive(model).write_out(saved, verbose=False)
        os.makedirs(os.path.join(saved, "assets"), exist_ok=True)
        with open(os.path.join(saved, "assets", "config.json"), "w") as stream:
            json.dump(model_description(model, config, class_names), stream, indent=2)
        os.makedirs(base, exist_ok=True)
        if os.path.exists(target):
            compat.exchange_paths(saved, target)  # the replaced version is now in staging
        else:
            os.rename(saved, target)
        _point_at_newest(base)
    return target


def export_keras(model, model_dir: str, version: int, overwrite: bool = False) -> str:
    """Writes the model, with its optimizer, as `<model_dir>/vae-<version>.keras`.

    `keras.saving.load_model` reloads it after `import vae_tf`, ready to `fit` on. It is
    written beside and renamed into place, so a kill leaves no part-written file, and an
    existing file of that version is replaced only with `overwrite`.
    """
    target = os.path.join(model_dir, layout.keras_file(version))
    if os.path.exists(target) and not overwrite:
        raise RunDirError(f"{target} already exists; pass --overwrite to replace it with the "
                          f"latest checkpoint's model.")
    with files.staging_folder(model_dir, ".keras.") as staging:
        written = os.path.join(staging, "vae.keras")
        model.save(written)
        os.replace(written, target)
    return target


def versions(base: str) -> list:
    """The version numbers exported under `base` (a saved_model/ folder), ascending."""
    if not os.path.isdir(base):
        return []
    return sorted(int(name) for name in os.listdir(base)
                  if name.isdigit() and os.path.isdir(os.path.join(base, name)))


def _keep_unversioned_export(base: str) -> None:
    """Moves an export written before versions existed into version 0, losing nothing."""
    pb = os.path.join(base, "saved_model.pb")
    if os.path.isfile(pb) and not os.path.islink(pb) and not os.path.exists(
            os.path.join(base, "0")):
        os.makedirs(os.path.join(base, "0"))
        for name in os.listdir(base):
            if not name.isdigit():
                os.rename(os.path.join(base, name), os.path.join(base, "0", name))


def _replace_link(link: str, target: str) -> None:
    """Points `link` at `target` in one step: readers see the old link or the new one."""
    if os.path.islink(link) and os.readlink(link) == target:
        return
    temporary = os.path.join(os.path.dirname(link), f".{os.path.basename(link)}.link")
    if os.path.lexists(temporary):
        os.remove(temporary)
    os.symlink(target, temporary)
    os.replace(temporary, link)


def _point_at_newest(base: str) -> None:
    """Points `current` in `base` at the newest version; saved_model.pb, variables/,
    assets/ ... in `base` are fixed links through it, so one switch moves them all."""
    newest = str(versions(base)[-1])
    _replace_link(os.path.join(base, CURRENT), newest)
    entries = os.listdir(os.path.join(base, newest))
    for name in entries:
        _replace_link(os.path.join(base, name), os.path.join(CURRENT, name))
    for name in os.listdir(base):
        path = os.path.join(base, name)
        if os.path.islink(path) and name != CURRENT and name not in entries:
            os.remove(path)


# --quantize of the TFLite decoder: the converter settings of each choice.
TFLITE_QUANTIZATIONS = {
    "none": lambda converter: None,
    "float16": lambda converter: (
        setattr(converter, "optimizations", [tf.lite.Optimize.DEFAULT]),
        converter.target_spec.supported_types.add(tf.float16)),
    # Dynamic-range quantisation: int8 weights, float activations, no calibration data.
    "int8": lambda converter: setattr(converter, "optimizations", [tf.lite.Optimize.DEFAULT]),
}


def tflite_decoder(model):
    """The decoder as a tf.function that TFLite can convert: no Assert ops, no variables.

    Inputs `z` [N, z_dim] float32 (and `label` [N] int32); output `images`. A
    label outside 0..num_classes-1 gives NaN images, the in-graph way to refuse it.
    """
    z_spec = tf.TensorSpec([None, model.z_dim], tf.float32, name="z")
    if not model.conditional:
        constant = compat.frozen(tf.function(model.decode).get_concrete_function(z_spec))
        return tf.function(lambda z: {"images": constant(z)[0]}, input_signature=[z_spec])

    def decode(z, label):
        images = model.decode(z, label)
        valid = tf.logical_and(label >= 0, label < model.num_classes)
        return tf.where(valid[:, tf.newaxis, tf.newaxis, tf.newaxis], images,
                        tf.constant(float("nan")))

    label_spec = tf.TensorSpec([None], tf.int32, name="label")
    constant = compat.frozen(tf.function(decode).get_concrete_function(z_spec, label_spec))
    return tf.function(lambda z, label: {"images": constant(z, label)[0]},
                       input_signature=[z_spec, label_spec])


def export_tflite(model, model_dir: str, quantize: str = "none") -> str:
    """Writes the decoder as `<model_dir>/decoder.tflite` (`decoder_<quantize>.tflite`)."""
    if quantize not in TFLITE_QUANTIZATIONS:
        raise ConfigError(f"--quantize={quantize} is not one of "
                          f"{', '.join(TFLITE_QUANTIZATIONS)}.")
    # Through a SavedModel of the decoder alone, so that the flatbuffer keeps the `decode`
    # signature, with its input and output names, for the TFLite interpreter.
    module = tf.Module()
    module.decode = tflite_decoder(model)
    with files.staging_folder(model_dir, ".tflite.") as staging:
        tf.saved_model.save(module, staging,
                            signatures={"decode": module.decode.get_concrete_function()})
        converter = tf.lite.TFLiteConverter.from_saved_model(staging, signature_keys=["decode"])
        TFLITE_QUANTIZATIONS[quantize](converter)
        flatbuffer = converter.convert()
    name = "decoder.tflite" if quantize == "none" else f"decoder_{quantize}.tflite"

    def write(path):
        with open(path, "wb") as stream:
            stream.write(flatbuffer)

    return files.write_atomically(os.path.join(model_dir, name), write)
