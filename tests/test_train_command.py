"""`python -m vae_tf.train` as a user runs it: output, exit codes, one-line errors."""

import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT


def _train(*args, timeout=300):
    environment = dict(os.environ, PYTHONPATH=REPO_ROOT)
    return subprocess.run([sys.executable, "-m", "vae_tf.train", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO_ROOT, env=environment)


def _error_lines(result):
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def test_train_command_runs_an_epoch_and_reports_where_it_wrote(tiny_data_dir, tmp_path):
    model_dir = tmp_path / "run"
    result = _train("--flagfile=flags/mlp_conditional.flags", f"--data_dir={tiny_data_dir}",
                    f"--model_dir={model_dir}", "--epochs=1", "--steps_per_epoch=3")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "3/3" in result.stdout  # Keras' progress bar at the end of the epoch
    assert f"in {model_dir}" in result.stdout and "test loss" in result.stdout
    for name in ("flags.txt", "config.json", "metrics.csv", "checkpoints/checkpoint"):
        assert (model_dir / name).exists(), name
    again = _train(f"--flagfile={model_dir}/flags.txt")
    assert again.returncode == 0 and "already trained for 1 epochs" in again.stdout


@pytest.mark.parametrize("args, message", [
    (["--dataset=cifar10"], "error: --dataset=cifar10 is not one of mnist, fashion_mnist."),
    (["--z_dim=0"], "error: --z_dim=0 must be at least 1."),
    (["--learning_rate=-1"], "error: --learning_rate=-1.0 must be positive."),
    (["stray"], "error: unexpected argument 'stray'; every setting is a --flag (see --help)."),
])
def test_bad_flags_fail_with_one_line_before_any_work(args, message, tmp_path):
    result = _train(*args, f"--model_dir={tmp_path / 'run'}", timeout=60)
    assert result.returncode == 1
    assert _error_lines(result) == [message]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_corrupt_data_file_fails_with_one_line_naming_it(tiny_data_dir, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    for name in os.listdir(tiny_data_dir):
        (folder / name).write_bytes((open(os.path.join(tiny_data_dir, name), "rb")).read())
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(b"garbage")
    result = _train(f"--data_dir={folder}", f"--model_dir={tmp_path / 'run'}")
    assert result.returncode == 1
    [line] = _error_lines(result)
    assert line.startswith(f"error: {folder}/t10k-images-idx3-ubyte.gz: not a readable gzip")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_missing_data_dir_is_an_error_not_a_fallback(tmp_path):
    result = _train("--data_dir=/nonexistent", f"--model_dir={tmp_path / 'r'}", timeout=120)
    assert result.returncode == 1
    assert _error_lines(result) == [
        "error: --data_dir=/nonexistent holds none of the IDX files of fashion_mnist "
        "(train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
        "t10k-labels-idx1-ubyte.gz), nor does /nonexistent/fashion_mnist/."]


def test_verbosity_shows_the_traceback(tmp_path):
    result = _train("--data_dir=/nonexistent", f"--model_dir={tmp_path / 'r'}",
                    "--verbosity=1", timeout=120)
    assert result.returncode != 0 and "Traceback" in result.stderr
