"""The independent judge: its Fréchet distance, its accuracy, and that it catches a bad model."""

import numpy as np
import pytest
import tensorflow as tf

from vae_tf.data import sources
from vae_tf.evaluation import judge

from conftest import real_data_dir


def test_frechet_distance_of_gaussians_matches_the_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 1.0, size=(200000, 3))
    b = rng.normal([1.0, 0.0, 2.0], [1.0, 2.0, 3.0], size=(200000, 3))
    # Diagonal covariances: ||mu_a - mu_b||^2 + sum (sigma_a - sigma_b)^2 = 5 + 0 + 1 + 4.
    assert judge.frechet_distance(a, b) == pytest.approx(10.0, rel=0.02)
    assert judge.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # Correlated features: the matrix square root, not a diagonal shortcut.
    mixing = np.array([[1.0, 0.8, 0.0], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    c = a @ mixing
    expected = np.trace(np.eye(3) + mixing.T @ mixing) - 2 * np.sum(
        np.sqrt(np.linalg.eigvalsh(mixing.T @ mixing)))
    assert judge.frechet_distance(a, c) == pytest.approx(expected, rel=0.03)


class _OneClassModel:
    """A conditional "VAE" that draws the same test image whatever class is asked."""

    conditional = True
    standard_normal_prior = True
    num_classes = 10
    z_dim = 2

    def __init__(self, image):
        self.image = tf.constant(image[np.newaxis], tf.float32)

    def decode(self, z, labels=None):
        return tf.repeat(self.image, tf.shape(z)[0], axis=0)


@pytest.mark.realdata
def test_the_judge_scores_test_images_as_their_class_and_a_one_class_model_near_chance(
        judge_cache):
    dataset = sources.load_dataset("mnist", real_data_dir("mnist"))
    grader = judge.load_or_train(dataset.train, dataset.test, "mnist", 10)
    assert grader.test_accuracy >= 0.95  # 5,000 training digits are enough for this net
    test_images = dataset.test.float_images()
    predictions = grader.predict(test_images)
    assert np.mean(predictions == dataset.test.labels) == pytest.approx(grader.test_accuracy)
    for k in range(10):  # class by class, not only on average
        assert np.mean(predictions[dataset.test.labels == k] == k) >= 0.85
    # Cached: a second call loads the same judge instead of training another.
    again = judge.load_or_train(dataset.train, dataset.test, "mnist", 10)
    assert again.test_accuracy == grader.test_accuracy
    np.testing.assert_array_equal(again.predict(test_images[:500]), predictions[:500])

    three = test_images[np.flatnonzero(dataset.test.labels == 3)[0]]  # [28, 28, 1]
    grades = judge.grade(_OneClassModel(three), grader, test_images,
                         judge.floor_images(dataset.train, num_samples=2000), num_samples=2000)
    assert grades["judged_class_agreement"] == pytest.approx(0.1, abs=0.02)
    assert grades["frechet_distance"] > 20 * grades["frechet_distance_train_floor"]
