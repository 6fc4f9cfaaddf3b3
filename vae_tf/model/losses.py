"""The terms of the VAE objective, as pure functions with one value per example.

A VAE maximises the evidence lower bound (Kingma and Welling, 2014, "Auto-Encoding
Variational Bayes", arXiv:1312.6114; Rezende et al., 2014, arXiv:1401.4082):

    ELBO(x) = E_q(z|x)[log p(x|z)] - KL(q(z|x) || N(0, I))

vae_tf minimises  reconstruction + beta * KL (+ classifier_weight * cross-entropy for
conditional models; beta from Higgins et al., 2017). Convention for every function
here: sum over pixels and latent dimensions, one value per example, in nats. The
caller takes the mean over the batch.
"""

import math
from typing import Callable, NamedTuple

import tensorflow as tf

PIXEL_AXES = (1, 2, 3)  # images are [B, 28, 28, 1]


def kl_divergence(z_mean, z_log_var):
    """KL(N(z_mean, exp(z_log_var)) || N(0, I)) in closed form. [B, Z] -> [B]."""
    # Per dimension: 0.5 * (mu^2 + sigma^2 - 1 - log sigma^2).
    return 0.5 * tf.reduce_sum(
        tf.square(z_mean) + tf.exp(z_log_var) - 1.0 - z_log_var, axis=-1)


def sampled_kl_divergence(z_log_var, log_prior):
    """KL(q(z|x) || p(z)) of a diagonal Gaussian posterior and any prior, from one draw.

    log_prior = log p(z) [B] at a draw z of q(z|x); E[log q(z|x)] = -0.5 * sum(log 2 pi
    + z_log_var + 1) exactly, so only the prior's term is sampled. [B, Z], [B] -> [B].
    """
    neg_entropy = -0.5 * tf.reduce_sum(math.log(2.0 * math.pi) + z_log_var + 1.0, axis=-1)
    return neg_entropy - log_prior


def flow_kl_divergence(z, z_log_var, log_det):
    """KL(q(z|x) || N(0, I)) of a flow posterior, from one draw z [B, Z] -> [B].

    z = f(z_0) with z_0 = z_mean + exp(z_log_var / 2) * eps and log_det =
    log |det df/dz_0| [B] (`vae_tf.model.flows`). log q(z|x) = log N(z_0; ...) - log_det,
    and E[log N(z_0; z_mean, exp(z_log_var))] = -0.5 * sum(log 2 pi + z_log_var + 1)
    exactly (its eps^2 term carries no parameter), so only the flow is sampled:

        KL ~= 0.5 * sum(z^2 - z_log_var - 1) - log_det

    whose expectation is the KL; with the identity for f it is the closed form's.
    """
    return 0.5 * tf.reduce_sum(tf.square(z) - z_log_var - 1.0, axis=-1) - log_det


def gaussian_nll(images, means, std):
    """-log N(images; means, std^2 I), normalising constant included. -> [B]."""
    # Per pixel: (x - mu)^2 / (2 sigma^2) + log(sigma * sqrt(2 pi)).
    squared = tf.reduce_sum(tf.square(images - means), axis=PIXEL_AXES)
    num_pixels = tf.cast(tf.reduce_prod(tf.shape(images)[1:]), images.dtype)
    return squared / (2.0 * std ** 2) + num_pixels * math.log(std * math.sqrt(2.0 * math.pi))


def squared_error(images, means):
    """Summed squared error, the conv tutorial's reconstruction loss. -> [B]."""
    return tf.reduce_sum(tf.square(images - means), axis=PIXEL_AXES)


def bernoulli_nll(images, logits):
    """-log Bernoulli(images; sigmoid(logits)), the binary cross-entropy. -> [B].

    Works on logits for numerical stability and accepts grey values in [0, 1].
    """
    return tf.reduce_sum(
        tf.nn.sigmoid_cross_entropy_with_logits(labels=images, logits=logits), axis=PIXEL_AXES)


class Likelihood(NamedTuple):
    """A decoder likelihood p(x|z) computed from the decoder's output (its `logits`)."""

    negative_log: Callable  # (images, logits, decoder_std) -> [B], the training loss
    # Added per pixel to -negative_log to make it a normalised log-density (0 if it is one).
    log_normaliser_per_pixel: float
    # logits -> the mean image of p(x|z), in [0, 1]: what `decode` and the figures show.
    mean: Callable = tf.sigmoid


# --likelihood: each decoder likelihood by name.
LIKELIHOODS = {
    "gaussian": Likelihood(lambda images, logits, std: gaussian_nll(
        images, tf.sigmoid(logits), std), 0.0),
    # The summed squared error is the negative log-density of a Gaussian with standard
    # deviation 1/sqrt(2) up to 0.5 * log(pi) per pixel.
    "squared_error": Likelihood(lambda images, logits, std: squared_error(
        images, tf.sigmoid(logits)), -0.5 * math.log(math.pi)),
    "bernoulli": Likelihood(lambda images, logits, std: bernoulli_nll(images, logits), 0.0),
}


def likelihood_named(name: str) -> Likelihood:
    """The entry of LIKELIHOODS called `name`; ValueError naming the choices otherwise."""
    if name not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {name!r}; one of {', '.join(LIKELIHOODS)}")
    return LIKELIHOODS[name]


def reconstruction_loss(likelihood, images, logits, decoder_std=1.0):
    """-log p(images | z) for a decoder that outputs `logits` ([B, 28, 28, 1])."""
    return likelihood_named(likelihood).negative_log(images, logits, decoder_std)


def classifier_cross_entropy(labels, class_logits):
    """Cross-entropy of the auxiliary classifier. [B], [B, C] -> [B]."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=class_logits)


def kl_weight(epoch, beta, warmup_epochs):
    """The KL weight for 0-based `epoch`: ramps linearly to beta over warmup_epochs."""
    if warmup_epochs <= 0:
        return float(beta)
    return float(beta) * min(1.0, (epoch + 1) / warmup_epochs)


def gaussian_log_density(z, mean, log_var):
    """log N(z; mean, exp(log_var)) summed over the last axis. [..., Z] -> [...]."""
    return -0.5 * tf.reduce_sum(
        math.log(2.0 * math.pi) + log_var + tf.square(z - mean) / tf.exp(log_var), axis=-1)


def log_likelihood(likelihood, images, logits, decoder_std=1.0):
    """log p(images | z), a normalised density for every likelihood. -> [B].

    The summed squared error is a Gaussian's negative log-density only up to a
    constant; that constant is added here so that squared-error models get
    comparable likelihoods too.
    """
    value = -reconstruction_loss(likelihood, images, logits, decoder_std)
    per_pixel = likelihood_named(likelihood).log_normaliser_per_pixel
    if per_pixel:
        value += per_pixel * tf.cast(tf.reduce_prod(tf.shape(images)[1:]), value.dtype)
    return value
