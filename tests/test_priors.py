"""The priors: the VampPrior's density against NumPy, its samples against its moments."""

import math

import numpy as np
import pytest
import tensorflow as tf
from test_elbo_iwae import _numpy_mixture_log_prob

from vae_tf.errors import ConfigError
from vae_tf.model import priors
from vae_tf.model.vae import build_vae

from conftest import parse_config


def _components(count=5, z_dim=3, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(count, z_dim)) * 2.0, rng.normal(size=(count, z_dim)) * 0.5)


def test_mixture_log_prob_is_the_log_mean_of_every_components_density():
    means, log_vars = _components()
    z = np.random.default_rng(1).normal(size=(4, 6, 3)) * 2.0
    ours = priors.mixture_log_prob(tf.constant(z, tf.float32), tf.constant(means, tf.float32),
                                   tf.constant(log_vars, tf.float32)).numpy()
    expected = _numpy_mixture_log_prob(z, means, log_vars)
    np.testing.assert_allclose(ours, expected, atol=1e-4)
    # Forgetting the 1/K, or a component, is off by far more than the tolerance.
    assert np.abs(expected + math.log(5) - ours).min() > 1.0
    assert np.abs(_numpy_mixture_log_prob(z, means[1:], log_vars[1:]) - ours).max() > 0.01


def _vamp_model(components=4, z_dim=3):
    config = parse_config("--arch=mlp", "--encoder_layers=16", "--decoder_layers=16",
                          f"--z_dim={z_dim}", "--prior=vamp",
                          f"--prior_components={components}")
    return build_vae(config, 10, (28, 28, 1))


def test_the_vamp_prior_of_a_model_mixes_the_encoders_posteriors_of_its_pseudo_inputs():
    model = _vamp_model()
    pseudo = np.clip(model.prior.pixels.numpy(), 0, 1)
    assert pseudo.shape == (4, 28, 28, 1)
    # Initialised as the paper's code does: N(0.05, 0.01), within [0, 1].
    assert abs(pseudo.mean() - 0.05) < 0.002 and abs(pseudo.std() - 0.01) < 0.002
    means, log_vars = (v.numpy() for v in model.encoder(tf.constant(pseudo), training=False))
    z = np.random.default_rng(2).normal(size=(10, 3)).astype(np.float32)
    np.testing.assert_allclose(model.log_prior(tf.constant(z)).numpy(),
                               _numpy_mixture_log_prob(z.astype(np.float64), means, log_vars),
                               atol=1e-4)


def test_samples_of_the_vamp_prior_have_the_mixtures_mean_and_covariance():
    means, log_vars = _components(count=3, z_dim=2)
    samples = priors.mixture_sample(tf.constant(means, tf.float32),
                                    tf.constant(log_vars, tf.float32), 200_000, 7).numpy()
    variances = np.exp(log_vars)
    mean = means.mean(0)
    # The covariance of an equal mixture: the mean of (Sigma_k + m_k m_k^T), less m m^T.
    covariance = np.mean([np.diag(v) + np.outer(m, m) for m, v in zip(means, variances)],
                         axis=0) - np.outer(mean, mean)
    np.testing.assert_allclose(samples.mean(0), mean, atol=0.03)
    np.testing.assert_allclose(np.cov(samples.T), covariance, atol=0.06)
    # Not N(0, I), which these components are far from.
    assert np.abs(np.cov(samples.T) - np.eye(2)).max() > 0.5
    draw = [priors.mixture_sample(tf.constant(means, tf.float32),
                                  tf.constant(log_vars, tf.float32), 10, 7).numpy()
            for _ in range(2)]
    np.testing.assert_array_equal(*draw)  # the same seed, the same draws


def test_a_vamp_model_samples_its_own_prior_and_its_export_generates_from_it(tmp_path):
    from vae_tf.run import exporting

    model = _vamp_model(components=3, z_dim=2)
    z = model.sample_prior(5, 11)
    assert z.shape == (5, 2)
    functions = exporting.ServingFunctions(model)
    generated = functions.generate(tf.constant(5), tf.constant(11, tf.int64))["images"]
    np.testing.assert_allclose(generated, model.decode(z), atol=1e-6)
    sampled = functions.sample_prior(tf.constant(5), tf.constant(11, tf.int64))["z"]
    np.testing.assert_array_equal(sampled, z)  # what the explorer's prior button shows
    standard = tf.random.stateless_normal([5, 2], seed=[11, 0])
    assert not np.allclose(z, standard)


def test_the_vamp_model_trains_its_pseudo_inputs(tiny_data_dir, tmp_path):
    from vae_tf.run import training

    result = training.train_and_evaluate(parse_config(
        "--arch=mlp", "--encoder_layers=16", "--decoder_layers=16", "--z_dim=2",
        "--prior=vamp", "--prior_components=5", "--batch_size=32", "--epochs=1",
        "--steps_per_epoch=5", "--figures_every=1", "--noprogress_bar", "--nojit_compile",
        "--steps_per_execution=1", f"--data_dir={tiny_data_dir}",
        f"--model_dir={tmp_path / 'run'}"))
    pseudo = result.model.prior.pixels.numpy()
    assert np.isfinite(result.metrics[-1]["loss"]) and np.isfinite(result.metrics[-1]["val_loss"])
    fresh = _vamp_model(components=5, z_dim=2).prior.pixels.numpy()
    assert not np.allclose(pseudo, fresh)  # the pseudo-inputs were trained


@pytest.mark.parametrize("extra", [["--flow_steps=2"], ["--classifier_weight=1"]])
def test_the_vamp_prior_is_refused_with_a_flow_or_a_classifier(extra):
    with pytest.raises(ConfigError, match="--prior=vamp mixes the Gaussian posteriors"):
        parse_config("--prior=vamp", *extra)
