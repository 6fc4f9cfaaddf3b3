"""Using a trained VAE: encode, decode, reconstruct, generate and score images.

`InferenceMethods` is a part of `vae_tf.model.vae.VAE`. Its methods take TensorFlow
tensors and return tensors (so the SavedModel's signatures call them inside a
`tf.function`), or, called eagerly with NumPy arrays, take uint8 pixels or floats in
[0, 1] (a grey image may leave out its channel axis) and return NumPy arrays, after
checking the shapes:

    images = model.generate(7, label=3, seed=0)          # [7, 28, 28, 1] floats in [0, 1]
    z_mean, z_log_var = model.encode(test_images)        # uint8 [N, 28, 28] is fine
    log_px = model.log_likelihood(test_images[:100], num_samples=1000)   # [100] nats
"""

import functools

import numpy as np
import tensorflow as tf

from vae_tf.model import iwae, losses

NUMPY_BATCH = 1000  # images or latents per call when NumPy arrays are given


def _eager_numpy(value) -> bool:
    return tf.executing_eagerly() and isinstance(value, (np.ndarray, list, tuple))


def takes_numpy(kind: str):
    """A method whose first argument, `images` or `z`, may be NumPy: then it is checked,
    made a float32 tensor, and the results are returned as NumPy arrays."""

    def wrap(method):
        @functools.wraps(method)
        def call(self, first, *args, **kwargs):
            if not _eager_numpy(first):
                return method(self, first, *args, **kwargs)
            checked = self.as_images(first) if kind == "images" else self.as_latents(first)
            # In batches, so that a whole test set does not take a whole test set's
            # activations at once; a label per image goes with its batch.
            label = kwargs.pop("label", args[0] if args else None)
            parts = []
            for start in range(0, max(len(checked), 1), NUMPY_BATCH):
                part_label = label
                if label is not None and np.ndim(label):
                    part_label = np.asarray(label)[start:start + NUMPY_BATCH]
                extra = () if kind == "images" else (part_label,)
                parts.append(tf.nest.map_structure(
                    lambda tensor: tensor.numpy(),
                    method(self, tf.constant(checked[start:start + NUMPY_BATCH]), *extra)))
            return tf.nest.map_structure(lambda *pieces: np.concatenate(pieces), *parts)

        return call

    return wrap


class InferenceMethods:
    """What a trained VAE does for its users (a mixin of `vae_tf.model.vae.VAE`)."""

    def as_images(self, images) -> np.ndarray:
        """NumPy images as the model reads them: float32 [N, H, W, C] in [0, 1].

        uint8 pixels are divided by 255; a grey model's images may be [N, H, W].
        Anything else raises ValueError naming the expected shape.
        """
        images = np.asarray(images)
        shape = tuple(self.image_shape)
        if images.ndim == 3 and shape[-1] == 1:
            images = images[..., np.newaxis]
        if images.ndim != 4 or images.shape[1:] != shape:
            raise ValueError(f"images must be [N, {', '.join(map(str, shape))}]"
                             f"{' (or without the channel axis)' if shape[-1] == 1 else ''}, "
                             f"uint8 or floats in [0, 1]; got shape {images.shape}")
        if images.dtype == np.uint8:
            return images.astype(np.float32) / 255.0
        images = images.astype(np.float32)
        if images.size and (images.min() < 0 or images.max() > 1):
            raise ValueError("float images must hold values in [0, 1]; divide 0-255 pixels "
                             "by 255, or pass them as uint8")
        return images

    def as_latents(self, z) -> np.ndarray:
        """NumPy latents as float32 [N, z_dim]; ValueError naming the shape otherwise."""
        z = np.asarray(z, np.float32)
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must be [N, {self.z_dim}] (z_dim={self.z_dim}); got shape "
                             f"{z.shape}")
        return z

    def _labels(self, label, batch):
        """int32 labels [batch] from one label or one per image; None for unconditional."""
        if self.classifier is None:
            return None
        if label is None:
            raise ValueError("a conditional model needs a label (one class, or one per image)")
        return tf.broadcast_to(tf.cast(label, tf.int32), [batch])

    def condition(self, images):
        """What the decoder reads beside z for unlabelled `images` [B, C], or None."""
        if self.classifier is None:
            return None
        class_logits = self.classifier(images, training=False)
        if self.condition_on == "label":
            return self._one_hot(None, class_logits)
        return tf.nn.softmax(class_logits)

    @takes_numpy("images")
    def encode(self, images):
        """(z_mean, z_log_var) of unlabelled images, each [B, z_dim].

        With a flow, z_mean is the flow of the Gaussian's mean (the latent that a
        deterministic reconstruction decodes) and z_log_var the Gaussian's. With two
        stochastic layers, z_mean is [mean of q(z1|x, z2), mean of q(z2|x)] at z2 =
        q(z2|x)'s mean, and z_log_var their log-variances.
        """
        z_mean, z_log_var, context = self.posterior(images)
        if self.ladder is not None:
            top_mean, top_log_var = self.ladder.split(z_mean)[1], self.ladder.split(z_log_var)[1]
            mean, log_var = self.ladder.posterior_moments(top_mean, context)
            return tf.concat([mean, top_mean], -1), tf.concat([log_var, top_log_var], -1)
        return self.transform(z_mean, context)[0], z_log_var

    @takes_numpy("z")
    def decode(self, z, label=None):
        """Mean of p(x|z) in [0, 1], [B, H, W, C]. A conditional model needs `label`: one
        class for every z, or one per z."""
        labels = self._labels(label, tf.shape(z)[0])
        if labels is not None:
            z = tf.concat([z, tf.one_hot(labels, self.num_classes, dtype=z.dtype)], axis=-1)
        return self.mean_image(self.decoder(z, training=False))

    @takes_numpy("images")
    def reconstruct(self, images):
        """Deterministic reconstructions: the decoded latent mean. [B, H, W, C] in [0, 1]."""
        z_mean, _ = self.encode(images)
        condition = self.condition(images)
        decoder_input = z_mean if condition is None else tf.concat([z_mean, condition], -1)
        return self.mean_image(self.decoder(decoder_input, training=False))

    def generate(self, num_images: int, label=None, seed=None) -> np.ndarray:
        """`num_images` images [N, H, W, C] in [0, 1] decoded from draws of the model's own
        prior, of class `label` for a conditional model; repeatable for an int `seed`."""
        seed = np.random.SeedSequence().entropy % 2 ** 62 if seed is None else seed
        z = self.sample_prior(num_images, seed)
        return self.decode(z, label).numpy()

    def export(self, filepath, format="tf_saved_model", verbose=None, **kwargs):
        """Keras' `Model.export`: a SavedModel with vae_tf's `decode`, `encode`, `generate`
        and `sample_prior` signatures (`vae_tf.run.exporting`), which TF Serving serves."""
        if format != "tf_saved_model":
            return super().export(filepath, format=format, verbose=verbose, **kwargs)
        from vae_tf.run import exporting  # exporting reads the model's methods

        exporting.serving_archive(self).write_out(filepath, verbose=bool(verbose))

    def mean_image(self, logits):
        """The mean of p(x|z) in [0, 1] of decoder outputs, as the likelihood defines it."""
        return losses.likelihood_named(self.likelihood).mean(logits)

    def decoder_log_likelihood(self, images, z, training=False):
        """log p(x|z) of unlabelled images [B, H, W, C] at z [C, B, Z] -> [C, B], normalised.

        The conditioning (the classifier's class probabilities, or its predicted label) is
        computed once per image, not once per sample.
        """
        count, batch = tf.shape(z)[0], tf.shape(z)[1]
        z = tf.reshape(z, [-1, z.shape[-1]])  # [C*B, Z], sample-major
        condition = self.condition(images)
        if condition is not None:
            z = tf.concat([z, tf.tile(condition, [count, 1])], axis=-1)
        logits = self.decoder(z, training=training)
        tiled = tf.tile(images, [count, 1, 1, 1])
        return tf.reshape(losses.log_likelihood(self.likelihood, tiled, logits,
                                                self.decoder_std), [count, batch])

    def iwae_functions(self):
        """(encode_fn, log_likelihood_fn, transform_fn, log_prior_fn) of this model for
        `iwae.importance_weighted_log_likelihood` (None where the defaults hold)."""

        def encode_fn(images):
            z_mean, z_log_var, context = self.posterior(images)
            return (z_mean, z_log_var, context) if self.transforms else (z_mean, z_log_var)

        return (encode_fn, self.decoder_log_likelihood,
                self.transform if self.transforms else None,
                None if self.standard_normal_prior else self.log_prior)

    def log_likelihood(self, images, num_samples: int = 1000, batch_size: int = 100,
                       seed: int = 0) -> np.ndarray:
        """log p(x) in nats of each image [N] (NumPy), the importance-weighted estimate with
        `num_samples` draws per image (`python -m vae_tf.evaluate` uses 5000)."""
        images = self.as_images(images)
        encode_fn, log_likelihood_fn, transform_fn, log_prior_fn = self.iwae_functions()
        estimate = tf.function(lambda batch, start: iwae.importance_weighted_log_likelihood(
            encode_fn, log_likelihood_fn, batch, num_samples, min(num_samples, 500),
            seed + start, transform_fn, log_prior_fn))
        return np.concatenate([
            estimate(tf.constant(images[start:start + batch_size]), tf.constant(start)).numpy()
            for start in range(0, len(images), batch_size)])
