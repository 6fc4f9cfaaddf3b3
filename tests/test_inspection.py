"""The arrays behind the figures, computed from small models."""

import numpy as np
import pytest
import tensorflow as tf

from vae_tf.config import Config
from vae_tf.figures import inspection
from vae_tf.model import vae


def _model(z_dim=2, classifier_weight=0.0):
    config = Config(arch="mlp", z_dim=z_dim, encoder_layers=[16], decoder_layers=[16],
                    classifier_layers=[8], classifier_weight=classifier_weight).validate()
    return vae.build_vae(config, num_classes=10)


def _images(count, seed=0):
    return np.random.default_rng(seed).uniform(size=(count, 28, 28, 1)).astype(np.float32)


def test_one_per_class_picks_the_first_of_each_class():
    labels = np.array([3, 1, 3, 0, 2, 1, 4, 5, 6, 7, 8, 9])
    assert inspection.one_per_class(labels).tolist() == [3, 1, 4, 0, 6, 7, 8, 9, 10, 11]


@pytest.mark.parametrize("classifier_weight", [0.0, 1.0])
def test_reconstructions_decode_the_latent_mean(classifier_weight):
    model = _model(classifier_weight=classifier_weight)
    images = _images(4)
    first = inspection.reconstructions(model, images)
    assert first.shape == (4, 28, 28) and 0.0 <= first.min() and first.max() <= 1.0
    np.testing.assert_array_equal(first, inspection.reconstructions(model, images))


def test_encode_batches_agree_with_one_pass():
    model = _model(z_dim=3)
    images = _images(25)
    z_mean, z_log_var = inspection.encode(model, images, batch_size=7)
    whole_mean, whole_log_var = model.encoder(tf.constant(images))
    assert z_mean.shape == (25, 3)
    np.testing.assert_allclose(z_mean, whole_mean.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(z_log_var, whole_log_var.numpy(), rtol=1e-5, atol=1e-6)


def test_prior_samples_are_fixed_by_the_seed():
    model = _model()
    a = inspection.prior_samples(model, 6, seed=1)
    np.testing.assert_array_equal(a, inspection.prior_samples(model, 6, seed=1))
    assert not np.array_equal(a, inspection.prior_samples(model, 6, seed=2))


def test_conditional_row_shares_z_and_varies_the_class():
    model = _model(classifier_weight=1.0)
    row = inspection.conditional_row(model, seed=0)
    assert row.shape == (10, 28, 28)
    z = np.repeat(inspection.prior_z(1, 2, 0), 10, axis=0)
    expected = model.decode(tf.constant(z), tf.range(10)).numpy()[..., 0]
    np.testing.assert_allclose(row, expected, rtol=1e-6)
    assert not np.allclose(row[0], row[1])


def test_manifold_puts_increasing_z0_left_to_right_and_z1_bottom_to_top():
    model = _model()
    values = np.array([-1.0, 0.0, 2.0], np.float32)
    grid = inspection.manifold(model, values)
    assert grid.shape == (3, 3, 28, 28)
    top_right = model.decode(tf.constant([[2.0, 2.0]])).numpy()[0, ..., 0]
    bottom_left = model.decode(tf.constant([[-1.0, -1.0]])).numpy()[0, ..., 0]
    np.testing.assert_allclose(grid[0, 2], top_right, rtol=1e-6)
    np.testing.assert_allclose(grid[2, 0], bottom_left, rtol=1e-6)


def test_manifold_needs_two_latent_dimensions():
    with pytest.raises(ValueError, match="z_dim=2, this model has z_dim=3"):
        inspection.manifold(_model(z_dim=3), np.zeros(4))


def test_traversal_sweeps_one_dimension_per_row():
    model = _model(z_dim=3)
    base = np.array([0.1, 0.2, 0.3], np.float32)
    values = np.array([-1.0, 1.0], np.float32)
    grid = inspection.traversal(model, base, values)
    assert grid.shape == (3, 2, 28, 28)
    expected = model.decode(tf.constant([[0.1, 1.0, 0.3]])).numpy()[0, ..., 0]
    np.testing.assert_allclose(grid[1, 1], expected, rtol=1e-6)


def test_interpolation_starts_and_ends_at_the_two_latent_means():
    model = _model(z_dim=2)
    images = _images(2, seed=3)
    line = inspection.interpolation(model, images[0], images[1], steps=5)
    assert line.shape == (5, 28, 28)
    np.testing.assert_allclose(line[0], inspection.reconstructions(model, images[:1])[0],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(line[-1], inspection.reconstructions(model, images[1:])[0],
                               rtol=1e-5, atol=1e-6)
