"""The SavedModel: loads without vae_tf, every signature works, decode matches Keras."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from vae_tf import exporting, training
from vae_tf.errors import RunDirError

from conftest import REPO_ROOT, parse_config

SMALL = ["--encoder_layers=32", "--decoder_layers=32", "--conv_filters=8,8,8", "--batch_size=32",
         "--noprogress_bar", "--figures_every=0", "--epochs=1", "--steps_per_epoch=3"]

# Runs in a fresh interpreter that imports tensorflow and nothing of vae_tf.
LOADER = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    path, z_path, out_path = sys.argv[1:4]
    loaded = tf.saved_model.load(path)
    config = json.load(open(loaded.config_file.asset_path.numpy().decode()))
    z = tf.constant(np.load(z_path))
    n = z.shape[0]
    report = {"signatures": sorted(loaded.signatures.keys()), "config": config}
    decode_inputs = {"z": z}
    generate_inputs = {"num_images": tf.constant(5), "seed": tf.constant(7, tf.int64)}
    if config["conditional"]:
        decode_inputs["label"] = tf.constant(np.arange(n) % 10, tf.int32)
        generate_inputs["label"] = tf.constant(3)
    decoded = loaded.signatures["decode"](**decode_inputs)["images"].numpy()
    default = loaded.signatures["serving_default"](**decode_inputs)["images"].numpy()
    encoded = loaded.signatures["encode"](images=tf.constant(decoded))
    generated = loaded.signatures["generate"](**generate_inputs)["images"].numpy()
    again = loaded.signatures["generate"](**generate_inputs)["images"].numpy()
    np.save(out_path, decoded)
    report.update(
        decode_shape=list(decoded.shape), decode_range=[float(decoded.min()), float(decoded.max())],
        default_equal=bool(np.array_equal(decoded, default)),
        encode={k: list(v.shape) for k, v in encoded.items()},
        class_probs_sum=float(encoded["class_probs"].numpy().sum(axis=1).mean())
        if "class_probs" in encoded else None,
        generate_shape=list(generated.shape),
        generate_repeatable=bool(np.array_equal(generated, again)),
        vae_tf_imported="vae_tf" in sys.modules)
    print(json.dumps(report))
""")


@pytest.fixture(scope="module")
def exported(tiny_data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    results = {}
    for name, extra in (("conditional", ["--arch=mlp", "--z_dim=3", "--classifier_weight=1"]),
                        ("conv", ["--arch=conv", "--z_dim=2"])):
        config = parse_config(*SMALL, *extra, f"--data_dir={tiny_data_dir}",
                              f"--model_dir={root / name}")
        results[name] = training.train_and_evaluate(config)
    return results


@pytest.mark.parametrize("name", ["conditional", "conv"])
def test_a_process_with_only_tensorflow_uses_every_signature(exported, name, tmp_path):
    result = exported[name]
    model = result.model
    z = np.random.default_rng(0).normal(size=(4, model.z_dim)).astype(np.float32)
    np.save(tmp_path / "z.npy", z)
    process = subprocess.run(
        [sys.executable, "-c", LOADER, os.path.join(result.model_dir, "saved_model"),
         str(tmp_path / "z.npy"), str(tmp_path / "out.npy")],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, PYTHONPATH=""),
        cwd=str(tmp_path))
    assert process.returncode == 0, process.stderr[-3000:]
    report = json.loads(process.stdout.strip().splitlines()[-1])
    assert report["vae_tf_imported"] is False
    assert report["signatures"] == ["decode", "encode", "generate", "serving_default"]
    assert report["decode_shape"] == [4, 28, 28, 1] and report["default_equal"]
    assert 0.0 <= report["decode_range"][0] and report["decode_range"][1] <= 1.0
    assert report["encode"]["z_mean"] == report["encode"]["z_log_var"] == [4, model.z_dim]
    assert report["generate_shape"] == [5, 28, 28, 1] and report["generate_repeatable"]
    config = report["config"]
    assert config["z_dim"] == model.z_dim and config["conditional"] == model.conditional
    assert config["image_shape"] == [28, 28, 1] and len(config["class_names"]) == 10
    if model.conditional:
        assert report["encode"]["class_probs"] == [4, 10]
        assert report["class_probs_sum"] == pytest.approx(1.0, abs=1e-5)
        labels = tf.constant(np.arange(4) % 10, tf.int32)
    else:
        assert "class_probs" not in report["encode"]
        labels = None
    keras_decoded = model.decode(tf.constant(z), labels).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), keras_decoded, atol=1e-5)


def test_decode_explains_a_wrong_z_width_and_a_bad_label(exported):
    loaded = tf.saved_model.load(os.path.join(exported["conditional"].model_dir, "saved_model"))
    decode = loaded.signatures["decode"]
    # Repeated: the check must win every time, not only when it happens to run first.
    for _ in range(20):
        with pytest.raises(tf.errors.InvalidArgumentError, match="z must have z_dim=3 columns"):
            decode(z=tf.zeros((2, 5)), label=tf.constant([0, 1]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="label must be below 10"):
        decode(z=tf.zeros((2, 3)), label=tf.constant([0, 12]))


def test_export_refuses_to_replace_unless_asked_and_leaves_no_staging(exported):
    result = exported["conv"]
    target = os.path.join(result.model_dir, "saved_model")
    before = os.path.getmtime(os.path.join(target, "saved_model.pb"))
    with pytest.raises(RunDirError, match="already exists; pass --overwrite"):
        exporting.export_model(result.model, parse_config("--arch=conv", "--z_dim=2"),
                               result.model_dir)
    assert os.path.getmtime(os.path.join(target, "saved_model.pb")) == before
    exporting.export_model(result.model, parse_config("--arch=conv", "--z_dim=2"),
                           result.model_dir, overwrite=True)
    assert os.path.isfile(os.path.join(target, "saved_model.pb"))
    assert [name for name in os.listdir(result.model_dir) if name.startswith(".saved_model")] == []


def test_export_command_needs_a_trained_run(tmp_path):
    process = subprocess.run([sys.executable, "-m", "vae_tf.export", f"--model_dir={tmp_path}"],
                             capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
                             env=dict(os.environ, PYTHONPATH=REPO_ROOT))
    assert process.returncode == 1
    assert f"error: --model_dir={tmp_path} holds no vae_tf run" in process.stderr
    missing = subprocess.run([sys.executable, "-m", "vae_tf.export"], capture_output=True,
                             text=True, timeout=120, cwd=REPO_ROOT,
                             env=dict(os.environ, PYTHONPATH=REPO_ROOT))
    assert missing.returncode == 1 and "error: --model_dir is required" in missing.stderr
