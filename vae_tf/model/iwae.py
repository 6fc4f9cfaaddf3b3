"""The importance-weighted estimate of log p(x) (Burda et al., 2016, arXiv:1509.00519).

For each input x, with z_k ~ q(z|x) for k = 1..K,

    log p(x) >= log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x)

which tightens to log p(x) as K grows; K = 1 is the ELBO in expectation. It works
for any encoder and decoder log-likelihood given as functions, which is how it is
tested against linear-Gaussian models whose marginal likelihood is known exactly.
The K samples are drawn in chunks and folded with a running log-sum-exp, so memory
stays bounded for K = 5000. `training_terms` is the same bound as a training
objective (`--train_iw_samples`), with gradients through every draw.
"""

import math

import numpy as np
import tensorflow as tf

from vae_tf.model import losses
from vae_tf.model.networks import reparameterize


def importance_weighted_log_likelihood(encode_fn, log_likelihood_fn, inputs, num_samples: int,
                                       chunk_size: int, seed: int, transform_fn=None,
                                       log_prior_fn=None):
    """Estimates log p(x) for a batch `inputs` [B, ...] with `num_samples` samples.

    encode_fn(inputs) -> (z_mean, z_log_var), each [B, Z], or (z_mean,
    z_log_var, context) with a `transform_fn`;
    transform_fn(z_0 [C, B, Z], context) -> (z [C, B, Z], log |det dz/dz_0| [C, B]),
    an invertible map of the Gaussian draws (a flow posterior; none: identity);
    log_likelihood_fn(inputs [B, ...], z [C, B, Z]) -> log p(x|z) [C, B], for a
    chunk of C samples per input (so that work that depends only on x, such as
    a classifier, is done once per chunk rather than once per sample);
    log_prior_fn(z [C, B, Z]) -> log p(z) [C, B] (none: N(0, I)).
    Returns log p(x) estimates [B] as float64.
    """
    z_mean, z_log_var, *context = encode_fn(inputs)
    batch = tf.shape(z_mean)[0]
    z_dim = z_mean.shape[-1]

    def chunk_total(start, count):
        epsilon = tf.random.stateless_normal([count, batch, z_dim], seed=tf.stack([seed, start]))
        log_likelihood, log_ratio = log_weight_terms(
            log_likelihood_fn, inputs, z_mean, z_log_var, context, epsilon, transform_fn,
            log_prior_fn)
        return tf.reduce_logsumexp(tf.cast(log_ratio + log_likelihood, tf.float64), axis=0)

    def fold(running, total):
        return tf.reduce_logsumexp(tf.stack([running, total]), axis=0)

    # The full chunks in a loop (one chunk's ops in the graph, whatever K is), then the
    # remainder; chunk i draws with seed (seed, i * chunk_size) either way.
    full, rest = divmod(num_samples, chunk_size)
    seed = tf.cast(seed, tf.int64)
    running = tf.fill([batch], tf.constant(-np.inf, tf.float64))
    _, running = tf.while_loop(
        lambda i, _: i < full,
        lambda i, running: (i + 1, fold(running, chunk_total(i * chunk_size, chunk_size))),
        (tf.constant(0, tf.int64), running))
    if rest:
        running = fold(running, chunk_total(tf.constant(full * chunk_size, tf.int64), rest))
    return running - math.log(num_samples)


def log_weight_terms(log_likelihood_fn, inputs, z_mean, z_log_var, context, epsilon,
                     transform_fn=None, log_prior_fn=None):
    """(log p(x|z_k), log p(z_k) - log q(z_k|x)), each [C, B], of the draws z_k that the
    base noise `epsilon` [C, B, Z] gives; their sum is the log importance weight.

    `context` is the list of what encode_fn returned after (z_mean, z_log_var), and
    the functions are those of `importance_weighted_log_likelihood`.
    """
    z = reparameterize(z_mean, z_log_var, epsilon)  # [C, B, Z]
    log_q = losses.gaussian_log_density(z, z_mean, z_log_var)
    if transform_fn is not None:
        z, log_det = transform_fn(z, *context)
        log_q -= log_det
    log_prior = (log_prior_fn(z) if log_prior_fn is not None
                 else losses.gaussian_log_density(z, 0.0, tf.zeros_like(z)))
    return log_likelihood_fn(inputs, z), log_prior - log_q


def training_terms(model, images, num_samples: int, training: bool = True) -> dict:
    """The importance-weighted objective of `model` (a `VAE` without a classifier) on
    `images` [B, ...] with K = `num_samples` draws each, as terms [B] for `train_step`
    (and, with `training` False, for `test_step`, so that the two losses compare).

    `loss` is -log (1/K) sum_k w_k, with log w_k = log p(x|z_k) + kl_weight (log p(z_k)
    - log q(z_k|x)): at kl_weight 1 (after any warm-up) the negative bound that
    `vae_tf.evaluate` estimates with K = 5000, and at K = 1 the negative ELBO with a
    sampled KL. Its gradients weigh each draw by its normalised weight (Burda et al.,
    2016). `reconstruction_loss` and `kl_loss` are the first draw's, the ELBO's
    sampled terms, for the training metrics. The draws come from the model's sampling
    layer, whose state the checkpoints keep, so a resumed run draws what it would have.
    """
    z_mean, z_log_var, context = model.posterior(images, training=training)
    epsilon = model.sampling.noise(tf.stack([num_samples, tf.shape(z_mean)[0],
                                             z_mean.shape[-1]]))  # [K, B, Z]
    log_likelihood, log_ratio = log_weight_terms(
        lambda x, z: model.decoder_log_likelihood(x, z, training=training), images,
        z_mean, z_log_var, [context] if model.transforms else [], epsilon,
        model.transform if model.transforms else None,
        None if model.standard_normal_prior else model.log_prior)  # [K, B] each
    log_weights = tf.cast(log_likelihood, tf.float32) + tf.cast(
        model.kl_weight, tf.float32) * tf.cast(log_ratio, tf.float32)
    return {"loss": math.log(num_samples) - tf.reduce_logsumexp(log_weights, axis=0),
            "reconstruction_loss": -log_likelihood[0], "kl_loss": -log_ratio[0]}
