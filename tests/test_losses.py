"""Closed-form and NumPy-reference checks of every term of the objective."""

import math

import numpy as np
import pytest
import tensorflow as tf

from vae_tf.model import losses


def test_kl_of_unit_shifted_gaussian_over_ten_dimensions_is_five():
    z_mean = tf.ones((1, 10))
    z_log_var = tf.zeros((1, 10))
    np.testing.assert_allclose(losses.kl_divergence(z_mean, z_log_var).numpy(), [5.0],
                               rtol=1e-6)


def test_kl_is_zero_for_the_prior_itself():
    np.testing.assert_allclose(
        losses.kl_divergence(tf.zeros((3, 4)), tf.zeros((3, 4))).numpy(), np.zeros(3), atol=1e-7)


def test_kl_matches_numpy_reference_per_example():
    rng = np.random.default_rng(0)
    mean = rng.normal(size=(5, 7)).astype(np.float32)
    log_var = rng.normal(size=(5, 7)).astype(np.float32)
    # KL(N(m, s^2) || N(0, 1)) = log(1/s) + (s^2 + m^2) / 2 - 1/2, per dimension.
    std = np.exp(0.5 * log_var)
    expected = np.sum(-np.log(std) + (std ** 2 + mean ** 2) / 2 - 0.5, axis=1)
    np.testing.assert_allclose(losses.kl_divergence(mean, log_var).numpy(), expected, rtol=1e-5)


@pytest.mark.parametrize("scale", [1.0, 0.6])  # the identity, and a contraction
def test_the_sampled_kl_of_a_flow_is_the_closed_form_kl_of_where_it_sends_the_gaussian(scale):
    # z = scale * z_0 + shift, with z_0 ~ N(mean, exp(log_var)): q(z|x) is the Gaussian
    # N(scale * mean + shift, scale^2 exp(log_var)), whose KL has a closed form.
    rng = np.random.default_rng(1)
    mean, log_var = rng.normal(size=(1, 3)), rng.normal(size=(1, 3))
    shift = rng.normal(size=3)
    draws = 200_000
    z0 = mean + np.exp(0.5 * log_var) * rng.normal(size=(draws, 3))
    z = scale * z0 + shift
    log_det = np.full(draws, 3 * math.log(scale))
    sampled = losses.flow_kl_divergence(tf.constant(z), tf.constant(np.repeat(log_var, draws, 0)),
                                        tf.constant(log_det)).numpy()
    exact = losses.kl_divergence(scale * mean + shift, log_var + 2 * math.log(scale)).numpy()[0]
    assert abs(sampled.mean() - exact) < 4 * sampled.std() / math.sqrt(draws)
    assert abs(sampled.mean() - exact) < 0.02


def test_gaussian_nll_includes_the_normalising_constant():
    images = tf.zeros((2, 28, 28, 1))
    means = tf.fill((2, 28, 28, 1), 0.5)
    per_pixel = 0.25 / (2 * 0.25) + math.log(0.5 * math.sqrt(2 * math.pi))
    np.testing.assert_allclose(losses.gaussian_nll(images, means, 0.5).numpy(),
                               [784 * per_pixel] * 2, rtol=1e-5)


def test_gaussian_nll_matches_log_density():
    rng = np.random.default_rng(1)
    images = rng.uniform(size=(3, 28, 28, 1)).astype(np.float32)
    means = rng.uniform(size=(3, 28, 28, 1)).astype(np.float32)
    std = 0.3
    log_density = (-0.5 * ((images - means) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi))
    np.testing.assert_allclose(losses.gaussian_nll(images, means, std).numpy(),
                               -log_density.sum(axis=(1, 2, 3)), rtol=1e-5)


def test_squared_error_is_the_plain_sum():
    images = tf.ones((2, 28, 28, 1))
    means = tf.zeros((2, 28, 28, 1))
    np.testing.assert_allclose(losses.squared_error(images, means).numpy(), [784.0, 784.0])


def test_bernoulli_nll_matches_binary_cross_entropy_on_grey_pixels():
    rng = np.random.default_rng(2)
    images = rng.uniform(size=(4, 28, 28, 1)).astype(np.float32)
    logits = rng.normal(size=(4, 28, 28, 1)).astype(np.float32)
    probs = 1 / (1 + np.exp(-logits))
    expected = -(images * np.log(probs) + (1 - images) * np.log(1 - probs)).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(losses.bernoulli_nll(images, logits).numpy(), expected, rtol=1e-5)


def test_bernoulli_nll_is_finite_for_extreme_logits():
    images = tf.constant(np.tile([0.0, 1.0], 392).reshape(1, 28, 28, 1), tf.float32)
    logits = tf.constant(np.tile([200.0, -200.0], 392).reshape(1, 28, 28, 1), tf.float32)
    value = losses.bernoulli_nll(images, logits).numpy()
    assert np.isfinite(value).all() and value[0] == pytest.approx(784 * 200.0, rel=1e-5)


@pytest.mark.parametrize("likelihood", ["gaussian", "squared_error", "bernoulli"])
def test_reconstruction_loss_dispatches_on_the_decoder_mean(likelihood):
    rng = np.random.default_rng(3)
    images = rng.uniform(size=(2, 28, 28, 1)).astype(np.float32)
    logits = rng.normal(size=(2, 28, 28, 1)).astype(np.float32)
    means = tf.sigmoid(logits)
    expected = {"gaussian": losses.gaussian_nll(images, means, 0.5),
                "squared_error": losses.squared_error(images, means),
                "bernoulli": losses.bernoulli_nll(images, logits)}[likelihood]
    np.testing.assert_allclose(
        losses.reconstruction_loss(likelihood, images, logits, 0.5).numpy(), expected.numpy(),
        rtol=1e-6)


def test_reconstruction_loss_rejects_unknown_likelihood():
    with pytest.raises(ValueError, match="poisson"):
        losses.reconstruction_loss("poisson", tf.zeros((1, 28, 28, 1)), tf.zeros((1, 28, 28, 1)))


def test_classifier_cross_entropy_matches_numpy():
    logits = np.array([[2.0, 0.5, -1.0], [0.0, 0.0, 0.0]], np.float32)
    labels = np.array([0, 2], np.int32)
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(losses.classifier_cross_entropy(labels, logits).numpy(),
                               -log_softmax[[0, 1], labels], rtol=1e-6)


def test_kl_weight_ramps_linearly_then_holds():
    assert [losses.kl_weight(epoch, 2.0, 4) for epoch in range(6)] == [0.5, 1.0, 1.5, 2.0, 2.0, 2.0]
    assert losses.kl_weight(0, 0.7, 0) == 0.7


def test_gaussian_log_density_matches_numpy():
    rng = np.random.default_rng(4)
    z, mean, log_var = (rng.normal(size=(3, 4)).astype(np.float32) for _ in range(3))
    expected = (-0.5 * (np.log(2 * np.pi) + log_var + (z - mean) ** 2 / np.exp(log_var))).sum(-1)
    np.testing.assert_allclose(losses.gaussian_log_density(z, mean, log_var).numpy(), expected,
                               rtol=1e-5)


def test_squared_error_log_likelihood_is_a_gaussian_with_std_one_over_root_two():
    rng = np.random.default_rng(5)
    images = rng.uniform(size=(2, 28, 28, 1)).astype(np.float32)
    logits = rng.normal(size=(2, 28, 28, 1)).astype(np.float32)
    as_gaussian = losses.log_likelihood("gaussian", images, logits, 1 / math.sqrt(2))
    np.testing.assert_allclose(losses.log_likelihood("squared_error", images, logits).numpy(),
                               as_gaussian.numpy(), rtol=1e-5)
    np.testing.assert_allclose(losses.log_likelihood("bernoulli", images, logits).numpy(),
                               -losses.bernoulli_nll(images, logits).numpy(), rtol=1e-6)
