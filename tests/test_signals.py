"""SIGTERM and Ctrl-C at any moment of a run, sent to real processes.

Inside training's steps a signal saves a checkpoint first (test_faults.py);
here: during the test evaluation (the epoch finishes and saves its own), a
second signal (the process ends at once), and outside `fit` (tuning, export),
where the command still ends in one line with the README's exit code and
leaves nothing half-written. Also the in-epoch checkpoint every ten minutes of
training, on a clock the test controls.
"""

import glob
import os
import signal
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from vae_tf.run import checkpoints, training

from conftest import FAST, REPO_ROOT, parse_config

TIMEOUT = 180
STOPPED = ("vae_tf: stopped by SIGTERM; {}. Run the same command again to resume.")


def _environment(**extra):
    environment = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="3", **extra)
    environment.pop("TF_CONFIG", None)
    return environment


def _signalling(mode, *args):
    # SIGINT at its default, as at a terminal (see below: a background suite ignores it).
    return subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, "tests", "signalling_run.py"), mode, *args],
        capture_output=True, text=True, timeout=TIMEOUT, cwd=REPO_ROOT, env=_environment(),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _vae_tf_lines(stderr):
    return [line for line in stderr.splitlines() if line.startswith(("vae_tf:", "error:"))]


def test_sigterm_during_the_test_evaluation_lets_the_epoch_finish_and_save(tiny_data_dir,
                                                                           tmp_path):
    model_dir = tmp_path / "run"
    result = _signalling("term_in_test", *FAST, f"--data_dir={tiny_data_dir}",
                         f"--model_dir={model_dir}", "--epochs=3", "--steps_per_epoch=4",
                         "--eval_batch_size=20", "--noprogress_bar")
    assert result.returncode == 143, result.stderr[-2000:]
    assert _vae_tf_lines(result.stderr) == [STOPPED.format(
        "saved a checkpoint at the end of epoch 1")], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    # Epoch 1 finished: its test loss recorded, its checkpoint saved; epoch 2 never began.
    assert [os.path.basename(path) for path in
            glob.glob(str(model_dir / "checkpoints" / "ckpt-*.index"))] == ["ckpt-1.index"]
    with open(model_dir / "metrics.csv") as stream:
        rows = stream.read().splitlines()
    assert len(rows) == 2 and "val_loss" in rows[0]


def test_a_second_sigterm_ends_the_process_at_once(tiny_data_dir, tmp_path):
    model_dir = tmp_path / "run"
    result = _signalling("term_twice", *FAST, f"--data_dir={tiny_data_dir}",
                         f"--model_dir={model_dir}", "--epochs=3", "--steps_per_epoch=4",
                         "--eval_batch_size=20", "--noprogress_bar")
    assert result.returncode == -signal.SIGTERM, (result.returncode, result.stderr[-2000:])
    assert not (model_dir / "survived").exists()


@pytest.mark.parametrize("mode, code, line", [
    ("lost_term", 143, STOPPED.format("what was written before is kept whole")),
    ("int_as_type_error", 130, "vae_tf: interrupted. The checkpoint of the last completed "
                               "epoch is kept; run the same command again to resume."),
])
def test_a_signal_whose_exception_is_lost_or_turned_still_ends_the_command(
        mode, code, line, tiny_data_dir, tmp_path):
    # A signal raised inside Python code that TensorFlow's C++ calls back can vanish (the
    # run would train on) or come out as a bare TypeError (a traceback and exit 1).
    model_dir = tmp_path / "run"
    result = _signalling(mode, *FAST, f"--data_dir={tiny_data_dir}",
                         f"--model_dir={model_dir}", "--epochs=2", "--steps_per_epoch=4",
                         "--noprogress_bar")
    assert result.returncode == code, result.stderr[-2000:]
    assert _vae_tf_lines(result.stderr)[-1:] == [line], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not glob.glob(str(model_dir / "checkpoints" / "ckpt-*"))  # no epoch trained


def _until(path_pattern, process, deadline):
    while not glob.glob(path_pattern):
        if process.poll() is not None:
            pytest.fail(f"the run ended (exit {process.returncode}) before {path_pattern} "
                        f"appeared: {process.stderr.read()[-1000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"{path_pattern} never appeared")
        time.sleep(0.002)


# Moments outside training's steps, each recognised by a file that appears as it begins:
# data.json is written just before --jit_compile=auto times its throwaway models, and the
# export's staging folder as the SavedModel is traced and written.
PHASES = {
    "tuning": ("data.json", ["--jit_compile=auto", "--steps_per_execution=1", "--noexport"]),
    "export": (".saved_model.*", ["--export"]),
}


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)],
                         ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("phase", PHASES)
def test_a_signal_outside_training_steps_ends_in_one_line_leaving_nothing_half_written(
        phase, signum, code, tiny_data_dir, tmp_path):
    model_dir = tmp_path / "run"
    marker, extra = PHASES[phase]
    settled = [arg for arg in FAST if arg not in ("--nojit_compile", "--steps_per_execution=1",
                                                  "--noexport")]
    if phase == "export":
        settled += ["--nojit_compile", "--steps_per_execution=1"]
    command = [sys.executable, "-m", "vae_tf.train", *settled, *extra,
               f"--data_dir={tiny_data_dir}", f"--model_dir={model_dir}", "--epochs=1",
               "--steps_per_epoch=2", "--noprogress_bar"]
    # A cache of its own, so that tuning measures rather than reads an earlier choice.
    # SIGINT at its default in the run, as at a terminal: a suite started in the background
    # (`make test &`) hands its children SIGINT ignored, and Python then keeps it ignored.
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               env=_environment(VAE_TF_CACHE_DIR=str(tmp_path / "cache")),
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        _until(str(model_dir / marker), process, time.monotonic() + TIMEOUT)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=TIMEOUT)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == code, (process.returncode, stderr[-2000:])
    assert "Traceback" not in stderr
    lines = _vae_tf_lines(stderr)
    if signum == signal.SIGTERM:
        assert lines == [STOPPED.format("what was written before is kept whole")], stderr
    else:
        assert len(lines) == 1 and lines[0].startswith("vae_tf: interrupted."), stderr
    assert not glob.glob(str(model_dir / ".saved_model.*"))  # no staging left behind
    assert not os.path.exists(model_dir / ".lock")
    if phase == "export":
        # The epoch was trained and saved; the export is either absent or whole.
        assert glob.glob(str(model_dir / "checkpoints" / "ckpt-1.index"))
        if os.path.exists(model_dir / "saved_model"):  # absent, or whole
            tf.saved_model.load(str(model_dir / "saved_model"))


class FakeClock:
    """time.monotonic of a training whose every step takes `step_seconds`."""

    def __init__(self, step_seconds):
        self.now, self.step_seconds = 0.0, step_seconds

    def __call__(self):
        self.now += self.step_seconds
        return self.now


@pytest.mark.parametrize("step_seconds, saves", [(1.0, 0), (100.0, 4)])
def test_an_in_epoch_checkpoint_is_saved_every_ten_minutes_of_training(
        step_seconds, saves, tiny_args, monkeypatch):
    """--checkpoint_every_steps=0: one in-epoch save each 600 s of training, none sooner."""
    import keras

    assert checkpoints.DEFAULT_CHECKPOINT_SECONDS == 600
    monkeypatch.setattr(checkpoints, "training_clock", FakeClock(step_seconds))
    seen = []

    class Watch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            path = tf.train.latest_checkpoint(os.path.join(
                tiny_args[1].split("=", 1)[1], "checkpoints", "in_epoch"))
            if path and path not in seen:
                seen.append(path)

    training.train_and_evaluate(parse_config(*FAST, *tiny_args, "--epochs=1",
                                             "--steps_per_epoch=30"), observers=(Watch(),))
    assert len(seen) == saves, seen
