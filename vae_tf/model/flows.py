"""Inverse autoregressive flow: a richer q(z|x) on top of the encoder's Gaussian.

With `--flow_steps=T`, z is not the Gaussian draw z_0 ~ N(z_mean, exp(z_log_var))
itself but T invertible steps of it (Kingma et al., 2016, "Improved Variational
Inference with Inverse Autoregressive Flow", arXiv:1606.04934, their eq. 11-14):

    [m_t, s_t] = MADE_t(z_{t-1}, h)        (output i sees only z_{t-1, <i}, and h)
    sigma_t = sigmoid(s_t)
    z_t = sigma_t * z_{t-1} + (1 - sigma_t) * m_t

where h is a context vector that the encoder computes from the image. Each
step's Jacobian is triangular with diagonal sigma_t, so

    log q(z_T|x) = log N(z_0; z_mean, exp(z_log_var)) - sum_t sum_i log sigma_t,i

and the model keeps one stochastic layer and the N(0, I) prior. The ordering of
the latent dimensions is reversed between steps, so that every dimension is
conditioned on every other one after two steps. The masks follow MADE (Germain
et al., 2015, arXiv:1502.03509).
"""

import keras
import numpy as np
import tensorflow as tf

# Initial bias of s, so that sigma starts near sigmoid(2) = 0.88 and each step near
# the identity (Kingma et al., 2016, section 4: "a forget-gate bias of 1 or 2").
SCALE_BIAS = 2.0


def made_masks(z_dim: int, units: int) -> tuple:
    """(input -> hidden [Z, U], hidden -> output [U, Z]) masks of one MADE.

    Input dimension i (degree i + 1) feeds hidden unit k of degree d_k in
    1..Z-1 when d_k >= i + 1; hidden unit k feeds output i when i + 1 > d_k. So
    output i depends on inputs 0..i-1 only, and output 0 on none of them.
    """
    input_degrees = np.arange(1, z_dim + 1)
    hidden_degrees = 1 + np.arange(units) % max(z_dim - 1, 1)
    to_hidden = hidden_degrees[np.newaxis, :] >= input_degrees[:, np.newaxis]
    to_output = input_degrees[np.newaxis, :] > hidden_degrees[:, np.newaxis]
    return to_hidden.astype(np.float32), to_output.astype(np.float32)


class MaskedDense(keras.layers.Layer):
    """A Dense layer whose kernel is multiplied by a fixed 0/1 mask [inputs, units]."""

    def __init__(self, mask: np.ndarray, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.mask = np.asarray(mask, np.float32)
        self.kernel = self.add_weight(shape=self.mask.shape, initializer=kernel_initializer,
                                      name="kernel")
        self.bias = self.add_weight(shape=(self.mask.shape[1],), initializer=bias_initializer,
                                    name="bias")

    def call(self, inputs):
        return tf.matmul(inputs, self.kernel * self.mask) + self.bias


class IAFStep(keras.layers.Layer):
    """One step: (z [..., B, Z], h [B, H]) -> (z', log_det [..., B]).

    Two masked layers with ELU between them, the context h added to the hidden
    units and (unmasked) to the outputs, so that every dimension, the first
    included, sees the image.
    """

    def __init__(self, z_dim: int, units: int, **kwargs):
        super().__init__(**kwargs)
        to_hidden, to_output = made_masks(z_dim, units)
        dtype = self.dtype_policy  # the step's own (float32 in a VAE), not the global policy
        self.hidden = MaskedDense(to_hidden, name="hidden", dtype=dtype)
        self.context_hidden = keras.layers.Dense(units, use_bias=False, name="context_hidden",
                                                 dtype=dtype)
        # Zero output weights: the step starts as z' = sigmoid(2) * z, shift 0.
        self.shift = MaskedDense(to_output, kernel_initializer="zeros", name="shift", dtype=dtype)
        self.scale = MaskedDense(to_output, kernel_initializer="zeros",
                                 bias_initializer=keras.initializers.Constant(SCALE_BIAS),
                                 name="scale", dtype=dtype)
        zeros = dict(use_bias=False, kernel_initializer="zeros", dtype=dtype)
        self.context_shift = keras.layers.Dense(z_dim, name="context_shift", **zeros)
        self.context_scale = keras.layers.Dense(z_dim, name="context_scale", **zeros)

    def call(self, z, context):
        hidden = tf.nn.elu(self.hidden(z) + self.context_hidden(context))
        shift = self.shift(hidden) + self.context_shift(context)
        raw_scale = self.scale(hidden) + self.context_scale(context)
        sigma = tf.sigmoid(raw_scale)
        z = sigma * z + (1.0 - sigma) * shift
        return z, tf.reduce_sum(tf.math.log_sigmoid(raw_scale), axis=-1)


class InverseAutoregressiveFlow(keras.layers.Layer):
    """`steps` IAF steps with the latent order reversed between them.

    call(z_0 [..., B, Z], context [B, H]) -> (z_T [..., B, Z], log_det [..., B]),
    log_det = log |det dz_T/dz_0|, to be subtracted from log q(z_0|x). Leading
    axes of z_0 (the importance samples of `vae_tf.evaluation.elbo_iwae`) broadcast
    against the context's batch axis.
    """

    def __init__(self, z_dim: int, steps: int, units: int, **kwargs):
        super().__init__(**kwargs)
        if steps < 1:
            raise ValueError(f"an inverse autoregressive flow needs at least one step, got {steps}")
        self.flow_steps = [IAFStep(z_dim, units, name=f"step_{index}", dtype=self.dtype_policy)
                           for index in range(steps)]

    def call(self, z, context):
        log_det = tf.zeros(tf.shape(z)[:-1], z.dtype)
        for index, step in enumerate(self.flow_steps):
            if index:
                z = tf.reverse(z, axis=[-1])  # a permutation: |det| = 1
            z, step_log_det = step(z, context)
            log_det += step_log_det
        if len(self.flow_steps) % 2 == 0:
            z = tf.reverse(z, axis=[-1])  # back to the encoder's order
        return z, log_det
