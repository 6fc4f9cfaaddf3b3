"""Model directories on read-only file systems: one line, exit 1, nothing written.

The tests mount small tmpfs file systems, which needs root (CI runs as root);
elsewhere they are skipped with that reason.
"""

import os
import subprocess
import sys

import pytest

from conftest import FAST, REPO_ROOT


@pytest.fixture
def mount_tmpfs(tmp_path):
    """mount(folder, options) mounts a tmpfs there; every mount is undone after the test."""
    mounted = []

    def mount(folder, options):
        os.makedirs(folder, exist_ok=True)
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"mounting a tmpfs is not permitted here: {result.stderr.strip()}")
        mounted.append(folder)

    yield mount
    for folder in reversed(mounted):
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _train(tiny_data_dir, model_dir):
    return subprocess.run(
        [sys.executable, "-m", "vae_tf.train", *FAST, f"--data_dir={tiny_data_dir}",
         f"--model_dir={model_dir}", "--epochs=1", "--noprogress_bar"],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONPATH=REPO_ROOT))


def _error_lines(result):
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def test_a_model_dir_on_a_read_only_file_system_is_refused_in_one_line(
        tiny_data_dir, tmp_path, mount_tmpfs):
    mount_tmpfs(tmp_path / "ro", "ro,size=1m")
    result = _train(tiny_data_dir, tmp_path / "ro" / "run")
    assert result.returncode == 1
    assert _error_lines(result) == [
        f"error: --model_dir={tmp_path / 'ro' / 'run'} cannot be created (Read-only file "
        f"system); choose a writable --model_dir."]
    assert "Traceback" not in result.stderr and os.listdir(tmp_path / "ro") == []


def test_an_existing_model_dir_made_read_only_is_refused_and_left_alone(
        tiny_data_dir, tmp_path, mount_tmpfs):
    mount_tmpfs(tmp_path / "disk", "size=1m")
    os.makedirs(tmp_path / "disk" / "run")
    subprocess.run(["mount", "-o", "remount,ro", str(tmp_path / "disk")], check=True)
    result = _train(tiny_data_dir, tmp_path / "disk" / "run")
    assert result.returncode == 1
    assert _error_lines(result) == [
        f"error: --model_dir={tmp_path / 'disk' / 'run'} is not writable; choose a writable "
        f"--model_dir."]
    assert os.listdir(tmp_path / "disk" / "run") == []
