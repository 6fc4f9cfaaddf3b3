"""The SavedModel: loads without vae_tf, every signature works, decode matches Keras."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from vae_tf.errors import RunDirError
from vae_tf.run import exporting, training

from conftest import REPO_ROOT, SETTLED, parse_config

SMALL = ["--encoder_layers=32", "--decoder_layers=32", "--conv_filters=8,8,8", "--batch_size=32",
         "--noprogress_bar", "--figures_every=0", "--epochs=1", "--steps_per_epoch=3", *SETTLED]

# Runs in a fresh interpreter that imports tensorflow and nothing of vae_tf.
LOADER = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    path, z_path, out_path = sys.argv[1:4]
    loaded = tf.saved_model.load(path)
    config = json.load(open(path + "/assets/config.json"))
    z = tf.constant(np.load(z_path))
    n = z.shape[0]
    report = {"signatures": sorted(loaded.signatures.keys()), "config": config}
    # What TF Serving does: a session-based load that restores every variable by name.
    with tf.compat.v1.Session(graph=tf.Graph()) as session:
        meta = tf.compat.v1.saved_model.load(session, ["serve"], path)
        decode = meta.signature_def["decode"]
        feed = {decode.inputs["z"].name: np.load(z_path)}
        if "label" in decode.inputs:
            feed[decode.inputs["label"].name] = np.arange(len(np.load(z_path))) % 10
        session_images = session.run(decode.outputs["images"].name, feed)
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
    report["session_equal"] = bool(np.allclose(session_images, decoded, atol=1e-6))
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
                        # With a flow posterior, which the encode signature runs too.
                        ("conv", ["--arch=conv", "--z_dim=2", "--flow_steps=2",
                                  "--flow_units=8"])):
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
    assert report["signatures"] == ["decode", "encode", "generate", "sample_prior",
                                    "serving_default"]
    assert report["decode_shape"] == [4, 28, 28, 1] and report["default_equal"]
    assert report["session_equal"]  # TF Serving's way of loading finds every weight
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
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=r"z must be a \[batch, 3\] float32 matrix \(z_dim=3 columns\)"):
            decode(z=tf.zeros((2, 5)), label=tf.constant([0, 1]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="label must be below 10"):
        decode(z=tf.zeros((2, 3)), label=tf.constant([0, 12]))


def test_export_refuses_to_replace_unless_asked_and_leaves_no_staging(exported):
    result = exported["conv"]
    target = os.path.join(result.model_dir, "saved_model", "1")
    before = os.path.getmtime(os.path.join(target, "saved_model.pb"))
    with pytest.raises(RunDirError, match="already exists; pass --overwrite"):
        exporting.export_model(result.model, parse_config("--arch=conv", "--z_dim=2"),
                               result.model_dir, version=1)
    assert os.path.getmtime(os.path.join(target, "saved_model.pb")) == before
    exporting.export_model(result.model, parse_config("--arch=conv", "--z_dim=2"),
                           result.model_dir, overwrite=True, version=1)
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


def test_exports_are_versioned_by_epoch_and_saved_model_points_at_the_newest(
        tiny_data_dir, tmp_path):
    args = [*SMALL, "--arch=mlp", "--z_dim=2", f"--data_dir={tiny_data_dir}",
            f"--model_dir={tmp_path / 'run'}"]
    training.train_and_evaluate(parse_config(*args))
    base = tmp_path / "run" / "saved_model"
    assert exporting.versions(str(base)) == [1]
    result = training.train_and_evaluate(parse_config(*args, "--epochs=2"))
    assert exporting.versions(str(base)) == [1, 2]  # the earlier version is kept
    # One link names the newest version; the files point through it, so they switch together.
    assert os.readlink(base / "current") == "2"
    for name in ("saved_model.pb", "variables", "assets"):
        assert os.readlink(base / name) == os.path.join("current", name)
    z = tf.constant(np.zeros((2, 2), np.float32))
    newest = tf.saved_model.load(str(base)).signatures["decode"](z=z)["images"]
    np.testing.assert_allclose(newest, result.model.decode(z), atol=1e-6)
    # TF Serving's layout: numeric version folders, each a whole SavedModel.
    # TensorFlow installs saved_model_cli beside this interpreter, which need not be on PATH.
    saved_model_cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    cli = subprocess.run([saved_model_cli, "show", "--all", "--dir", str(base / "2")],
                         capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr[-2000:]
    for text in ("signature_def['decode']", "signature_def['generate']",
                 "signature_def['encode']", "outputs['images']"):
        assert text in cli.stdout


def test_an_export_written_before_versions_is_kept_as_version_0(exported, tmp_path):
    import shutil

    result = exported["conditional"]
    old = tmp_path / "run" / "saved_model"
    shutil.copytree(os.path.join(result.model_dir, "saved_model", "1"), old)
    exporting.export_model(result.model, parse_config("--arch=mlp", "--z_dim=3",
                                                      "--classifier_weight=1"),
                           str(tmp_path / "run"), version=4)
    assert exporting.versions(str(old)) == [0, 4]
    assert (old / "0" / "saved_model.pb").is_file()
    assert os.readlink(old / "current") == "4"
    assert os.readlink(old / "saved_model.pb") == os.path.join("current", "saved_model.pb")


@pytest.mark.parametrize("name", ["conditional", "conv"])
def test_the_tf_serving_rest_body_matches_the_decode_signature(exported, name):
    """The body README shows for POST /v1/models/vae:predict, fed to the same signature."""
    model = exported[name].model
    body = {"signature_name": "decode",
            "instances": [{"z": [0.5] * model.z_dim, "label": 3} if model.conditional
                          else {"z": [0.5] * model.z_dim}]}
    body = json.loads(json.dumps(body))  # as the server receives it
    loaded = tf.saved_model.load(os.path.join(exported[name].model_dir, "saved_model"))
    signature = loaded.signatures[body["signature_name"]]
    _, specs = signature.structured_input_signature
    assert set(body["instances"][0]) == set(specs)
    inputs = {}
    for key, spec in specs.items():
        values = np.array([instance[key] for instance in body["instances"]],
                          spec.dtype.as_numpy_dtype)
        assert spec.shape.is_compatible_with(values.shape)
        inputs[key] = tf.constant(values)
    assert signature(**inputs)["images"].shape == (1, 28, 28, 1)
    # generate's inputs are scalars: the columnar "inputs" form, as README shows it.
    generate_body = json.loads(json.dumps({"signature_name": "generate", "inputs": dict(
        {"num_images": 4, "seed": 7}, **({"label": 3} if model.conditional else {}))}))
    generate = loaded.signatures[generate_body["signature_name"]]
    _, specs = generate.structured_input_signature
    assert set(generate_body["inputs"]) == set(specs)
    images = generate(**{key: tf.constant(value, spec.dtype)
                         for key, value in generate_body["inputs"].items()
                         for spec in [specs[key]]})["images"]
    assert images.shape == (4, 28, 28, 1)


@pytest.mark.parametrize("name", ["conditional", "conv"])
@pytest.mark.parametrize("quantize, tolerance", [("none", 1e-5), ("float16", 5e-3),
                                                 ("int8", 5e-2)])
def test_the_tflite_decoder_matches_the_saved_model(exported, name, quantize, tolerance):
    result = exported[name]
    path = exporting.export_tflite(result.model, result.model_dir, quantize)
    assert os.path.basename(path) == ("decoder.tflite" if quantize == "none"
                                      else f"decoder_{quantize}.tflite")
    interpreter = Interpreter(model_path=path)
    decode = interpreter.get_signature_runner("decode")
    loaded = tf.saved_model.load(os.path.join(result.model_dir, "saved_model"))
    z = np.random.default_rng(1).normal(size=(6, result.model.z_dim)).astype(np.float32)
    inputs = {"z": z}
    if result.model.conditional:
        inputs["label"] = np.arange(6, dtype=np.int32)
    expected = loaded.signatures["decode"](**{k: tf.constant(v) for k, v in inputs.items()})
    difference = np.abs(decode(**inputs)["images"] - expected["images"].numpy()).max()
    assert difference <= tolerance
    if result.model.conditional:  # no Assert op in TFLite: a bad label decodes to NaN
        images = decode(z=z[:2], label=np.array([1, 10], np.int32))["images"]
        assert np.isfinite(images[0]).all() and np.isnan(images[1]).all()


def test_signatures_check_their_inputs_and_honour_labels_and_seeds(exported, tiny_data_dir):
    from vae_tf.data import sources

    conditional = exported["conditional"].model
    loaded = tf.saved_model.load(os.path.join(exported["conditional"].model_dir, "saved_model"))
    with pytest.raises(tf.errors.InvalidArgumentError, match="label must be 0 or more"):
        loaded.signatures["decode"](z=tf.zeros((2, 3)), label=tf.constant([0, -1]))
    unconditional = tf.saved_model.load(os.path.join(exported["conv"].model_dir, "saved_model"))
    assert "label" not in unconditional.signatures["decode"].structured_input_signature[1]
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"\(z_dim=2 columns\)"):
        unconditional.signatures["decode"](z=tf.zeros((2, 3)))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"images must be a \[batch, 28, 28, 1\] float32 tensor"):
        loaded.signatures["encode"](images=tf.zeros((2, 32, 32, 1)))

    # generate: z ~ N(0, I) drawn with the seed, decoded with the asked label.
    generate = loaded.signatures["generate"]
    def generated(seed, label):
        return generate(num_images=tf.constant(6), seed=tf.constant(seed, tf.int64),
                        label=tf.constant(label))["images"].numpy()
    three = generated(7, 3)
    assert not np.allclose(three, generated(8, 3), atol=1e-3)  # another seed, other images
    assert not np.allclose(three, generated(7, 5), atol=1e-3)  # another label, other images
    z = tf.random.stateless_normal([6, 3], seed=tf.constant([7, 0], tf.int64))
    np.testing.assert_allclose(three, conditional.decode(z, tf.fill([6], 3)).numpy(), atol=1e-5)

    # encode is the Keras model's encoder and classifier.
    images = sources.read_split(tiny_data_dir, "test").float_images(8)
    encoded = loaded.signatures["encode"](images=tf.constant(images))
    z_mean, z_log_var = conditional.encode(tf.constant(images))
    np.testing.assert_allclose(encoded["z_mean"].numpy(), z_mean.numpy(), atol=1e-5)
    np.testing.assert_allclose(encoded["z_log_var"].numpy(), z_log_var.numpy(), atol=1e-5)
    np.testing.assert_allclose(
        encoded["class_probs"].numpy(),
        tf.nn.softmax(conditional.classifier(tf.constant(images), training=False)).numpy(),
        atol=1e-5)


def test_an_interrupted_export_leaves_the_previous_one_whole(exported, monkeypatch):
    result = exported["conv"]
    base = os.path.join(result.model_dir, "saved_model")
    def contents(folder):
        return {os.path.relpath(os.path.join(root, name), folder):
                open(os.path.join(root, name), "rb").read()
                for root, _, names in os.walk(folder) for name in names}
    before = contents(os.path.join(base, "1"))
    assert "saved_model.pb" in before

    class Interrupted:
        def write_out(self, path, verbose=False):
            os.makedirs(path, exist_ok=True)
            with open(os.path.join(path, "saved_model.pb"), "wb") as stream:
                stream.write(b"half")  # a write cut short
            raise KeyboardInterrupt

    monkeypatch.setattr(exporting, "serving_archive", lambda model: Interrupted())
    with pytest.raises(KeyboardInterrupt):
        exporting.export_model(result.model, parse_config("--arch=conv", "--z_dim=2"),
                               result.model_dir, overwrite=True, version=1)
    assert contents(os.path.join(base, "1")) == before
    assert tf.saved_model.load(base).signatures["decode"](z=tf.zeros((1, 2)))["images"].shape \
        == (1, 28, 28, 1)
    assert [name for name in os.listdir(result.model_dir) if name.startswith(".saved_model")] == []


@pytest.mark.parametrize("write", [
    lambda model, run: exporting.export_model(model, parse_config("--arch=conv", "--z_dim=2"),
                                              run, overwrite=True, version=1),
    lambda model, run: exporting.export_keras(model, run, version=1, overwrite=True),
    lambda model, run: exporting.export_tflite(model, run),
], ids=["saved_model", "keras", "tflite"])
def test_a_signal_just_as_the_staging_folder_is_made_leaves_none_behind(exported, write,
                                                                          monkeypatch):
    # SIGTERM's handler raises at the next bytecode, which can be the one right after the
    # staging folder's mkdir, before any `try` that would remove it has begun.
    result = exported["conv"]
    before = sorted(os.listdir(result.model_dir))
    make_folder = os.mkdir

    def interrupted_mkdir(path, *args, **kwargs):
        make_folder(path, *args, **kwargs)
        if os.path.dirname(os.path.abspath(path)) == os.path.abspath(result.model_dir):
            raise KeyboardInterrupt

    monkeypatch.setattr(os, "mkdir", interrupted_mkdir)
    with pytest.raises(KeyboardInterrupt):
        write(result.model, result.model_dir)
    monkeypatch.undo()
    assert sorted(os.listdir(result.model_dir)) == before


# Runs one export in a fresh process up to the moment the new SavedModel is written; from
# there on the export only renames, links and removes files, which a forked child can carry
# on without TensorFlow. Child N is SIGKILLed at the N-th change to the files (each rename,
# link, removal and exchange counts once as it starts and once as it ends); after each
# child the folder is moved to OUT/killN and put back as it was at that moment, until a
# child finishes the export. Prints {N: "killed" | "finished" | "failed ..."} as JSON.
# (One TensorFlow start for all the kill points: a process per kill point took 5-8 s each.)
KILLED_EXPORTS = textwrap.dedent("""
    import json, os, shutil, signal, sys, traceback
    from vae_tf import compat
    from vae_tf.run import checkpoints, exporting
    model_dir, version, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    config, state = checkpoints.restore_trained(model_dir)
    events = {"armed": False, "kill_at": 0, "count": 0}

    def outcome(status):
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
            return "killed"
        return "finished" if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 \\
            else f"failed ({status})"

    def try_each_kill_point():  # returns only in a child, which is to go on exporting
        events["armed"] = False  # the parent's own copies and renames are not counted
        try:
            armed = os.path.join(out, "armed")
            shutil.copytree(model_dir, armed, symlinks=True)
            outcomes = {}
            for kill_at in range(1, 40):
                sys.stdout.flush()
                sys.stderr.flush()
                if os.fork() == 0:
                    events.update(armed=True, kill_at=kill_at)
                    return
                outcomes[kill_at] = outcome(os.wait()[1])
                os.rename(model_dir, os.path.join(out, f"kill{kill_at}"))
                shutil.copytree(armed, model_dir, symlinks=True)
                if outcomes[kill_at] != "killed":
                    break
            print(json.dumps(outcomes))
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        sys.stdout.flush()
        os._exit(0)

    def event():
        if events["armed"] and not events["kill_at"]:
            try_each_kill_point()
        if events["armed"]:
            events["count"] += 1
            if events["count"] == events["kill_at"]:
                os.kill(os.getpid(), signal.SIGKILL)

    def counted(function):
        def wrapper(*args, **kwargs):
            event()
            result = function(*args, **kwargs)
            event()
            return result
        return wrapper

    dump = json.dump
    def arming_dump(*args, **kwargs):  # assets/config.json: the last write before the swap
        dump(*args, **kwargs)
        events["armed"] = True
    exporting.json.dump = arming_dump
    for name in ("rename", "replace", "remove", "symlink"):
        setattr(os, name, counted(getattr(os, name)))
    shutil.rmtree = counted(shutil.rmtree)
    compat.exchange_paths = counted(compat.exchange_paths)
    try:
        exporting.export_model(state.model, config, model_dir, overwrite=True, version=version)
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    os._exit(0)  # a child that finished the export (the parent never gets here)
""")


@pytest.mark.slow
@pytest.mark.parametrize("version", [1, 2], ids=["replacing version 1", "adding version 2"])
def test_a_kill_at_any_point_of_the_export_leaves_a_whole_loadable_saved_model(
        version, tiny_data_dir, tmp_path):
    import shutil

    pristine, out = str(tmp_path / "pristine"), tmp_path / "kills"
    training.train_and_evaluate(parse_config(*SMALL, "--arch=mlp", "--z_dim=2",
                                             f"--data_dir={tiny_data_dir}",
                                             f"--model_dir={pristine}"))
    work = tmp_path / "work"
    shutil.copytree(pristine, work, symlinks=True)
    out.mkdir()
    process = subprocess.run(
        [sys.executable, "-c", KILLED_EXPORTS, str(work), str(version), str(out)],
        capture_output=True, text=True, timeout=600, cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="3"))
    assert process.returncode == 0, process.stderr[-3000:]
    outcomes = json.loads(process.stdout.strip().splitlines()[-1])
    assert set(list(outcomes.values())[:-1]) == {"killed"}, outcomes
    assert list(outcomes.values())[-1] == "finished", \
        f"the export never finished within the kill points tried: {outcomes}"
    assert len(outcomes) > 2  # the swap's steps were each killed in turn
    for kill_at in outcomes:
        # Whatever the moment, saved_model/ loads whole, and so does every version folder.
        base = out / f"kill{kill_at}" / "saved_model"
        loaded = tf.saved_model.load(str(base))
        assert loaded.signatures["decode"](z=tf.zeros((1, 2)))["images"].shape == (1, 28, 28, 1)
        for number in exporting.versions(str(base)):
            tf.saved_model.load(str(base / str(number)))
        assert version in exporting.versions(str(base)) or 1 in exporting.versions(str(base))


# Bad inputs to each signature, fed in a process with only TensorFlow, as the SavedModel
# is served. The first REST body is what TF Serving makes of {"instances": [{"z": 0.5}]}:
# one scalar per instance, batched into a vector.
BAD_SERVING_INPUTS = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    path = sys.argv[1]
    loaded = tf.saved_model.load(path)
    config = json.load(open(path + "/assets/config.json"))
    z_dim, shape = config["z_dim"], config["image_shape"]
    label = {"label": tf.constant([1], tf.int32)} if config["conditional"] else {}
    one = {"label": tf.constant(1, tf.int32)} if config["conditional"] else {}
    cases = {
        "rest z scalars": ("decode", dict(z=tf.constant([0.5]), **label)),
        "z rank 3": ("decode", dict(z=tf.zeros((1, z_dim, 1)), **label)),
        "z NaN": ("decode", dict(z=tf.fill((1, z_dim), float("nan")), **label)),
        "z float64": ("decode", dict(z=tf.zeros((1, z_dim), tf.float64), **label)),
        "images 0-255": ("encode", dict(images=tf.fill((1, *shape), 255.0))),
        "images without channels": ("encode", dict(images=tf.zeros((1, *shape[:2])))),
        "images infinite": ("encode", dict(images=tf.fill((1, *shape), float("inf")))),
        "num_images a vector": ("generate", dict(num_images=tf.constant([2]),
                                                 seed=tf.constant(1, tf.int64), **one)),
    }
    if config["conditional"]:
        cases["label a vector"] = ("generate", dict(num_images=tf.constant(2),
                                                    seed=tf.constant(1, tf.int64),
                                                    label=tf.constant([1])))
    report = {}
    for name, (signature, inputs) in cases.items():
        try:
            loaded.signatures[signature](**inputs)
            report[name] = "accepted"
        except (tf.errors.InvalidArgumentError, TypeError, ValueError) as error:
            lines = [line.strip() for line in str(error).splitlines() if "must" in line
                     or "expected" in line]
            report[name] = lines[0] if lines else str(error)[:300]
    print(json.dumps(report))
""")

EXPECTED_REFUSALS = {
    "rest z scalars": "z must be a [batch, {z}] float32 matrix",
    "z rank 3": "z must be a [batch, {z}] float32 matrix",
    "z NaN": "z must be finite; it holds NaN or infinity",
    # TensorFlow's signature wrapper refuses another dtype before the graph runs.
    "z float64": "was expected to be a float tensor but is a double tensor",
    "images 0-255": "images must hold values in [0, 1]; divide 0-255 pixels by 255",
    "images without channels": "images must be a [batch, {shape}] float32 tensor",
    "images infinite": "images must be finite; it holds NaN or infinity",
    "num_images a vector": "num_images must be an int32 scalar",
    "label a vector": "label must be one class index, an int32 scalar",
}


@pytest.mark.parametrize("name", ["conditional", "conv"])
def test_every_signature_refuses_bad_inputs_naming_the_input_without_vae_tf(exported, name,
                                                                              tmp_path):
    result = exported[name]
    process = subprocess.run(
        [sys.executable, "-c", BAD_SERVING_INPUTS, os.path.join(result.model_dir, "saved_model")],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, PYTHONPATH=""),
        cwd=str(tmp_path))
    assert process.returncode == 0, process.stderr[-3000:]
    report = json.loads(process.stdout.strip().splitlines()[-1])
    shape = ", ".join(map(str, result.model.image_shape))
    for case, message in report.items():
        expected = EXPECTED_REFUSALS[case].format(z=result.model.z_dim, shape=shape)
        assert expected in message, (case, message)
