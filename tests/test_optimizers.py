"""FusedAdam against Keras' Adam: the same updates, and checkpoints that interchange."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from vae_tf.run.optimizers import FusedAdam, KerasAdam, load_average


def _train(optimizer, steps, seed=0):
    rng = np.random.default_rng(seed)
    weights = [keras.Variable(rng.normal(size=shape).astype(np.float32))
               for shape in [(7, 5), (5,)]]
    optimizer.build(weights)
    for _ in range(steps):
        gradients = [tf.constant(rng.normal(size=w.shape).astype(np.float32)) for w in weights]
        optimizer.apply_gradients(zip(gradients, weights))
    return weights


def test_fused_adam_matches_keras_adam_over_many_steps():
    ours = _train(FusedAdam(0.01), 50)
    theirs = _train(keras.optimizers.Adam(0.01), 50)
    moved = _train(keras.optimizers.Adam(0.01), 0)
    for a, b, start in zip(ours, theirs, moved):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
        assert np.abs(a.numpy() - start.numpy()).max() > 0.1  # the steps did move them


def test_fused_adam_resumes_from_a_keras_adam_checkpoint(tmp_path):
    rng = np.random.default_rng(1)
    weights = [keras.Variable(np.ones((3, 2), np.float32))]
    keras_adam = keras.optimizers.Adam(0.1)
    keras_adam.build(weights)
    gradient = tf.constant(rng.normal(size=(3, 2)).astype(np.float32))
    for _ in range(3):
        keras_adam.apply_gradients([(gradient, weights[0])])
    path = tf.train.Checkpoint(optimizer=keras_adam, weights=weights).save(str(tmp_path / "c"))

    restored = [keras.Variable(np.zeros((3, 2), np.float32))]
    fused = FusedAdam(0.1)
    fused.build(restored)
    tf.train.Checkpoint(optimizer=fused, weights=restored).restore(path) \
        .assert_existing_objects_matched()
    assert int(fused.iterations.numpy()) == 3
    fused.apply_gradients([(gradient, restored[0])])
    keras_adam.apply_gradients([(gradient, weights[0])])
    np.testing.assert_allclose(restored[0].numpy(), weights[0].numpy(), rtol=1e-6)


def test_fused_adam_refuses_amsgrad():
    with pytest.raises(ValueError, match="amsgrad"):
        FusedAdam(amsgrad=True)


@pytest.mark.parametrize("optimizer_class", [FusedAdam, KerasAdam])
def test_the_weight_average_is_the_exponential_moving_average_of_the_steps(optimizer_class):
    momentum, steps = 0.8, 6
    rng = np.random.default_rng(2)
    weight = keras.Variable(rng.normal(size=(4, 3)).astype(np.float32))
    optimizer = optimizer_class(0.05, use_ema=True, ema_momentum=momentum)
    optimizer.build([weight])
    expected = None
    for _ in range(steps):
        optimizer.apply_gradients([(tf.constant(rng.normal(size=(4, 3)), tf.float32), weight)])
        # Keras copies the weights on the first step, then averages.
        expected = weight.numpy() if expected is None else (
            momentum * expected + (1 - momentum) * weight.numpy())
    raw = weight.numpy()
    optimizer.finalize_variable_values([weight])  # what `fit` calls at its end
    np.testing.assert_array_equal(weight.numpy(), raw)
    optimizer.load_average([weight])
    np.testing.assert_allclose(weight.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert np.abs(weight.numpy() - raw).max() > 1e-3


def test_load_average_reports_whether_the_optimizer_keeps_one():
    for optimizer, averaged in [(FusedAdam(0.1), False),
                                (FusedAdam(0.1, use_ema=True, ema_momentum=0.5), True)]:
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        model.compile(optimizer=optimizer, loss="mse")
        model.optimizer.build(model.trainable_variables)
        model.fit(np.ones((8, 2)), np.zeros((8, 1)), epochs=2, verbose=0)
        raw = [v.numpy() for v in model.trainable_variables]
        assert load_average(model) == averaged
        moved = any(np.abs(v.numpy() - r).max() > 0 for v, r in zip(model.trainable_variables, raw))
        assert moved == averaged
