"""The priors p(z) of a VAE, each chosen by name from `PRIORS` (--prior).

- `standard_normal`: N(0, I), the prior of the tutorials and of every earlier
  vae_tf model, without weights.
- `vamp`: the VampPrior (Tomczak and Welling, 2018, "VAE with a VampPrior",
  arXiv:1705.07120), the mixture of the encoder's posteriors at K learned
  pseudo-inputs u_k,

      p(z) = (1/K) sum_k q(z | u_k),

  whose pseudo-inputs are images, kept in [0, 1] by clipping (the paper's
  hardtanh) and initialised from N(0.05, 0.01), as the paper's code does.

Every prior has `log_prob(z, encode)` and `sample(num, z_dim, seed, encode)`,
where `encode(images)` is the encoder's (mean, log-variance) (a VampPrior's
components). A prior with weights is a Keras layer of the VAE; one without is
a plain object. Adding a prior is one class here and one entry of `PRIORS`.
"""

import math

import keras
import tensorflow as tf

from vae_tf.model import losses

PSEUDO_INPUT_MEAN, PSEUDO_INPUT_STD = 0.05, 0.01


def standard_normal_log_prob(z):
    """log N(z; 0, I) summed over the last axis. [..., Z] -> [...]."""
    return losses.gaussian_log_density(z, 0.0, tf.zeros_like(z))


def mixture_log_prob(z, means, log_vars):
    """log (1/K) sum_k N(z; means_k, exp(log_vars_k)). z [..., Z], means/log_vars [K, Z] -> [...].

    Expanded into matrix products, so that N samples against K components
    take [N, K] memory rather than [N, K, Z].
    """
    shape = tf.shape(z)[:-1]
    flat = tf.reshape(z, [-1, z.shape[-1]])  # [N, Z]
    precisions = tf.exp(-log_vars)  # [K, Z]
    # sum_d (z_d - m_kd)^2 / v_kd = z^2 . p_k - 2 z . (m_k p_k) + m_k^2 . p_k
    squared = (tf.matmul(tf.square(flat), precisions, transpose_b=True)
               - 2.0 * tf.matmul(flat, means * precisions, transpose_b=True)
               + tf.reduce_sum(tf.square(means) * precisions, axis=-1))  # [N, K]
    constants = -0.5 * (z.shape[-1] * math.log(2.0 * math.pi) + tf.reduce_sum(log_vars, -1))
    components = constants - 0.5 * squared  # [N, K] log N(z_n; component k)
    count = tf.cast(tf.shape(means)[0], components.dtype)
    return tf.reshape(tf.reduce_logsumexp(components, axis=-1) - tf.math.log(count), shape)


def mixture_sample(means, log_vars, num, seed):
    """`num` draws of the mixture: a component chosen uniformly, then its Gaussian. -> [num, Z].

    `seed` is an int64 scalar; the draws depend only on it, so they are repeatable.
    """
    seed = tf.cast(seed, tf.int64)
    chosen = tf.random.stateless_uniform([num], seed=tf.stack([seed, tf.constant(1, tf.int64)]),
                                         maxval=tf.shape(means)[0], dtype=tf.int32)
    noise = tf.random.stateless_normal(tf.stack([num, tf.shape(means)[1]]),
                                       seed=tf.stack([seed, tf.constant(2, tf.int64)]))
    return tf.gather(means, chosen) + tf.exp(0.5 * tf.gather(log_vars, chosen)) * noise


class StandardNormal:
    """N(0, I), without weights."""

    def log_prob(self, z, encode):
        return standard_normal_log_prob(z)

    def sample(self, num, z_dim, seed, encode):
        return tf.random.stateless_normal(tf.stack([num, z_dim]), seed=tf.stack(
            [tf.cast(seed, tf.int64), tf.constant(0, tf.int64)]))


class VampPrior(keras.layers.Layer):
    """The pseudo-inputs u_k [K, H, W, C] of a VampPrior; the VAE encodes them."""

    def __init__(self, num_components: int, image_shape, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        if num_components < 1:
            raise ValueError(f"a VampPrior needs at least one component, not {num_components}")
        self.num_components = num_components
        self.pixels = self.add_weight(
            shape=(num_components, *image_shape), name="pseudo_inputs",
            initializer=keras.initializers.RandomNormal(PSEUDO_INPUT_MEAN, PSEUDO_INPUT_STD,
                                                        seed=seed))
        # Never called (the VAE reads the pseudo-inputs), so built here, with its weight.
        self.built = True

    def pseudo_inputs(self):
        """The pseudo-inputs as images in [0, 1] (clipped, as the paper's hardtanh)."""
        return tf.clip_by_value(self.pixels, 0.0, 1.0)

    def log_prob(self, z, encode):
        return mixture_log_prob(z, *encode(self.pseudo_inputs()))

    def sample(self, num, z_dim, seed, encode):
        return mixture_sample(*encode(self.pseudo_inputs()), num, seed)


# --prior: each prior by name, a builder of it from (num_components, image_shape, seed).
PRIORS = {
    "standard_normal": lambda num_components, image_shape, seed: StandardNormal(),
    "vamp": lambda num_components, image_shape, seed: VampPrior(
        num_components, image_shape, seed=seed, dtype="float32", name="prior"),
}
