"""vae_tf as users install it: presets by name, console commands, a wheel outside the checkout."""

import os
import subprocess
import sys
import urllib.request

import pytest

from vae_tf import preset_flags
from vae_tf.errors import ConfigError

from conftest import REPO_ROOT, parse_config, write_dataset

PRESETS = ("conv_bernoulli", "conv_squared_error", "mlp_binarized_bernoulli", "mlp_conditional")


def test_every_flagfile_is_a_preset_with_a_description():
    names = preset_flags.names()
    assert set(PRESETS) <= set(names)
    assert sorted(names) == sorted(name[:-len(".flags")]
                                   for name in os.listdir(os.path.join(REPO_ROOT, "flags"))
                                   if name.endswith(".flags"))
    for name in names:
        description = preset_flags.description(name)
        assert description.endswith((".", ")")) and "\n" not in description


@pytest.mark.parametrize("name", PRESETS)
def test_a_preset_reads_as_its_flagfile_and_later_flags_override_it(name):
    flagfile = os.path.join(REPO_ROOT, "flags", f"{name}.flags")
    assert parse_config(f"--preset={name}") == parse_config(f"--flagfile={flagfile}")
    assert parse_config("--preset", name, "--epochs=3").epochs == 3


def test_an_unknown_preset_names_the_choices():
    with pytest.raises(ConfigError, match="--preset=mnist_gan is not one of conv_bernoulli, "):
        parse_config("--preset=mnist_gan")


def test_list_presets_prints_one_line_each():
    result = subprocess.run([sys.executable, "-m", "vae_tf.train", "--list_presets"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == preset_flags.names()


def test_a_second_checkout_reads_its_own_presets_not_the_installed_ones(tmp_path):
    """vae_tf installed (editable) from one checkout, run from another's folder: the code
    and the presets are both the second checkout's."""
    import shutil

    clone = tmp_path / "clone"
    shutil.copytree(os.path.join(REPO_ROOT, "vae_tf"), clone / "vae_tf",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(os.path.join(REPO_ROOT, "flags"), clone / "flags")
    shutil.copy(os.path.join(REPO_ROOT, "setup.cfg"), clone / "setup.cfg")
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    probe = subprocess.run(
        [sys.executable, "-c", "import vae_tf.preset_flags as p; print(p.path('mlp_conditional'))"],
        cwd=clone, env=environment, capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert os.path.realpath(probe.stdout.strip()) == str(clone / "flags" / "mlp_conditional.flags")


@pytest.mark.slow
def test_a_wheel_in_a_fresh_venv_trains_a_preset_from_an_empty_folder(tmp_path):
    """pip wheel, a new venv with nothing but the wheel and its dependencies, no checkout."""
    wheels, venv, empty = tmp_path / "wheels", tmp_path / "venv", tmp_path / "empty"
    empty.mkdir()
    # Nothing of a checkout may leak in: a PYTHONPATH naming one would make pip see
    # vae_tf as installed already.
    # PYTHONDONTWRITEBYTECODE is dropped too: with pip's --no-compile below, the venv's
    # Python compiles what it imports once and keeps it, as a user's would, instead of
    # compiling TensorFlow afresh in each of its processes.
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE")}
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels),
                    REPO_ROOT], check=True, timeout=600, env=environment)
    (wheel,) = wheels.glob("vae_tf-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300,
                   env=environment, cwd=empty)
    # --no-compile: byte-compiling TensorFlow's many modules took a third of pip's time.
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-compile", str(wheel)],
                   check=True, timeout=1200, env=environment, cwd=empty)
    data = write_dataset(tmp_path / "data", 300, 100)
    result = subprocess.run(
        [str(venv / "bin" / "vae-tf-train"), "--preset=mlp_conditional", "--epochs=1",
         f"--data_dir={data}", "--noprogress_bar"],
        cwd=empty, env=environment, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "epoch 1: test loss" in result.stdout
    # The run went into the empty folder, from the installed package, not from a checkout.
    assert sorted(os.listdir(empty)) == ["runs"]
    # The latent explorer of the installed package serves that run's page and decodes.
    (run,) = os.listdir(empty / "runs")
    explore = subprocess.Popen(
        [str(venv / "bin" / "vae-tf-explore"), f"--model_dir=runs/{run}", "--port=0"],
        cwd=empty, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = explore.stdout.readline()
        assert " at http://127.0.0.1:" in line, explore.stderr.read()[-3000:]
        url = line.split(" at ")[1].split()[0]
        with urllib.request.urlopen(url, timeout=30) as page:
            assert b"vae_tf latent explorer" in page.read()
        with urllib.request.urlopen(f"{url}api/decode?z={','.join(['0'] * 10)}&label=3",
                                    timeout=30) as image:
            assert image.headers["Content-Type"] == "image/png"
    finally:
        explore.terminate()
        explore.wait(timeout=60)
    assert explore.returncode == 143  # SIGTERM: one line, as every command
    # From Python, after a line naming where vae_tf and its presets came from, in five
    # lines: train the CVAE preset, save it as .keras ...
    snippet = (
        "import vae_tf, vae_tf.preset_flags as p\n"
        "print('from', vae_tf.__file__, p.path('mlp_conditional'))\n"
        f"config = vae_tf.Config.from_preset('mlp_cvae', epochs=1, data_dir={str(data)!r}, "
        "model_dir='runs/py', progress_bar=False)\n"
        "model = vae_tf.train(config)\n"
        "print('sevens', model.generate(7, label=7, seed=0).shape)\n"
        "model.save('cvae.keras')\n")
    # ... then, in a new process, load it, draw a chosen class and train on.
    reload = (
        "import keras, numpy as np, vae_tf\n"
        "model = keras.saving.load_model('cvae.keras')\n"
        "threes = model.generate(4, label=3, seed=1)\n"
        "before = int(model.optimizer.iterations)\n"
        f"test = vae_tf.datasets.load('mnist', data_dir={str(data)!r}).test\n"
        "model.fit(test.float_images(64), test.labels[:64], batch_size=32, verbose=0)\n"
        "print('threes', threes.shape, 'steps', before, int(model.optimizer.iterations))\n")
    for code, expected in ((snippet, "sevens (7, 28, 28, 1)"),
                           (reload, "threes (4, 28, 28, 1) steps 550 552")):
        run_python = subprocess.run([str(venv / "bin" / "python"), "-c", code], cwd=empty,
                                    env=environment, capture_output=True, text=True,
                                    timeout=900)
        assert run_python.returncode == 0, run_python.stderr[-3000:]
        assert expected in run_python.stdout, run_python.stdout
        # The package and its presets came from the venv, not from a checkout.
        origins = [line for line in run_python.stdout.splitlines() if line.startswith("from ")]
        assert len(origins) == (code is snippet), run_python.stdout
        for path in " ".join(origins).split()[1:]:
            assert path.startswith(str(venv)) and not path.startswith(REPO_ROOT), origins
