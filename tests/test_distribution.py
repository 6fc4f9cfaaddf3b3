"""tf.distribute: mirrored and multi-worker training match one device, and resume.

Each case runs in fresh processes, because logical devices and multi-worker
collectives must be configured before TensorFlow starts.
"""

import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO_ROOT, SETTLED

WORKER = os.path.join(REPO_ROOT, "tests", "distributed_worker.py")
TINY = ["--arch=mlp", "--encoder_layers=32", "--decoder_layers=32", "--z_dim=2",
        "--batch_size=32", "--figures_every=0", "--noprogress_bar", "--eval_batch_size=60",
        *SETTLED]
TIMEOUT = 240
# Checkpoint bookkeeping rather than training state: how many saves this folder has seen.
NOT_TRAINING_STATE = ("_CHECKPOINTABLE_OBJECT_GRAPH", "save_counter/.ATTRIBUTES/VARIABLE_VALUE")


def _environment(**extra):
    return dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="3", **extra)


def _run_worker(args, timeout=TIMEOUT, **environment):
    result = subprocess.run([sys.executable, WORKER, *args], capture_output=True, text=True,
                            timeout=timeout, env=_environment(**environment))
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _checkpoint_variables(model_dir):
    """Every variable of the newest checkpoint: weights, Adam's moments, RNG states, metrics."""
    reader = tf.train.load_checkpoint(os.path.join(model_dir, "checkpoints"))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name not in NOT_TRAINING_STATE}


def _assert_close_checkpoints(expected_dir, actual_dir, rtol):
    """Checkpoints that agree up to the summation order of a distributed run.

    Adam's second moments are compared too: Adam's steps hardly change when every
    gradient is scaled by the same factor, but those moments grow by its square,
    so a wrong loss scale shows there.
    """
    expected, actual = _checkpoint_variables(expected_dir), _checkpoint_variables(actual_dir)
    assert expected.keys() == actual.keys() and len(expected) >= 30
    for name in expected:
        np.testing.assert_allclose(actual[name], expected[name], rtol=rtol,
                                   atol=rtol * max(1e-6, float(np.abs(expected[name]).max())),
                                   err_msg=name)


# Two epochs of the real pipeline, FusedAdam, latent noise on; a conditional model, so that
# the classifier's loss is scaled over the replicas too.
COMPARED = [*TINY, "--classifier_weight=1", "--steps_per_epoch=6", "--epochs=2", "--seed=3",
            "--noexport"]


@pytest.mark.slow
def test_mirrored_training_matches_one_device_and_resumes_bit_for_bit(tiny_data_dir, tmp_path):
    runs = {"default": [["--epochs=2"]], "mirrored": [["--epochs=2"]],
            "resumed": [["--epochs=1"], ["--epochs=2"]]}  # mirrored, stopped after epoch 1
    outputs = {}
    for name, calls in runs.items():
        strategy = "default" if name == "default" else "mirrored"
        for extra in calls:
            result = _run_worker(["train", str(tmp_path / f"{name}.npz"), *COMPARED, *extra,
                                  f"--data_dir={tiny_data_dir}",
                                  f"--model_dir={tmp_path / name}", f"--strategy={strategy}"])
        outputs[name] = result.stdout
    assert "on 2 replicas" in outputs["mirrored"] and "replicas" not in outputs["default"]
    assert "on 2 replicas, resuming after epoch 1" in outputs["resumed"]
    _assert_close_checkpoints(tmp_path / "default", tmp_path / "mirrored", rtol=1e-4)
    with open(tmp_path / "default" / "metrics.csv") as a, \
            open(tmp_path / "mirrored" / "metrics.csv") as b:
        rows_a, rows_b = list(csv.DictReader(a)), list(csv.DictReader(b))
    assert len(rows_a) == len(rows_b) == 2
    for row_a, row_b in zip(rows_a, rows_b):
        for name in ("loss", "kl_loss", "val_loss"):
            assert float(row_b[name]) == pytest.approx(float(row_a[name]), rel=1e-5), name
    # Stopped and resumed, the mirrored run ends where the uninterrupted one does.
    resumed, uninterrupted = np.load(tmp_path / "resumed.npz"), np.load(tmp_path / "mirrored.npz")
    assert len(resumed.files) >= 8
    for name in resumed.files:
        np.testing.assert_array_equal(resumed[name], uninterrupted[name], err_msg=name)
    with open(tmp_path / "resumed" / "metrics.csv") as stream:
        assert len(stream.read().splitlines()) == 3


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def _start_two_workers(tiny_data_dir, model_dir, out_dir, args, mode="train", scratch=None):
    """Starts two local workers of one multi-worker run; returns their processes."""
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    extra = {"TMPDIR": str(scratch)} if scratch else {}
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        processes.append(subprocess.Popen(
            [sys.executable, WORKER, mode, str(out_dir / f"worker{index}.npz"), *args,
             f"--data_dir={tiny_data_dir}", f"--model_dir={model_dir}",
             "--strategy=multi_worker"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=_environment(TF_CONFIG=json.dumps(tf_config), **extra)))
    return processes


def _two_workers(tiny_data_dir, model_dir, out_dir, args, mode="train", expect_success=True,
                 scratch=None):
    """Runs two local workers to the end; returns their (stdout, weights), or their stderr."""
    processes = _start_two_workers(tiny_data_dir, model_dir, out_dir, args, mode, scratch)
    try:
        outputs = [process.communicate(timeout=TIMEOUT) for process in processes]
    finally:  # never leave a worker behind, whatever happened
        for process in processes:
            process.kill()
            process.wait()
    if not expect_success:
        return [(process.returncode, stderr) for process, (_, stderr) in zip(processes, outputs)]
    for process, (_, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr[-3000:]
    return [(stdout, np.load(out_dir / f"worker{index}.npz"))
            for index, (stdout, _) in enumerate(outputs)]


# The global batch of 32 is split between the two workers.
MULTI_WORKER = [*TINY, "--classifier_weight=1", "--steps_per_epoch=40", "--seed=3"]


@pytest.fixture(scope="module")
def one_device_run(tiny_data_dir, tmp_path_factory):
    """Two epochs of MULTI_WORKER on one device, which the two-worker runs must match."""
    folder = tmp_path_factory.mktemp("one_device")
    _run_worker(["train", str(folder / "weights.npz"), *MULTI_WORKER, "--epochs=2",
                 "--noexport", f"--data_dir={tiny_data_dir}", f"--model_dir={folder / 'run'}"])
    return folder / "run"


@pytest.mark.slow
def test_two_workers_match_one_device_leave_no_scratch_and_resume(tiny_data_dir, tmp_path,
                                                                   one_device_run):
    model_dir, scratch = tmp_path / "run", tmp_path / "scratch"
    scratch.mkdir()
    (chief_out, chief), (other_out, other) = _two_workers(
        tiny_data_dir, model_dir, tmp_path, [*MULTI_WORKER, "--epochs=2"], scratch=scratch)
    assert len(chief.files) >= 8
    for name in chief.files:
        np.testing.assert_array_equal(chief[name], other[name], err_msg=name)
    # The same global batches, noise and loss scale as one device, up to summation order.
    _assert_close_checkpoints(one_device_run, model_dir, rtol=1e-4)
    assert os.listdir(scratch) == []  # the other worker's checkpoints were deleted
    # Only the chief wrote into the model directory, and it trained two epochs.
    assert "on 2 replicas" in chief_out and other_out == ""
    with open(model_dir / "metrics.csv") as stream:
        assert len(stream.read().splitlines()) == 3
    assert (model_dir / "saved_model" / "saved_model.pb").is_file()
    assert sorted(name for name in os.listdir(model_dir / "checkpoints")
                  if name != "in_epoch") == [
        "checkpoint", "ckpt-1.data-00000-of-00001", "ckpt-1.index",
        "ckpt-2.data-00000-of-00001", "ckpt-2.index"]

    (chief_out, chief), (_, other) = _two_workers(tiny_data_dir, model_dir, tmp_path,
                                                  [*MULTI_WORKER, "--epochs=3"])
    assert "resuming after epoch 2" in chief_out
    for name in chief.files:
        np.testing.assert_array_equal(chief[name], other[name], err_msg=name)
    with open(model_dir / "metrics.csv") as stream:
        assert [line.split(",")[0] for line in stream.read().splitlines()] == [
            "epoch", "0", "1", "2"]


@pytest.mark.slow
def test_two_workers_killed_after_an_in_epoch_checkpoint_resume_at_its_step(
        tiny_data_dir, tmp_path, one_device_run):
    model_dir = tmp_path / "run"
    args = [*MULTI_WORKER, "--epochs=2", "--noexport", "--checkpoint_every_steps=10"]
    in_epoch = model_dir / "checkpoints" / "in_epoch"
    processes = _start_two_workers(tiny_data_dir, model_dir, tmp_path, args)
    try:
        deadline = time.monotonic() + TIMEOUT
        # An in-epoch checkpoint of epoch 2, ckpt-N with N = 40 + step, as its manager has
        # recorded it: the record is written once the files are whole, while ckpt-N.index
        # appears as the write begins, so a kill timed by the index alone can land mid-write
        # (the run then rightly resumes after epoch 1).
        while not re.search(r"ckpt-(5|6|7)0$", tf.train.latest_checkpoint(in_epoch) or ""):
            assert time.monotonic() < deadline, "no in-epoch checkpoint of epoch 2"
            assert all(process.poll() is None for process in processes), \
                processes[0].stderr.read()[-3000:]
            time.sleep(0.002)
    finally:
        for process in processes:
            process.kill()
            process.wait()
    (chief_out, _), _ = _two_workers(tiny_data_dir, model_dir, tmp_path, args)
    assert re.search(r"resuming in epoch 2 at step (10|20|30)", chief_out), chief_out
    _assert_close_checkpoints(one_device_run, model_dir, rtol=1e-4)


def test_thread_pools_are_set_before_tensorflow_starts_and_warned_about_after(capsys):
    script = ("import tensorflow as tf; from vae_tf.run import distribution; "
              "distribution.configure_threads(1, 3); "
              "print(tf.config.threading.get_intra_op_parallelism_threads(), "
              "tf.config.threading.get_inter_op_parallelism_threads())")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=_environment(), timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "3"]
    assert "warning" not in result.stderr

    import tensorflow as tf

    from vae_tf.run import distribution
    tf.constant(1.0) + 1.0  # this process's runtime has started
    current = tf.config.threading.get_intra_op_parallelism_threads()
    distribution.configure_threads(current, 0)  # what is already set needs no change
    assert capsys.readouterr().err == ""
    distribution.configure_threads(current + 1, 0)
    assert f"--intra_op_threads={current + 1} not applied" in capsys.readouterr().err
    assert tf.config.threading.get_intra_op_parallelism_threads() == current


@pytest.mark.slow
def test_multi_worker_fit_still_needs_the_keras_20585_workarounds(tiny_data_dir, tmp_path):
    # When this fails, Keras fixed keras-team/keras#20585: remove
    # compat.SkipSymbolicBuildWhenBuilt and compat.step_logs.
    outcomes = _two_workers(tiny_data_dir, tmp_path / "run", tmp_path, [*TINY, "--epochs=1"],
                            mode="train_without_workarounds", expect_success=False)
    assert any(returncode != 0 for returncode, _ in outcomes), \
        "multi-worker fit works without the keras-team/keras#20585 workarounds"
    # The failure is the bug's own: fit tries to convert a per-replica batch to a tensor.
    assert any("PerReplica" in stderr for _, stderr in outcomes)


@pytest.mark.slow
def test_sigterm_to_every_worker_ends_each_in_one_line_keeping_the_last_checkpoint(
        tiny_data_dir, tmp_path):
    """What a scheduler does to a multi-worker job: SIGTERM to each of its processes."""
    model_dir = tmp_path / "run"
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    command = [sys.executable, "-m", "vae_tf.train", *MULTI_WORKER, "--epochs=50",
               "--steps_per_epoch=400", "--noexport", f"--data_dir={tiny_data_dir}",
               f"--model_dir={model_dir}", "--strategy=multi_worker"]
    processes = [subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=_environment(TF_CONFIG=json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})))
        for index in range(2)]
    try:
        deadline = time.monotonic() + TIMEOUT
        while not (model_dir / "checkpoints" / "ckpt-1.index").exists():
            assert time.monotonic() < deadline, "epoch 1 never ended"
            assert all(process.poll() is None for process in processes), \
                processes[0].stderr.read()[-3000:]
            time.sleep(0.01)
        time.sleep(1.0)  # inside epoch 2
        # A moment apart, as a scheduler's signals may be: the chief stops at its next step
        # while the other worker waits in that step's collective for it.
        processes[0].send_signal(signal.SIGTERM)
        time.sleep(0.3)
        processes[1].send_signal(signal.SIGTERM)
        outputs = [process.communicate(timeout=120) for process in processes]
    finally:
        for process in processes:
            process.kill()
            process.wait()
    for process, (_, stderr) in zip(processes, outputs):
        assert process.returncode == 143, (process.returncode, stderr[-3000:])
        assert "Traceback" not in stderr
        assert [line for line in stderr.splitlines() if line.startswith("vae_tf:")] == [
            "vae_tf: stopped by SIGTERM; what was written before is kept whole. Run the same "
            "command again to resume."], stderr[-3000:]
    names = sorted(os.listdir(model_dir / "checkpoints"))
    assert "ckpt-1.index" in names and "ckpt-2.index" not in names, names
