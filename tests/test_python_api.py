"""vae_tf from Python: `.keras` files that reload and train on, the API, a Keras checklist."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import vae_tf
from vae_tf.errors import ConfigError, RunDirError
from vae_tf.evaluation import elbo_iwae
from vae_tf.model import vae
from vae_tf.run import exporting, optimizers

from conftest import FAST, REPO_ROOT, parse_config

SMALL = ["--encoder_layers=16", "--decoder_layers=16", "--classifier_layers=16",
         "--conv_filters=4,4,4", "--z_dim=2"]
KINDS = {
    "mlp": ["--arch=mlp"],
    "conv with dropout": ["--arch=conv", "--dropout=0.2"],
    "the tutorial's classifier": ["--arch=mlp", "--classifier_weight=1",
                                  "--likelihood=gaussian"],
    "cvae": ["--arch=mlp", "--classifier_weight=1", "--condition_on=label"],
    "flow, averaged weights": ["--arch=mlp", "--flow_steps=2", "--flow_units=8",
                               "--ema_momentum=0.9"],
    "two layers, vamp prior": ["--arch=mlp", "--latent_layers=2", "--latent_layer_units=8",
                               "--prior=vamp", "--prior_components=5"],
    "importance-weighted bound": ["--arch=mlp", "--train_iw_samples=3"],
}


def _batch(count=48):
    rng = np.random.default_rng(0)
    images = (rng.random((count, 28, 28, 1)) > 0.5).astype("float32")
    return images, (np.arange(count) % 10).astype("int32")


def _trained(args):
    config = parse_config(*SMALL, *args)
    keras.utils.set_random_seed(0)
    model = vae.build_vae(config, 10)
    model.compile(optimizer=optimizers.make_adam(1e-3, config.ema_momentum))
    images, labels = _batch()
    model.fit(images, labels, batch_size=16, epochs=1, verbose=0, shuffle=False)
    return model


@pytest.mark.parametrize("kind", KINDS)
def test_a_keras_file_reloads_in_a_fresh_process_and_trains_on_as_the_original(kind, tmp_path):
    model = _trained(KINDS[kind])
    model.save(tmp_path / "vae.keras")
    images, labels = _batch()
    z = np.random.default_rng(1).normal(size=(4, model.z_dim)).astype("float32")
    np.savez(tmp_path / "inputs.npz", images=images, labels=labels, z=z)
    z_mean, z_log_var = model.encode(images)
    decoded = model.decode(z, labels[:4] if model.conditional else None)
    model.fit(images, labels, batch_size=16, epochs=2, verbose=0, shuffle=False)
    subprocess.run([sys.executable, os.path.join(REPO_ROOT, "tests", "keras_reload.py"),
                    str(tmp_path)], check=True, capture_output=True)
    reloaded = np.load(tmp_path / "reloaded.npz")
    np.testing.assert_array_equal(reloaded["z_mean"], z_mean)
    np.testing.assert_array_equal(reloaded["z_log_var"], z_log_var)
    np.testing.assert_array_equal(reloaded["decoded"], decoded)
    # Six more steps from the same state: the same weights, optimizer moments and seed
    # generators (noise, dropout), so bit for bit.
    assert len(model.variables) == sum(name.startswith("weight_") for name in reloaded.files)
    for index, variable in enumerate(model.variables):
        np.testing.assert_array_equal(reloaded[f"weight_{index}"], variable.numpy(),
                                      err_msg=variable.path)


def test_a_model_trains_on_the_bound_its_config_names_and_a_keras_file_keeps_it(tmp_path):
    """build_vae sets --train_iw_samples (not only the command's training), so a model
    made from Python, or reloaded from `.keras`, trains on the same objective."""
    model = _trained(KINDS["importance-weighted bound"])
    assert model.train_iw_samples == 3
    model.save(tmp_path / "vae.keras")
    assert keras.saving.load_model(tmp_path / "vae.keras").train_iw_samples == 3


def test_a_keras_users_checklist(tmp_path):
    model = _trained(KINDS["mlp"])
    model.summary(print_fn=lambda *args, **kwargs: None)
    images, _ = _batch()
    dataset = tf.data.Dataset.from_tensor_slices(images).batch(16)
    history = model.fit(dataset, validation_data=dataset, epochs=3, verbose=0, callbacks=[
        keras.callbacks.ModelCheckpoint(str(tmp_path / "best.keras")),
        keras.callbacks.EarlyStopping(patience=1),
        keras.callbacks.TensorBoard(str(tmp_path / "logs"))])
    assert {"loss", "val_loss", "kl_loss"} <= set(history.history)
    assert keras.saving.load_model(tmp_path / "best.keras").z_dim == 2
    assert os.listdir(tmp_path / "logs")
    scores = model.evaluate(dataset, return_dict=True, verbose=0)
    assert set(scores) == {"loss", "reconstruction_loss", "kl_loss"}
    model.export(str(tmp_path / "served"))
    served = tf.saved_model.load(str(tmp_path / "served"))
    z = tf.zeros([3, 2])
    np.testing.assert_allclose(served.signatures["decode"](z=z)["images"], model.decode(z),
                               atol=1e-6)


def test_the_numpy_methods_take_uint8_or_floats_and_agree_with_the_saved_model(tmp_path):
    model = _trained(KINDS["the tutorial's classifier"])
    images, _ = _batch(6)
    pixels = (images[..., 0] * 255).astype(np.uint8)  # [N, 28, 28] uint8
    z_mean, _ = model.encode(pixels)
    assert isinstance(z_mean, np.ndarray)
    np.testing.assert_array_equal(z_mean, model.encode(images)[0])
    np.testing.assert_array_equal(model.reconstruct(pixels), model.reconstruct(images))
    served = tf.saved_model.load(exporting.serving_archive(model).write_out(
        str(tmp_path / "served"), verbose=False) or str(tmp_path / "served"))
    np.testing.assert_allclose(served.signatures["encode"](images=images)["z_mean"], z_mean,
                               atol=1e-6)
    np.testing.assert_allclose(
        served.signatures["decode"](z=z_mean, label=tf.fill([6], 3))["images"],
        model.decode(z_mean, label=3), atol=1e-6)
    generated = model.generate(5, label=7, seed=3)
    np.testing.assert_allclose(generated, served.signatures["generate"](
        num_images=tf.constant(5), seed=tf.constant(3, tf.int64),
        label=tf.constant(7))["images"], atol=1e-6)
    assert generated.shape == (5, 28, 28, 1) and 0 <= generated.min() <= generated.max() <= 1


@pytest.mark.parametrize("call, message", [
    (lambda m: m.encode(np.zeros((2, 27, 28), np.uint8)), r"images must be \[N, 28, 28, 1\]"),
    (lambda m: m.encode(np.full((2, 28, 28), 255.0)), "float images must hold values in"),
    (lambda m: m.decode(np.zeros((2, 3))), r"z must be \[N, 2\] \(z_dim=2\)"),
    (lambda m: m.generate(2), "a conditional model needs a label"),
])
def test_the_numpy_methods_refuse_wrong_input_in_one_line(call, message):
    model = _trained(KINDS["cvae"])
    with pytest.raises(ValueError, match=message) as error:
        call(model)
    assert "\n" not in str(error.value)


def test_the_python_api_trains_loads_and_scores_as_the_commands_do(tiny_data_dir, tmp_path):
    config = vae_tf.Config.from_preset("mlp_cvae", epochs=1, steps_per_epoch=5, batch_size=32,
                                       data_dir=str(tiny_data_dir), dataset="mnist",
                                       model_dir=str(tmp_path / "run"), progress_bar=False,
                                       figures_every=0, jit_compile="false",
                                       steps_per_execution=1)
    assert config.condition_on == "label" and config.epochs == 1
    model = vae_tf.train(config)
    assert model.model_dir == str(tmp_path / "run")
    assert os.path.isfile(tmp_path / "run" / "checkpoints" / "checkpoint")
    loaded = vae_tf.load(str(tmp_path / "run"))
    test = vae_tf.datasets.load("mnist", data_dir=str(tiny_data_dir)).test
    images = test.images[:20]
    np.testing.assert_array_equal(loaded.encode(images)[0], model.encode(images)[0])
    # The per-image IWAE is what evaluate averages, with the same draws.
    log_px = loaded.log_likelihood(images, num_samples=30, batch_size=10)
    scores = elbo_iwae.evaluate_model(loaded, config, test.float_images(20), test.labels[:20],
                                       num_samples=30, batch_size=10, chunk_size=30,
                                       progress=False)
    assert log_px.shape == (20,)
    assert -log_px.mean() == pytest.approx(scores["nll_iwae_nats"], abs=1e-4)
    with pytest.raises(ConfigError, match="Config has no setting 'epoch'"):
        vae_tf.Config.from_preset("mlp_cvae", epoch=5)
    with pytest.raises(RunDirError, match="neither a .keras file nor a run's folder"):
        vae_tf.load(str(tmp_path / "missing"))


def test_export_writes_a_keras_file_beside_the_run_without_replacing_one(tiny_args, tmp_path):
    from vae_tf.run import training

    config = parse_config(*FAST, *tiny_args, "--epochs=1")
    training.train_and_evaluate(config)
    command = [sys.executable, "-m", "vae_tf.export", f"--model_dir={config.model_dir}",
               "--format=keras"]
    first = subprocess.run(command, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    path = os.path.join(config.model_dir, "vae-1.keras")
    before = os.path.getmtime(path)
    second = subprocess.run(command, capture_output=True, text=True)
    assert second.returncode == 1
    assert f"{path} already exists; pass --overwrite" in second.stderr.strip().splitlines()[-1]
    assert os.path.getmtime(path) == before
    assert vae_tf.load(path).z_dim == 2


def test_vae_tf_train_is_the_api_even_after_the_command_module_is_imported():
    import importlib

    from vae_tf import api

    module = importlib.import_module("vae_tf.train")
    assert callable(vae_tf.train) and callable(module)
    config = object()
    calls = []
    original = api.train
    api.train = lambda given: calls.append(given) or "model"
    try:
        assert vae_tf.train(config) == "model" and calls == [config]
    finally:
        api.train = original
