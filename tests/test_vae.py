"""Encoder, decoder, classifier and VAE: shapes, scales, training steps, determinism."""

import dataclasses
import itertools
import json
import os

import golden_losses
import keras
import numpy as np
import pytest
import tensorflow as tf

from vae_tf.config import Config
from vae_tf.model import networks, vae

from conftest import REPO_ROOT, make_images

BATCH = 16


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=BATCH).astype(np.int32)
    images = make_images(labels, seed)[..., np.newaxis].astype(np.float32) / 255.0
    return tf.constant(images), tf.constant(labels)


def _small(arch, **overrides):
    """A configuration small enough to train in a test, keeping each arch's shape."""
    values = dict(arch=arch, z_dim=3, conv_filters=[8, 8, 8], encoder_layers=[32],
                  decoder_layers=[32], classifier_layers=[16], batch_size=BATCH)
    values.update(overrides)
    return Config(**values).validate()


def _compiled(config, learning_rate=1e-3):
    keras.utils.set_random_seed(config.seed)
    model = vae.build_vae(config, num_classes=10)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), jit_compile=False)
    return model


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_encoder_and_decoder_shapes(arch):
    config = _small(arch)
    images, _ = _batch()
    encoder, decoder = vae.ARCHITECTURES[arch](config, vae.MNIST_IMAGE_SHAPE)
    z_mean, z_log_var = encoder(images)
    assert z_mean.shape == z_log_var.shape == (BATCH, 3)
    assert z_mean.dtype == z_log_var.dtype == tf.float32
    logits = decoder(tf.zeros((BATCH, 3)))
    assert logits.shape == (BATCH, 28, 28, 1)


def test_conv_layers_follow_the_tutorial():
    # The conv preset's settings, given explicitly, without a Config.
    encoder = networks.conv_encoder(8, "log_std", filters=[64, 64, 64], kernel_size=4,
                                  strides=[2, 2, 1], leaky_relu_slope=0.3, dropout=0.2)
    decoder = networks.conv_decoder(24, filters=[64, 64, 64], kernel_size=4, strides=[2, 1, 1],
                                  leaky_relu_slope=0.3, dropout=0.2, image_shape=(28, 28, 1))
    encoder(tf.zeros((1, 28, 28, 1)))
    decoder(tf.zeros((1, 8)))
    convs = [layer for layer in encoder.body if isinstance(layer, keras.layers.Conv2D)]
    assert [(c.filters, c.kernel_size, c.strides) for c in convs] == [
        (64, (4, 4), (2, 2)), (64, (4, 4), (2, 2)), (64, (4, 4), (1, 1))]
    assert sum(isinstance(layer, keras.layers.Dropout) for layer in encoder.body) == 3
    dense_units = [layer.units for layer in decoder.body if isinstance(layer, keras.layers.Dense)]
    assert dense_units == [24, 49]
    deconvs = [layer for layer in decoder.body
               if isinstance(layer, keras.layers.Conv2DTranspose)]
    assert [d.strides for d in deconvs] == [(2, 2), (1, 1), (1, 1)]


@pytest.mark.parametrize("strides,grid", [([2, 2], (7, 7)), ([2, 1], (14, 14))])
def test_a_deep_seed_decoder_reaches_28x28_through_convolutions(strides, grid):
    # --decoder_seed_channels: the ConvHVAE's decoder, a seed of C channels sized by the
    # strides, and a transposed conv (not Flatten -> Dense(784)) for the logits.
    decoder = networks.conv_decoder(64, filters=[8, 16], kernel_size=4, strides=strides,
                                    leaky_relu_slope=0.3, dropout=0.0, image_shape=(28, 28, 1),
                                    seed_channels=4)
    assert decoder(tf.zeros((2, 10))).shape == (2, 28, 28, 1)
    assert not decoder.dense_output
    assert isinstance(decoder.output_layer, keras.layers.Conv2DTranspose)
    reshape = next(layer for layer in decoder.body if isinstance(layer, keras.layers.Reshape))
    assert reshape.target_shape == grid + (4,)
    assert decoder.count_params() < 100_000  # no dense layer of 784 outputs per feature


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_classifier_and_conditional_decoder_shapes(arch):
    config = _small(arch, classifier_weight=1.0)
    model = vae.build_vae(config, num_classes=10)
    images, _ = _batch()
    outputs = model(images)
    assert outputs.class_logits.shape == (BATCH, 10)
    assert model.decoder.output_layer.kernel.shape[0] >= 1
    assert model.decoder.body[0].kernel.shape[0] == 3 + 10  # z plus class probabilities
    generated = model.decode(tf.zeros((4, 3)), tf.constant([0, 3, 7, 9]))
    assert generated.shape == (4, 28, 28, 1)
    assert 0.0 <= float(tf.reduce_min(generated)) and float(tf.reduce_max(generated)) <= 1.0
    with pytest.raises(ValueError, match="needs a label"):
        model.decode(tf.zeros((4, 3)))


def test_unconditional_model_has_no_classifier_outputs():
    model = vae.build_vae(_small("mlp"), num_classes=10)
    assert model(_batch()[0]).class_logits is None
    assert [m.name for m in model.metrics] == ["loss", "reconstruction_loss", "kl_loss"]


@pytest.mark.parametrize("scale, raw, expected_log_var", [
    ("log_var", 0.4, 0.4),
    ("log_std", 0.4, 0.8),
    ("softplus", 0.0, 2 * np.log(np.log(2.0) + networks.SOFTPLUS_MIN_STD)),
])
def test_scale_parameterisations_give_log_variance(scale, raw, expected_log_var):
    value = networks.log_variance(tf.constant([raw]), scale).numpy()[0]
    assert value == pytest.approx(expected_log_var, rel=1e-5)


def test_sampling_draws_fresh_noise_each_call_inside_tf_function():
    sampling = networks.Sampling(seed=1)
    mean, log_var = tf.zeros((1000, 2)), tf.zeros((1000, 2))
    draw = tf.function(lambda: sampling(mean, log_var))
    first, second = draw().numpy(), draw().numpy()
    assert not np.allclose(first, second)
    assert abs(first.mean()) < 0.1 and abs(first.std() - 1.0) < 0.1


STEP_CASES = [(arch, likelihood, scale, weight) for (arch, likelihood, scale), weight in zip(
    itertools.product(["mlp", "conv"], ["gaussian", "squared_error", "bernoulli"],
                      ["log_var", "log_std", "softplus"]), itertools.cycle([0.0, 2.0]))]


@pytest.mark.parametrize("arch, likelihood, scale, classifier_weight", STEP_CASES)
def test_one_training_step_changes_the_weights_with_finite_losses(
        arch, likelihood, scale, classifier_weight):
    config = _small(arch, likelihood=likelihood, scale=scale, classifier_weight=classifier_weight)
    model = _compiled(config)
    before = [w.numpy().copy() for w in model.trainable_weights]
    logs = model.train_on_batch(*_batch(), return_dict=True)
    expected = {"loss", "reconstruction_loss", "kl_loss"}
    if classifier_weight:
        expected |= {"classifier_loss", "classifier_accuracy"}
    assert set(logs) == expected
    assert all(np.isfinite(value) for value in logs.values())
    changed = [not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights)]
    assert all(changed), [w.path for w, c in zip(model.trainable_weights, changed) if not c]


def test_loss_is_reconstruction_plus_weighted_kl_and_classifier_terms():
    config = _small("mlp", classifier_weight=3.0, beta=0.5)
    model = vae.build_vae(config, num_classes=10)
    images, labels = _batch()
    terms = model.example_losses(images, labels, model(images))
    np.testing.assert_allclose(
        terms["loss"].numpy(),
        (terms["reconstruction_loss"] + 0.5 * terms["kl_loss"]
         + 3.0 * terms["classifier_loss"]).numpy(), rtol=1e-5)
    assert terms["loss"].shape == (BATCH,)


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_same_seed_gives_identical_training(arch):
    def run():
        model = _compiled(_small(arch, seed=7))
        for step in range(3):
            logs = model.train_on_batch(*_batch(step), return_dict=True)
        return logs, [w.numpy() for w in model.trainable_weights]

    (logs_a, weights_a), (logs_b, weights_b) = run(), run()
    assert logs_a == logs_b
    for a, b in zip(weights_a, weights_b):
        np.testing.assert_array_equal(a, b)


def test_different_seeds_give_different_weights():
    keras.utils.set_random_seed(1)
    a = vae.build_vae(_small("mlp", seed=1), 10)
    keras.utils.set_random_seed(2)
    b = vae.build_vae(_small("mlp", seed=2), 10)
    assert not np.array_equal(a.encoder.mean_head.kernel.numpy(),
                              b.encoder.mean_head.kernel.numpy())


def test_model_can_overfit_one_batch():
    model = _compiled(_small("mlp", encoder_layers=[128], decoder_layers=[128], z_dim=8,
                             activation="relu"), learning_rate=3e-3)
    images, labels = _batch()
    first = model.train_on_batch(images, labels, return_dict=True)["reconstruction_loss"]
    for _ in range(300):
        last = model.train_on_batch(images, labels, return_dict=True)["reconstruction_loss"]
    # Bernoulli loss of these images falls from ~540 nats to well under half of that.
    assert last < 0.4 * first, (first, last)


def test_glu_layers_gate_one_half_of_a_dense_layer_with_the_other():
    (layer,) = networks.dense_layers([3], "glu")
    inputs = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    outputs = layer(inputs).numpy()
    pre = inputs @ layer.kernel.numpy() + layer.bias.numpy()  # [4, 6]
    expected = pre[:, :3] / (1.0 + np.exp(-pre[:, 3:]))
    assert outputs.shape == (4, 3)
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-6)


def test_dense_dropout_drops_hidden_units_while_training_only():
    config = Config(arch="mlp", encoder_layers=[64], decoder_layers=[64], z_dim=2,
                    dense_dropout=0.5)
    model = vae.build_vae(config, num_classes=10)
    dropouts = [layer for part in (model.encoder, model.decoder) for layer in part.body
                if isinstance(layer, keras.layers.Dropout)]
    assert [layer.rate for layer in dropouts] == [0.5, 0.5]
    z = tf.random.normal((8, 2), seed=1)
    inference = model.decoder(z, training=False)
    np.testing.assert_array_equal(inference, model.decoder(z, training=False))
    assert np.abs(model.decoder(z, training=True) - inference).max() > 1e-3
    plain = vae.build_vae(dataclasses.replace(config, dense_dropout=0.0), num_classes=10)
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in plain.decoder.body)


@pytest.mark.parametrize("arch, condition_on", [("mlp", None), ("conv", "label")])
def test_a_flow_model_decodes_the_flow_of_its_draws_and_trains(arch, condition_on):
    extra = dict(classifier_weight=1.0, condition_on=condition_on) if condition_on else {}
    config = _small(arch, flow_steps=2, flow_units=16, mixed_precision="bfloat16", **extra)
    model = _compiled(config, learning_rate=3e-3)
    assert len(model.flow.flow_steps) == 2 and model.encoder.context_head.units == 16
    images, labels = _batch()
    outputs = model(images, labels=labels)
    assert outputs.z.dtype == outputs.flow_log_det.dtype == tf.float32
    assert outputs.flow_log_det.shape == (BATCH,)
    # z is the flow of the draw, and the KL term is the flow's sampled one.
    z_mean, z_log_var, context = model.encoder(images, condition=tf.one_hot(labels, 10)
                                               if condition_on else None, return_context=True)
    np.testing.assert_allclose(outputs.z_mean, z_mean, rtol=1e-5, atol=1e-6)
    terms = model.example_losses(images, labels, outputs)
    from vae_tf.model import losses
    np.testing.assert_allclose(terms["kl_loss"], losses.flow_kl_divergence(
        outputs.z, outputs.z_log_var, outputs.flow_log_det), rtol=1e-5)
    # encode() gives the flow of the mean: what a deterministic reconstruction decodes.
    encoded, _ = model.encode(images)
    condition = model.condition(images)
    np.testing.assert_allclose(encoded, model.transform(model.posterior(images)[0],
                                                        model.posterior(images)[2])[0],
                               rtol=1e-5, atol=1e-6)
    decoder_input = encoded if condition is None else tf.concat([encoded, condition], -1)
    np.testing.assert_allclose(model.reconstruct(images),
                               tf.sigmoid(model.decoder(decoder_input)), rtol=1e-5, atol=1e-6)
    first = model.train_on_batch(images, labels, return_dict=True)["loss"]
    flow_before = [v.numpy().copy() for v in model.flow.trainable_variables]
    for _ in range(30):
        last = model.train_on_batch(images, labels, return_dict=True)["loss"]
    assert np.isfinite(last) and last < first, (first, last)
    assert any(np.abs(v.numpy() - before).max() > 0
               for v, before in zip(model.flow.trainable_variables, flow_before))


def test_a_flow_and_a_context_head_come_together():
    encoder = networks.mlp_encoder(3, "log_var", [16], "relu", context_units=8)
    decoder = networks.mlp_decoder([16], "relu", (28, 28, 1))
    with pytest.raises(ValueError, match="a flow needs an encoder with a context head"):
        vae.VAE(encoder, decoder, "bernoulli")


def test_a_glu_mlp_vae_can_overfit_one_batch():
    model = _compiled(_small("mlp", encoder_layers=[128], decoder_layers=[128], z_dim=8,
                             activation="glu"), learning_rate=3e-3)
    assert model.decoder.body[0].kernel.shape == (8, 256)  # two halves of 128
    images, labels = _batch()
    first = model.train_on_batch(images, labels, return_dict=True)["reconstruction_loss"]
    for _ in range(300):
        last = model.train_on_batch(images, labels, return_dict=True)["reconstruction_loss"]
    assert last < 0.4 * first, (first, last)


@pytest.mark.parametrize("arch", ["mlp", "conv"])
@pytest.mark.parametrize("precision, compute_dtype", [("bfloat16", "bfloat16"),
                                                      ("float16", "float16")])
def test_mixed_precision_computes_hidden_layers_low_and_keeps_the_loss_float32(
        arch, precision, compute_dtype):
    config = _small(arch, mixed_precision=precision, classifier_weight=1.0)
    model = _compiled(config)
    assert model.encoder.body[1].compute_dtype == compute_dtype
    assert model.encoder.mean_head.compute_dtype == "float32"
    assert all(w.dtype == "float32" for w in model.trainable_weights)
    images, labels = _batch()
    outputs = model(images)
    assert outputs.z_mean.dtype == outputs.z_log_var.dtype == outputs.z.dtype == tf.float32
    assert outputs.logits.dtype == outputs.class_logits.dtype == tf.float32
    uint8_images = tf.cast(tf.round(images * 255), tf.uint8)  # as the pipelines feed them
    first = model.train_on_batch(uint8_images, labels, return_dict=True)["loss"]
    for _ in range(30):
        last = model.train_on_batch(uint8_images, labels, return_dict=True)["loss"]
    assert np.isfinite(last) and last < first, (first, last)
    # The layers made afterwards are float32 again: the policy was set only for this model.
    assert keras.layers.Dense(2).compute_dtype == "float32"
    float32 = vae.build_vae(_small(arch), 10)
    assert float32.encoder.body[1].compute_dtype == "float32"


def test_float16_training_scales_the_loss():
    model = _compiled(_small("mlp", mixed_precision="float16"))
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    model.train_on_batch(*_batch())
    assert float(model.optimizer.scale_loss(tf.constant(1.0))) > 1.0


def test_a_vae_builds_and_trains_from_explicit_arguments_without_a_config():
    keras.utils.set_random_seed(3)
    model = vae.VAE(networks.mlp_encoder(2, "softplus", [16], "relu"),
                       networks.mlp_decoder([16], "relu", (28, 28, 1)), "bernoulli")
    images, labels = _batch()
    model(images)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = [w.numpy().copy() for w in model.trainable_weights]
    history = model.fit(images, labels, batch_size=BATCH, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert all(not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights))
    with pytest.raises(ValueError, match="unknown likelihood 'poisson'"):
        vae.VAE(networks.mlp_encoder(2, "log_var", [4], "relu"),
                   networks.mlp_decoder([4], "relu", (28, 28, 1)),
                   "poisson")


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_label_conditioned_vae_feeds_the_true_label_to_encoder_and_decoder(arch):
    config = _small(arch, classifier_weight=1.0, condition_on="label")
    model = _compiled(config)
    images, labels = _batch()
    # Encoder and decoder both read the one-hot label beside the image and z.
    flat = 8 * 7 * 7 if arch == "conv" else 28 * 28
    first_dense = model.encoder.mean_head if arch == "conv" else model.encoder.body[1]
    assert first_dense.kernel.shape[0] == flat + 10
    with_true = model(images, labels=labels)
    with_wrong = model(images, labels=(labels + 1) % 10)
    assert not np.allclose(with_true.z_mean, with_wrong.z_mean)
    # Without labels, the classifier's prediction stands in for them.
    predicted = tf.argmax(model.classifier(images), axis=-1)
    np.testing.assert_allclose(model.encode(images)[0], model(images, labels=predicted).z_mean,
                               atol=1e-6)
    history = model.fit(images, labels, batch_size=BATCH, epochs=2, verbose=0).history
    assert np.isfinite(history["loss"]).all() and "classifier_loss" in history


def test_label_conditioning_needs_a_classifier():
    with pytest.raises(ValueError, match="--condition_on=label needs --classifier_weight"):
        _small("mlp", condition_on="label")


GOLDEN = json.load(open(os.path.join(os.path.dirname(__file__), "data", "golden_losses.json")))


@pytest.mark.parametrize("preset", sorted(GOLDEN["losses"]))
def test_each_preset_gives_the_losses_recorded_before_the_model_was_composed_of_parts(preset):
    """tests/data/golden_losses.json was written by tests/golden_losses.py at the commit it
    names, before priors, posteriors and the second stochastic layer became parts."""
    flagfile = os.path.join(REPO_ROOT, "flags", preset + ".flags")
    assert golden_losses.preset_losses(flagfile) == pytest.approx(GOLDEN["losses"][preset],
                                                                  rel=1e-5, abs=1e-4)
