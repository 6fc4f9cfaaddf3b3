"""Two stochastic layers: the hierarchy's estimator against a closed form, its prior's draws."""

import math

import numpy as np
import pytest
import tensorflow as tf

from vae_tf.errors import ConfigError
from vae_tf.evaluation import elbo_iwae
from vae_tf.model import hierarchy, losses
from vae_tf.model.vae import build_vae

from conftest import parse_config

Z, X = 2, 4  # each latent's width, the observation's


def _linear_gaussian():
    """A two-layer linear-Gaussian model p(z2) p(z1|z2) p(x|z1, z2) in a TwoLayerLatents.

    z2 ~ N(0, I); z1 = A z2 + N(0, S1); x = B z1 + C z2 + N(0, s^2 I), so x is Gaussian
    with covariance M M^T + B S1 B^T + s^2 I, M = B A + C. The ladder's linear layers
    hold p(z1|z2) and a q(z1|x, z2) with the exact posterior's mean but a diagonal,
    widened variance, so the importance-weighted bound reaches log p(x) only as K grows.
    Returns the ladder, a function of x giving q(z2|x)'s (mean, log-variance), B, C, s
    and the marginal covariance.
    """
    rng = np.random.default_rng(0)
    a = rng.normal(size=(Z, Z))
    s1 = np.diag(np.exp([-0.5, 0.3]))
    b, c = rng.normal(size=(X, Z)), rng.normal(size=(X, Z))
    noise = 0.6
    m = b @ a + c
    marginal = m @ m.T + b @ s1 @ b.T + noise ** 2 * np.eye(X)
    # z2 | x, and z1 | x, z2 (whose mean is (A - K M) z2 + K x).
    to_top = m.T @ np.linalg.inv(marginal)
    top_var = np.diag(np.eye(Z) - to_top @ m) * 1.3
    residual = b @ s1 @ b.T + noise ** 2 * np.eye(X)
    gain = s1 @ b.T @ np.linalg.inv(residual)
    bottom_var = np.diag(s1 - gain @ b @ s1) * 1.3

    units = X  # the context is x itself, X wide
    ladder = hierarchy.TwoLayerLatents(Z, units, "linear", dtype="float32")
    embed = np.eye(Z, units)  # [Z, U]: z into the first Z hidden units
    zeros_u, zeros_z = np.zeros(units), np.zeros(Z)
    weights = {
        ladder.p_hidden[0]: [embed, zeros_u], ladder.p_hidden[1]: [np.eye(units), zeros_u],
        ladder.p_mean: [embed.T @ a.T, zeros_z],
        ladder.p_log_var: [np.zeros((units, Z)), np.log(np.diag(s1))],
        ladder.q_z2: [embed, zeros_u],
        ladder.q_joint_z2: [embed.T @ (a - gain @ m).T @ embed, zeros_u],
        ladder.q_joint_context: [gain.T @ embed],
        ladder.q_mean: [embed.T, zeros_z],
        ladder.q_log_var: [np.zeros((units, Z)), np.log(bottom_var)],
    }
    for layer, values in weights.items():
        layer.set_weights([np.asarray(v, np.float32) for v in values])

    def top_posterior(x):
        return (tf.matmul(x, tf.constant(to_top.T, tf.float32)),
                tf.fill(tf.shape(x[:, :Z]), 0.0) + tf.constant(np.log(top_var), tf.float32))

    return ladder, top_posterior, b, c, noise, marginal


def _log_normal(x, covariance):
    sign, log_det = np.linalg.slogdet(covariance)
    solved = np.linalg.solve(covariance, x.T).T
    return -0.5 * (len(covariance) * math.log(2 * math.pi) + log_det + (x * solved).sum(-1))


def _estimate(model, inputs, num_samples, chunk_size=1000):
    ladder, top_posterior, b, c, noise, _ = model

    def encode_fn(x):
        return (*ladder.base(*top_posterior(x)), x)

    def log_prior_fn(z):
        return losses.gaussian_log_density(ladder.split(z)[1], 0.0, tf.zeros([Z])) \
            + ladder.log_prob_bottom(z)

    def log_likelihood_fn(x, z):
        z1, z2 = ladder.split(z)
        mean = tf.matmul(z1, tf.constant(b.T, tf.float32)) + tf.matmul(
            z2, tf.constant(c.T, tf.float32))
        return losses.gaussian_log_density(x, mean, tf.fill([X], 2 * math.log(noise)))

    return elbo_iwae.importance_weighted_log_likelihood(
        encode_fn, log_likelihood_fn, tf.constant(inputs, tf.float32), num_samples, chunk_size,
        seed=3, transform_fn=ladder, log_prior_fn=log_prior_fn).numpy()


def test_the_iwae_of_a_two_layer_linear_gaussian_model_converges_to_its_marginal():
    model = _linear_gaussian()
    marginal = model[-1]
    inputs = np.random.default_rng(1).multivariate_normal(np.zeros(X), marginal, size=20)
    exact = _log_normal(inputs, marginal)
    errors = {k: np.abs(_estimate(model, inputs, k) - exact).mean() for k in (1, 30, 3000)}
    print(errors)
    assert errors[3000] < 0.05, errors
    assert errors[1] > errors[30] > errors[3000], errors
    # With one sample the bound is the ELBO, below log p(x) on average.
    assert (_estimate(model, inputs, 1) - exact).mean() < 0


def _hvae(prior="standard_normal", z_dim=3):
    config = parse_config("--arch=mlp", "--encoder_layers=16", "--decoder_layers=16",
                          "--activation=glu", f"--z_dim={z_dim}", "--latent_layers=2",
                          "--latent_layer_units=12", f"--prior={prior}",
                          "--prior_components=4")
    return build_vae(config, 10, (28, 28, 1))


@pytest.mark.parametrize("prior", ["standard_normal", "vamp"])
def test_a_two_layer_model_samples_its_top_down_prior(prior):
    model = _hvae(prior)
    kernel, _ = model.ladder.p_log_var.get_weights()  # variances far from 1
    model.ladder.p_log_var.set_weights([kernel, np.array([-1.5, 0.5, 1.2], np.float32)])
    z = model.sample_prior(40_000, 5).numpy()
    assert z.shape == (40_000, 6)
    z1, z2 = z[:, :3], z[:, 3:]
    # z1 given z2 is p(z1|z2): standardised by its moments it is N(0, I).
    mean, log_var = (v.numpy() for v in model.ladder.prior_moments(tf.constant(z2)))
    standard = (z1 - mean) / np.exp(0.5 * log_var)
    np.testing.assert_allclose(standard.mean(0), 0.0, atol=0.03)
    np.testing.assert_allclose(standard.std(0), 1.0, atol=0.03)
    top = model.prior.sample(40_000, 3, 5, model._encode_top).numpy()
    np.testing.assert_allclose(z2, top)  # the top layer is the prior's own draw
    # log p(z) = log p(z2) + log p(z1 | z2).
    expected = model.prior.log_prob(tf.constant(z2[:5]), model._encode_top).numpy() + (
        -0.5 * (math.log(2 * math.pi) + log_var[:5] + standard[:5] ** 2)).sum(-1)
    np.testing.assert_allclose(model.log_prior(tf.constant(z[:5])).numpy(), expected,
                               rtol=1e-5)


def test_a_two_layer_model_trains_and_encodes_both_latents():
    model = _hvae("vamp")
    assert model.z_dim == 6
    images = tf.cast(tf.random.stateless_uniform((8, 28, 28, 1), seed=[1, 2]) > 0.5,
                     tf.float32)
    model.compile(optimizer="adam")
    before = [v.numpy().copy() for v in model.ladder.trainable_variables]
    logs = model.train_step((images, tf.zeros(8, tf.int32)))
    assert np.isfinite(float(logs["loss"]))
    changed = [not np.array_equal(b, v.numpy())
               for b, v in zip(before, model.ladder.trainable_variables)]
    assert all(changed)  # q(z1|x, z2) and p(z1|z2) each get gradients
    z_mean, z_log_var = model.encode(images)
    assert z_mean.shape == z_log_var.shape == (8, 6)
    # encode's z1 half is q(z1|x, z2)'s mean at z2 = q(z2|x)'s mean.
    top_mean, _, context = model.encoder(images, training=False, return_context=True)
    np.testing.assert_allclose(z_mean[:, 3:], top_mean, rtol=1e-6)
    np.testing.assert_allclose(
        z_mean[:, :3], model.ladder.posterior_moments(top_mean, context)[0], rtol=1e-6)


@pytest.mark.parametrize("flags", [["--flow_steps=2"], ["--classifier_weight=1"],
                                   ["--latent_layers=3"]])
def test_impossible_two_layer_combinations_are_refused(flags):
    extra = [] if "--latent_layers=3" in flags else ["--latent_layers=2"]
    with pytest.raises(ConfigError, match="latent_layers"):
        parse_config("--arch=mlp", *extra, *flags)


def test_the_export_of_a_two_layer_model_generates_from_its_top_down_prior():
    from vae_tf.run import exporting

    model = _hvae("vamp")
    functions = exporting.ServingFunctions(model)
    z = functions.sample_prior(tf.constant(6), tf.constant(4, tf.int64))["z"]
    np.testing.assert_array_equal(z, model.sample_prior(6, 4))
    generated = functions.generate(tf.constant(6), tf.constant(4, tf.int64))["images"]
    np.testing.assert_allclose(generated, model.decode(z), atol=1e-6)
    # z1 is drawn given z2, not from N(0, I) beside it.
    top = model.prior.sample(6, 3, 4, model._encode_top)
    mean, log_var = model.ladder.prior_moments(top)
    standard = tf.random.stateless_normal([6, 3], seed=[4, 3])
    np.testing.assert_allclose(z[:, :3], mean + tf.exp(0.5 * log_var) * standard, atol=1e-5)


def test_a_two_layer_run_trains_draws_its_figures_and_is_evaluated(tiny_data_dir, tmp_path):
    from vae_tf.evaluation import elbo_iwae
    from vae_tf.run import training

    result = training.train_and_evaluate(parse_config(
        "--arch=mlp", "--encoder_layers=16", "--decoder_layers=16", "--z_dim=1",
        "--latent_layers=2", "--latent_layer_units=8", "--prior=vamp", "--prior_components=5",
        "--batch_size=32", "--epochs=1", "--steps_per_epoch=5", "--figures_every=1",
        "--noprogress_bar", "--nojit_compile", "--steps_per_execution=1",
        "--noexport",  # the export of a two-layer model: the test above
        f"--data_dir={tiny_data_dir}", f"--model_dir={tmp_path / 'run'}"))
    figures = sorted(path.name for path in (tmp_path / "run" / "figures").iterdir())
    # z = [z1, z2] is two-dimensional, so the latent plane is drawn too.
    for name in ("samples_epoch_001.png", "manifold_epoch_001.png", "scatter_epoch_001.png"):
        assert name in figures
    scores = elbo_iwae.evaluate_run(result.model_dir, num_samples=8, chunk_size=8,
                                     progress=False)
    assert scores["nll_iwae_nats"] <= -scores["elbo_nats"] + 1.0
    assert np.isfinite(scores["frechet_distance"])


def test_a_conv_two_layer_run_trains_exports_and_is_evaluated(tiny_data_dir, tmp_path):
    # The ConvHVAE's shape (conv_hvae_vamp_bernoulli), small: a deep-seed conv decoder,
    # two stochastic layers and a VampPrior, through training, figures, export and IWAE.
    from vae_tf.run import training

    result = training.train_and_evaluate(parse_config(
        "--arch=conv", "--conv_filters=4,8", "--encoder_strides=2,2", "--decoder_strides=2,2",
        "--decoder_dense_units=16", "--decoder_seed_channels=4", "--dropout=0",
        "--activation=glu", "--z_dim=1", "--latent_layers=2", "--latent_layer_units=8",
        "--prior=vamp", "--prior_components=5", "--binarize=dynamic", "--likelihood=bernoulli",
        "--scale=log_var", "--batch_size=32", "--epochs=1", "--steps_per_epoch=5",
        "--figures_every=1", "--noprogress_bar", "--nojit_compile", "--steps_per_execution=1",
        f"--data_dir={tiny_data_dir}", f"--model_dir={tmp_path / 'run'}"))
    figures = sorted(path.name for path in (tmp_path / "run" / "figures").iterdir())
    assert "samples_epoch_001.png" in figures and "manifold_epoch_001.png" in figures
    exported = tf.saved_model.load(str(tmp_path / "run" / "saved_model"))
    seed = tf.constant(4, tf.int64)
    generated = exported.signatures["generate"](num_images=tf.constant(3), seed=seed)["images"]
    assert generated.shape == (3, 28, 28, 1)
    # generate decodes the hierarchy's own draw: z2 from the VampPrior, then z1 given z2.
    z = result.model.sample_prior(3, 4)
    np.testing.assert_allclose(generated, result.model.decode(z), atol=1e-5)
    scores = elbo_iwae.evaluate_run(result.model_dir, num_samples=8, chunk_size=8,
                                     progress=False)
    assert scores["nll_iwae_nats"] <= -scores["elbo_nats"] + 1.0
