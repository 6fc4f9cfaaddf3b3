"""The second stochastic layer of a hierarchical VAE (--latent_layers=2).

The HVAE of Tomczak and Welling (2018, "VAE with a VampPrior", arXiv:1705.07120,
section 3.1) has two latents, z2 on top and z1 below:

    q(z1, z2 | x) = q(z2 | x) q(z1 | x, z2)
    p(x, z1, z2)  = p(x | z1, z2) p(z1 | z2) p(z2)

The encoder gives q(z2|x); this layer holds the two conditional Gaussians that
the second layer adds, q(z1|x, z2) and p(z1|z2), and the decoder reads z1 and
z2 joined. The model's latent z is [z1, z2] (z1 first), 2 * z_dim wide.

q(z1|x, z2) is written as an invertible map of a Gaussian draw, the same form as
a flow posterior (`vae_tf.model.flows`): the base draw is [eps1, z2] with eps1 ~
N(0, I) and z2 ~ q(z2|x), and

    z1 = mean1(x, z2) + exp(log_var1(x, z2) / 2) * eps1,   log |det| = sum(log_var1) / 2,

so the importance-weighted bound, the sampled KL and the reparameterised
gradients of every other posterior serve this one unchanged. x reaches q(z1|x, z2)
through the encoder's context head (a dense layer on its last hidden features).
The log-variances of both Gaussians are clipped to [-6, 2], the paper's hardtanh.
"""

import keras
import tensorflow as tf

from vae_tf.model import losses

LOG_VAR_RANGE = (-6.0, 2.0)


def _hidden(units, activation, name, dtype, use_bias=True):
    """A Dense layer of `units` outputs after `activation` (twice as wide before a glu)."""
    width = 2 * units if activation == "glu" else units
    return keras.layers.Dense(width, use_bias=use_bias, name=name, dtype=dtype)


class TwoLayerLatents(keras.layers.Layer):
    """q(z1 | x, z2) and p(z1 | z2), each a Gaussian of `z_dim` from hidden layers of `units`
    (a context of `units` features of x, from the encoder's context head).

    call(base [..., B, 2 Z], context [B, H]) -> (z [..., B, 2 Z], log_det [..., B]), where
    base = [eps1, z2]; leading axes (importance samples) broadcast against the context.
    """

    def __init__(self, z_dim: int, units: int, activation: str, **kwargs):
        super().__init__(**kwargs)
        self.z_dim = z_dim
        self.activation = keras.activations.get(activation)
        dtype = self.dtype_policy
        # q(z1 | x, z2): z2 -> hidden; [context, hidden] -> hidden; -> mean, log-variance.
        self.q_z2 = _hidden(units, activation, "q_z2", dtype)
        self.q_joint_context = _hidden(units, activation, "q_joint_context", dtype, use_bias=False)
        self.q_joint_z2 = _hidden(units, activation, "q_joint_z2", dtype)
        self.q_mean = keras.layers.Dense(z_dim, name="q_mean", dtype=dtype)
        self.q_log_var = keras.layers.Dense(z_dim, name="q_log_var", dtype=dtype)
        # p(z1 | z2): two hidden layers, then mean and log-variance.
        self.p_hidden = [_hidden(units, activation, "p_hidden_0", dtype),
                         _hidden(units, activation, "p_hidden_1", dtype)]
        self.p_mean = keras.layers.Dense(z_dim, name="p_mean", dtype=dtype)
        self.p_log_var = keras.layers.Dense(z_dim, name="p_log_var", dtype=dtype)
        # Every input width is known (the encoder's context is `units` wide), so the
        # weights are made here rather than at the first call.
        for layer, width in ((self.q_z2, z_dim), (self.q_joint_context, units),
                             (self.q_joint_z2, units), (self.q_mean, units),
                             (self.q_log_var, units), (self.p_hidden[0], z_dim),
                             (self.p_hidden[1], units), (self.p_mean, units),
                             (self.p_log_var, units)):
            layer.build((None, width))
        self.built = True

    def split(self, z):
        """(z1, z2) of z [..., 2 Z]."""
        return z[..., :self.z_dim], z[..., self.z_dim:]

    def base(self, z2_mean, z2_log_var):
        """The base Gaussian's (mean, log-variance) [B, 2 Z] from q(z2|x)'s: N(0, I) for eps1."""
        zeros = tf.zeros_like(z2_mean)
        return tf.concat([zeros, z2_mean], -1), tf.concat([zeros, z2_log_var], -1)

    def _log_var(self, head, hidden):
        return tf.clip_by_value(head(hidden), *LOG_VAR_RANGE)

    def posterior_moments(self, z2, context):
        """(mean, log-variance) of q(z1 | x, z2); z2 [..., B, Z], context [B, H]."""
        hidden = self.activation(self.q_z2(z2))
        hidden = self.activation(self.q_joint_z2(hidden) + self.q_joint_context(context))
        return self.q_mean(hidden), self._log_var(self.q_log_var, hidden)

    def prior_moments(self, z2):
        """(mean, log-variance) of p(z1 | z2)."""
        hidden = z2
        for layer in self.p_hidden:
            hidden = self.activation(layer(hidden))
        return self.p_mean(hidden), self._log_var(self.p_log_var, hidden)

    def call(self, base, context):
        epsilon, z2 = self.split(base)
        mean, log_var = self.posterior_moments(z2, context)
        z1 = mean + tf.exp(0.5 * log_var) * epsilon
        return tf.concat([z1, z2], -1), 0.5 * tf.reduce_sum(log_var, axis=-1)

    def log_prob_bottom(self, z):
        """log p(z1 | z2) of z = [z1, z2] [..., 2 Z] -> [...]."""
        z1, z2 = self.split(z)
        return losses.gaussian_log_density(z1, *self.prior_moments(z2))

    def sample_bottom(self, z2, seed):
        """[z1, z2] [N, 2 Z] with z1 ~ p(z1 | z2), repeatable for an int64 `seed`."""
        mean, log_var = self.prior_moments(z2)
        noise = tf.random.stateless_normal(tf.shape(mean), seed=tf.stack(
            [tf.cast(seed, tf.int64), tf.constant(3, tf.int64)]))
        return tf.concat([mean + tf.exp(0.5 * log_var) * noise, z2], -1)
