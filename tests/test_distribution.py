"""tf.distribute: a mirrored step equals a single-device step; two workers agree.

Each case runs in fresh processes, because logical devices and multi-worker
collectives must be configured before TensorFlow starts.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT

WORKER = os.path.join(REPO_ROOT, "tests", "distributed_worker.py")
TINY = ["--arch=mlp", "--encoder_layers=32", "--decoder_layers=32", "--z_dim=2",
        "--batch_size=32", "--figures_every=0", "--noprogress_bar", "--eval_batch_size=60"]
TIMEOUT = 240


def _environment(**extra):
    return dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="3", **extra)


def test_a_mirrored_step_over_two_devices_matches_a_single_device_step(tmp_path):
    out = tmp_path / "weights.npz"
    result = subprocess.run([sys.executable, WORKER, "mirrored_step", str(out), *TINY,
                             "--classifier_weight=1"], capture_output=True, text=True,
                            timeout=TIMEOUT, env=_environment())
    assert result.returncode == 0, result.stderr[-3000:]
    weights = np.load(out)
    assert (int(weights["default_replicas"]), int(weights["mirrored_replicas"])) == (1, 2)
    # Metrics are aggregated over the replicas: the same mean loss.
    assert float(weights["mirrored_loss"]) == pytest.approx(float(weights["default_loss"]),
                                                            rel=1e-5)
    names = [key[len("default_"):] for key in weights.files
             if key.startswith("default_") and key[len("default_"):].isdigit()]
    assert len(names) >= 10
    for name in names:
        np.testing.assert_allclose(weights[f"mirrored_{name}"], weights[f"default_{name}"],
                                   rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.slow
def test_mirrored_training_over_two_devices_resumes(tiny_data_dir, tmp_path):
    model_dir = tmp_path / "run"
    for epochs, expected in ((1, "on 2 replicas"), (2, "on 2 replicas, resuming after epoch 1")):
        result = subprocess.run(
            [sys.executable, WORKER, "train", str(tmp_path / "weights.npz"), *TINY,
             f"--data_dir={tiny_data_dir}", f"--model_dir={model_dir}", f"--epochs={epochs}",
             "--strategy=mirrored", "--noexport"],
            capture_output=True, text=True, timeout=TIMEOUT, env=_environment())
        assert result.returncode == 0, result.stderr[-3000:]
        assert expected in result.stdout
    with open(model_dir / "metrics.csv") as stream:
        assert len(stream.read().splitlines()) == 3


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def _two_workers(tiny_data_dir, model_dir, out_dir, epochs, mode="train", expect_success=True):
    """Runs two local workers to the end; returns their (stdout, weights), or their stderr."""
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    processes = []
    try:
        for index in range(2):
            tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker",
                                                                  "index": index}}
            processes.append(subprocess.Popen(
                [sys.executable, WORKER, mode, str(out_dir / f"worker{index}.npz"), *TINY,
                 f"--data_dir={tiny_data_dir}", f"--model_dir={model_dir}", f"--epochs={epochs}",
                 "--strategy=multi_worker"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                env=_environment(TF_CONFIG=json.dumps(tf_config))))
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


@pytest.mark.slow
def test_two_workers_train_two_epochs_agree_on_the_weights_and_resume(tiny_data_dir, tmp_path):
    model_dir = tmp_path / "run"
    (chief_out, chief), (other_out, other) = _two_workers(tiny_data_dir, model_dir, tmp_path, 2)
    assert len(chief.files) >= 8
    for name in chief.files:
        np.testing.assert_array_equal(chief[name], other[name], err_msg=name)
    # Only the chief wrote into the model directory, and it trained two epochs.
    assert "on 2 replicas" in chief_out and other_out == ""
    with open(model_dir / "metrics.csv") as stream:
        assert len(stream.read().splitlines()) == 3
    assert (model_dir / "saved_model" / "saved_model.pb").is_file()
    assert sorted(os.listdir(model_dir / "checkpoints")) == [
        "checkpoint", "ckpt-1.data-00000-of-00001", "ckpt-1.index",
        "ckpt-2.data-00000-of-00001", "ckpt-2.index"]

    (chief_out, chief), (_, other) = _two_workers(tiny_data_dir, model_dir, tmp_path, 3)
    assert "resuming after epoch 2" in chief_out
    for name in chief.files:
        np.testing.assert_array_equal(chief[name], other[name], err_msg=name)
    with open(model_dir / "metrics.csv") as stream:
        assert [line.split(",")[0] for line in stream.read().splitlines()] == [
            "epoch", "0", "1", "2"]


def test_thread_pools_are_set_before_tensorflow_starts_and_warned_about_after(capsys):
    script = ("import tensorflow as tf; from vae_tf import distribution; "
              "distribution.configure_threads(1, 3); "
              "print(tf.config.threading.get_intra_op_parallelism_threads(), "
              "tf.config.threading.get_inter_op_parallelism_threads())")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=_environment(), timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "3"]
    assert "warning" not in result.stderr

    import tensorflow as tf

    from vae_tf import distribution
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
    outcomes = _two_workers(tiny_data_dir, tmp_path / "run", tmp_path, 1,
                            mode="train_without_workarounds", expect_success=False)
    assert any(returncode != 0 for returncode, _ in outcomes), \
        "multi-worker fit works without the keras-team/keras#20585 workarounds"
    # The failure is the bug's own: fit tries to convert a per-replica batch to a tensor.
    assert any("PerReplica" in stderr for _, stderr in outcomes)
