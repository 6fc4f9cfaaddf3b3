"""Model directories on read-only and full file systems.

A read-only folder gets one line, exit 1, nothing written. A disk that fills up
during training gets one line saying how much room a checkpoint needs, the
last checkpoint stays whole, and a rerun with more room resumes. The tests
mount small tmpfs file systems, which needs root: CI runs as root, and there a
mount that fails is a failure; elsewhere they are skipped with that reason.
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
            message = f"mounting a tmpfs is not permitted here: {result.stderr.strip()}"
            if os.environ.get("CI"):  # CI runs as root: a failed mount there is a failure
                pytest.fail(message)
            pytest.skip(message)
        mounted.append(folder)

    yield mount
    for folder in reversed(mounted):
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _train(tiny_data_dir, model_dir, *extra):
    return subprocess.run(
        [sys.executable, "-m", "vae_tf.train", *FAST, f"--data_dir={tiny_data_dir}",
         f"--model_dir={model_dir}", "--epochs=1", "--noprogress_bar", *extra],
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


def test_a_disk_that_fills_up_stops_in_one_line_keeps_the_last_checkpoint_and_resumes(
        tiny_data_dir, tmp_path, mount_tmpfs):
    from vae_tf.run import checkpoints

    disk = tmp_path / "disk"
    mount_tmpfs(disk, "size=24m")
    model_dir = disk / "run"
    # Checkpoints of about 9 MB: two fit in 24 MB, the third does not.
    wide = ["--encoder_layers=512", "--decoder_layers=512", "--steps_per_epoch=4",
            "--epochs=4", "--keep_checkpoints=3"]
    result = _train(tiny_data_dir, model_dir, *wide)
    assert result.returncode == 1, result.stderr[-2000:]
    lines = _error_lines(result)
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert lines[0].startswith(f"error: {model_dir}: no space left on the device ("), lines
    assert "this model needs about 9.2 MB per checkpoint" in lines[0], lines
    assert "run the same command again" in lines[0]
    # The last checkpoint that was written is whole and restores.
    config, state = checkpoints.restore_trained(str(model_dir))
    assert state.completed_epochs == 2
    assert not os.path.exists(model_dir / ".lock")

    subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
    resumed = _train(tiny_data_dir, model_dir, *wide)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming after epoch 2" in resumed.stdout
    _, state = checkpoints.restore_trained(str(model_dir))
    assert state.completed_epochs == 4
    with open(model_dir / "metrics.csv") as stream:
        assert [line.split(",")[0] for line in stream.read().splitlines()[1:]] == [
            "0", "1", "2", "3"]
    assert not [name for name in os.listdir(model_dir / "checkpoints") if "_temp" in name]


def test_evaluate_on_a_read_only_run_prints_its_result_then_one_line(
        tiny_data_dir, tmp_path, mount_tmpfs):
    disk = tmp_path / "disk"
    mount_tmpfs(disk, "size=16m")
    trained = _train(tiny_data_dir, disk / "run", "--steps_per_epoch=2")
    assert trained.returncode == 0, trained.stderr[-2000:]
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    result = subprocess.run(
        [sys.executable, "-m", "vae_tf.evaluate", f"--model_dir={disk / 'run'}",
         "--iw_samples=4", "--num_examples=10", "--nojudge"],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONPATH=REPO_ROOT))
    assert result.returncode == 1, result.stderr[-2000:]
    assert '"nll_iwae_nats"' in result.stdout  # the work is not lost
    assert _error_lines(result) == [
        f"error: {disk / 'run'}: cannot be written (Read-only file system), so the evaluation "
        f"printed above was not saved; make the folder writable or free some space, then run "
        f"the command again."], result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_an_export_on_a_full_disk_is_one_line_and_keeps_the_previous_export_whole(
        tiny_data_dir, tmp_path, mount_tmpfs):
    import glob

    import tensorflow as tf

    disk = tmp_path / "disk"
    mount_tmpfs(disk, "size=16m")
    trained = _train(tiny_data_dir, disk / "run", "--steps_per_epoch=2", "--export")
    assert trained.returncode == 0, trained.stderr[-2000:]
    # Leave about 64 KB free: less than one export of this model.
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with open(disk / "filler", "wb") as stream:
        stream.write(b"\0" * (free - 64 * 1024))
    result = subprocess.run(
        [sys.executable, "-m", "vae_tf.export", f"--model_dir={disk / 'run'}", "--overwrite"],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONPATH=REPO_ROOT))
    assert result.returncode == 1, result.stderr[-2000:]
    assert _error_lines(result) == [
        f"error: {disk / 'run'}: cannot be written (no space left on the device), so the new "
        f"export (any earlier one is kept whole) was not saved; make the folder writable or "
        f"free some space, then run the command again."], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not glob.glob(str(disk / "run" / ".saved_model.*"))
    loaded = tf.saved_model.load(str(disk / "run" / "saved_model"))
    assert loaded.signatures["decode"](z=tf.zeros((1, 2)))["images"].shape == (1, 28, 28, 1)
