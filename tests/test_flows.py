"""The inverse autoregressive flow: autoregressive by construction, exact log-determinant."""

import numpy as np
import pytest
import tensorflow as tf

from vae_tf.model import flows

Z, H = 5, 7


def _flow_with_random_weights(steps, seed=0):
    flow = flows.InverseAutoregressiveFlow(Z, steps, units=12)
    flow(tf.zeros((1, Z)), tf.zeros((1, H)))  # build
    rng = np.random.default_rng(seed)
    for variable in flow.trainable_variables:  # away from the near-identity start
        variable.assign(rng.normal(scale=0.3, size=variable.shape).astype(np.float32))
    return flow


def test_made_masks_let_output_i_see_only_inputs_before_i():
    to_hidden, to_output = flows.made_masks(Z, units=12)
    reach = (to_hidden @ to_output) > 0  # [input, output]: some path from input to output
    np.testing.assert_array_equal(reach, np.triu(np.ones((Z, Z), bool), k=1))


def test_one_step_is_autoregressive_and_its_log_det_is_the_log_of_its_jacobian_diagonal():
    step = flows.IAFStep(Z, units=12)
    z = tf.random.normal((4, Z), seed=1)
    context = tf.random.normal((4, H), seed=2)
    step(z, context)
    for variable in step.trainable_variables:
        variable.assign(tf.random.normal(variable.shape, stddev=0.5, seed=3))
    with tf.GradientTape() as tape:
        tape.watch(z)
        out, log_det = step(z, context)
    jacobian = tape.batch_jacobian(out, z).numpy()  # [B, out, in]
    # Output i depends on inputs 0..i only: a lower-triangular Jacobian.
    np.testing.assert_allclose(np.triu(jacobian, k=1), 0.0, atol=0)
    np.testing.assert_allclose(log_det, np.log(np.diagonal(jacobian, axis1=1, axis2=2)).sum(-1),
                               rtol=1e-5)


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_the_flow_log_det_is_that_of_its_full_jacobian(steps):
    flow = _flow_with_random_weights(steps)
    z = tf.random.normal((6, Z), seed=4)
    context = tf.random.normal((6, H), seed=5)
    with tf.GradientTape() as tape:
        tape.watch(z)
        out, log_det = flow(z, context)
    jacobian = tape.batch_jacobian(out, z).numpy()
    sign, expected = np.linalg.slogdet(jacobian.astype(np.float64))
    assert np.all(sign != 0)
    np.testing.assert_allclose(log_det, expected, rtol=1e-4, atol=1e-4)
    # With two steps or more the order is reversed in between: some output depends on
    # every input, so the whole is not triangular.
    if steps > 1:
        assert np.abs(np.triu(jacobian, k=1)).max() > 1e-3 and \
            np.abs(np.tril(jacobian, k=-1)).max() > 1e-3


def test_a_leading_axis_of_samples_broadcasts_against_the_batch_of_contexts():
    flow = _flow_with_random_weights(2)
    z = tf.random.normal((3, 4, Z), seed=6)  # [samples, batch, Z]
    context = tf.random.normal((4, H), seed=7)
    out, log_det = flow(z, context)
    assert out.shape == (3, 4, Z) and log_det.shape == (3, 4)
    for sample in range(3):
        one, one_log_det = flow(z[sample], context)
        np.testing.assert_allclose(out[sample], one, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(log_det[sample], one_log_det, rtol=1e-5, atol=1e-5)


def test_a_new_flow_starts_as_a_contraction_that_ignores_the_context():
    flow = flows.InverseAutoregressiveFlow(Z, 3, units=12)
    z = tf.random.normal((4, Z), seed=8)
    out, log_det = flow(z, tf.random.normal((4, H), seed=9))
    factor = 1.0 / (1.0 + np.exp(-flows.SCALE_BIAS))
    np.testing.assert_allclose(out, factor ** 3 * z.numpy(), rtol=1e-5)
    np.testing.assert_allclose(log_det, 3 * Z * np.log(factor), rtol=1e-5)


def test_a_flow_needs_a_step():
    with pytest.raises(ValueError, match="at least one step"):
        flows.InverseAutoregressiveFlow(Z, 0, units=12)
