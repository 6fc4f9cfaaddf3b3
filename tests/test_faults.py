"""Faults a long run must survive: SIGKILL at any moment, and unreadable checkpoints.

The kill test runs `python -m vae_tf.train` in a subprocess, kills it with
SIGKILL at chosen moments (inside an epoch, during a checkpoint write, just
after a checkpoint), reruns the same command each time, and compares the
final weights with those of a run never interrupted.
"""

import glob
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from vae_tf.errors import Preempted, RunDirError
from vae_tf.run import training

from conftest import FAST, REPO_ROOT, SETTLED, parse_config

# Wide layers make each checkpoint about 45 MB, so that its write takes long enough to be
# caught, and every epoch gives another chance to catch one; --deterministic makes the
# weights of separate processes comparable bit for bit.
KILL_ARGS = ["--arch=mlp", "--encoder_layers=1024,1024", "--decoder_layers=1024,1024",
             "--z_dim=4", "--batch_size=32", "--steps_per_epoch=30", "--epochs=5",
             "--figures_every=1", "--noexport", "--noprogress_bar", "--deterministic",
             "--seed=7", "--eval_batch_size=60", *SETTLED]
TIMEOUT = 120
# Checkpoint bookkeeping rather than training state: how many saves this folder has seen.
NOT_TRAINING_STATE = ("_CHECKPOINTABLE_OBJECT_GRAPH", "save_counter/.ATTRIBUTES/VARIABLE_VALUE")


def _command(data_dir, model_dir, *extra):
    return [sys.executable, "-m", "vae_tf.train", *KILL_ARGS, f"--data_dir={data_dir}",
            f"--model_dir={model_dir}", *extra]


def _environment():
    return dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="3")


def _checkpoint_files(model_dir):
    return sorted(glob.glob(os.path.join(model_dir, "checkpoints", "ckpt-*.index")))


def _temporary(model_dir):
    """The folders a checkpoint is written into before it is renamed into place."""
    return set(glob.glob(os.path.join(model_dir, "checkpoints", "*_temp")))


def _run_until_killed(name, command, model_dir, ready, delay):
    """Starts `command`, polls until `ready(model_dir, checkpoints at start)`, waits `delay`
    seconds, then SIGKILLs it.

    Returns what the model directory showed at the moment of the kill.
    """
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=_environment(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + TIMEOUT
    # Left over from an earlier kill, these do not count as a write in progress.
    baseline = len(_checkpoint_files(model_dir)), _temporary(model_dir)
    try:
        while not ready(model_dir, *baseline):
            if process.poll() is not None:
                pytest.fail(f"the run ended (exit {process.returncode}) before the kill point "
                            f"{name!r}, with {len(_checkpoint_files(model_dir))} checkpoints "
                            f"(first {baseline[0]}): {process.stderr.read().decode()[-300:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"the kill point {name!r} was never reached")
            time.sleep(0.0002)
        time.sleep(delay)
        seen = {"checkpoints": len(_checkpoint_files(model_dir)),
                "writing": bool(_temporary(model_dir) - baseline[1])}
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL
    return seen


def _in_epoch_files(model_dir):
    return sorted(glob.glob(os.path.join(model_dir, "checkpoints", "in_epoch", "ckpt-*.index")))


def _recorded_in_epoch(model_dir):
    """N of the newest in-epoch checkpoint its manager has recorded, 0 if none.

    The record (the `checkpoint` file, replaced atomically) is written after the
    checkpoint's files are whole; `ckpt-N.index` itself appears as its write begins, so a
    kill timed by the index alone can land mid-write, and the run rightly resumes from
    the epoch before.
    """
    path = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints", "in_epoch"))
    return _number(path + ".index") if path else 0


def _number(path):
    """N of ckpt-N.index: epoch * steps per epoch + step for in-epoch checkpoints."""
    return int(re.search(r"ckpt-(\d+)\.index$", path).group(1))


@pytest.fixture(scope="module")
def reference_run(tiny_data_dir, tmp_path_factory):
    """A run of KILL_ARGS never interrupted, whose final weights the others must match."""
    reference = tmp_path_factory.mktemp("reference")
    done = subprocess.run(_command(tiny_data_dir, reference), cwd=REPO_ROOT, env=_environment(),
                          capture_output=True, text=True, timeout=TIMEOUT * 2)
    assert done.returncode == 0, done.stderr[-2000:]
    return reference


def _assert_same_final_weights(reference, other, epochs=5):
    expected, actual = _final_variables(str(reference)), _final_variables(str(other))
    assert expected.keys() == actual.keys() and len(expected) >= 30
    for name in expected:
        np.testing.assert_array_equal(expected[name], actual[name], err_msg=name)
    with open(reference / "metrics.csv") as a, open(other / "metrics.csv") as b:
        rows_a, rows_b = a.read().splitlines(), b.read().splitlines()
    assert len(rows_a) == len(rows_b) == epochs + 1
    # The training losses of every epoch too, the resumed one included (all but the times).
    columns = rows_a[0].split(",")
    assert rows_b[0] == rows_a[0]
    assert {"epoch_seconds", "eval_seconds", "checkpoint_seconds"} <= set(columns)
    kept = [index for index, name in enumerate(columns) if not name.endswith("_seconds")]
    for row_a, row_b in zip(rows_a[1:], rows_b[1:]):
        a_values, b_values = row_a.split(","), row_b.split(",")
        assert [a_values[i] for i in kept] == [b_values[i] for i in kept]


def _final_variables(model_dir):
    reader = tf.train.load_checkpoint(os.path.join(model_dir, "checkpoints"))
    # Every variable: the weights (reached through the optimizer), Adam's moments, the
    # epoch, and the random generators' states.
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name not in NOT_TRAINING_STATE}


@pytest.mark.slow
def test_sigkill_at_any_moment_then_rerun_gives_bitwise_the_same_weights(tiny_data_dir,
                                                                       tmp_path, reference_run):
    killed = tmp_path / "killed"
    command = _command(tiny_data_dir, killed)
    tensorboard = killed / "tensorboard" / "train"
    kills = [
        # Inside epoch 1, before any checkpoint exists.
        ("inside epoch 1", lambda d, done, temporary: tensorboard.exists(), 0.1),
        # While a checkpoint's files are being written.
        ("during a checkpoint write",
         lambda d, done, temporary: bool(_temporary(d) - temporary), 0.0),
        # Inside the epoch after one this process completed and saved (the index file
        # appears when the write is complete).
        ("inside an epoch after a checkpoint",
         lambda d, done, temporary: len(_checkpoint_files(d)) > done, 0.15),
    ]
    seen = {}
    for name, ready, delay in kills:
        seen[name] = _run_until_killed(name, command, str(killed), ready, delay)
    assert seen["inside epoch 1"]["checkpoints"] == 0, seen
    assert seen["during a checkpoint write"]["writing"], seen
    finish = subprocess.run(command, cwd=REPO_ROOT, env=_environment(), capture_output=True,
                            text=True, timeout=TIMEOUT * 2)
    assert finish.returncode == 0, finish.stderr[-2000:]
    assert "resuming after epoch" in finish.stdout
    _assert_same_final_weights(reference_run, killed)
    assert not _temporary(str(killed))  # the interrupted write's folder was cleared
    print(seen)


@pytest.mark.slow
def test_sigkill_after_an_in_epoch_checkpoint_resumes_at_its_step_bitwise(tiny_data_dir,
                                                                        tmp_path, reference_run):
    killed = tmp_path / "killed"
    command = _command(tiny_data_dir, killed, "--checkpoint_every_steps=10")
    # Killed once epoch 1 is saved and epoch 2 has saved its first in-epoch checkpoint.
    _run_until_killed("after an in-epoch checkpoint", command, str(killed),
                      lambda d, done, temporary: _recorded_in_epoch(d) > 30, 0.05)
    saved = _in_epoch_files(str(killed))
    assert saved, "no in-epoch checkpoint at the kill"
    step = int(tf.train.load_checkpoint(saved[-1][:-len(".index")]).get_tensor(
        "step/.ATTRIBUTES/VARIABLE_VALUE"))
    epoch = int(tf.train.load_checkpoint(saved[-1][:-len(".index")]).get_tensor(
        "epoch/.ATTRIBUTES/VARIABLE_VALUE"))
    assert step in (10, 20)
    finish = subprocess.run(command, cwd=REPO_ROOT, env=_environment(), capture_output=True,
                            text=True, timeout=TIMEOUT * 2)
    assert finish.returncode == 0, finish.stderr[-2000:]
    assert f"resuming in epoch {epoch + 1} at step {step}" in finish.stdout
    _assert_same_final_weights(reference_run, killed)
    assert not _in_epoch_files(str(killed))  # the last epoch's own checkpoint made it stale


@pytest.mark.slow
def test_sigterm_saves_an_in_epoch_checkpoint_exits_143_and_resumes_there(tiny_data_dir,
                                                                        tmp_path, reference_run):
    model_dir = tmp_path / "run"
    command = _command(tiny_data_dir, model_dir, "--checkpoint_every_steps=10")
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=_environment(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        # The first in-epoch checkpoint (step 10) shows the run is inside epoch 1, with 20
        # steps to go: SIGTERM then lands inside the epoch.
        while not _in_epoch_files(str(model_dir)) and time.monotonic() < deadline:
            time.sleep(0.001)
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        process.kill()
    assert process.returncode == 143, stderr[-2000:]
    assert "Traceback" not in stderr
    match = re.search(r"vae_tf: stopped by SIGTERM; saved a checkpoint at epoch 1, step (\d+): "
                      r"\S+\. Run the same command again to resume\.", stderr)
    assert match, stderr[-2000:]
    step = int(match.group(1))
    assert 10 <= step < 30
    assert _in_epoch_files(str(model_dir)) and not _checkpoint_files(str(model_dir))
    print(f"SIGTERM to exit: {took:.2f} s, saved at step {step}")
    resumed = subprocess.run(command, cwd=REPO_ROOT, env=_environment(), capture_output=True,
                             text=True, timeout=TIMEOUT * 2)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming in epoch 1 at step {step}" in resumed.stdout
    _assert_same_final_weights(reference_run, model_dir)


# Beyond the plain MLP: dropout's random state (conv), binary pixels drawn per batch, and
# several steps per call into the compiled step. Wide layers make the 25 steps left after
# the kill point last long enough for the kill to land inside the epoch.
RESUMED_KINDS = {
    "conv with dropout": ["--arch=conv", "--conv_filters=16,16,16", "--dropout=0.2",
                          "--z_dim=2"],
    # Three things one run holds (a run each took 27 s of the suite): binary pixels drawn
    # per batch; five steps per call into the compiled step; and, killed in epoch 2, which
    # trains at 0.0003, the restore sets --learning_rate, so the resumed part of the epoch
    # must get the dropped rate back from the scheduler. (Resumed batches drawn with the
    # noise of batch 0 on, or a resumed epoch without the scheduler, each fail it.)
    "dynamic binarisation, steps_per_execution 5, learning-rate drops": [
        "--arch=mlp", "--encoder_layers=2048", "--decoder_layers=2048", "--z_dim=4",
        "--binarize=dynamic", "--likelihood=bernoulli", "--steps_per_execution=5",
        "--learning_rate_drops=1:0.0003,2:0.0001"],
    # A resumed run trains in two `fit` calls; Keras would load the average into the weights
    # at the end of the first, so the rest of the epochs would train on from the average.
    # With a flow, too: its steps and the encoder's context head are in the checkpoint.
    "weight averaging, dense dropout, flow": ["--arch=mlp", "--encoder_layers=2048",
                                              "--decoder_layers=2048", "--z_dim=4",
                                              "--ema_momentum=0.9", "--dense_dropout=0.3",
                                              "--flow_steps=2", "--flow_units=16"],
    # The pseudo-inputs and their Adam moments are in the checkpoint.
    "vamp prior": ["--arch=mlp", "--encoder_layers=2048", "--decoder_layers=2048", "--z_dim=4",
                   "--prior=vamp", "--prior_components=50"],
    # The second stochastic layer's q(z1|x, z2) and p(z1|z2), under a VampPrior.
    "two stochastic layers": ["--arch=mlp", "--encoder_layers=2048", "--decoder_layers=2048",
                              "--z_dim=4", "--latent_layers=2", "--latent_layer_units=64",
                              "--prior=vamp", "--prior_components=50"],
    # The importance-weighted bound draws [K, B, Z] noise from the sampling layer's state.
    "importance-weighted training": ["--arch=mlp", "--encoder_layers=2048",
                                     "--decoder_layers=2048", "--z_dim=4", "--latent_layers=2",
                                     "--latent_layer_units=64", "--train_iw_samples=3"],
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", RESUMED_KINDS)
def test_other_models_killed_inside_an_epoch_resume_bit_for_bit(kind, tiny_data_dir, tmp_path):
    args = [sys.executable, "-m", "vae_tf.train", *SETTLED, *RESUMED_KINDS[kind],
            "--batch_size=32", "--steps_per_epoch=30", "--epochs=3", "--figures_every=0",
            "--noexport", "--noprogress_bar", "--deterministic", "--seed=5",
            "--eval_batch_size=60", f"--data_dir={tiny_data_dir}"]
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    done = subprocess.run([*args, f"--model_dir={reference}"], cwd=REPO_ROOT,
                          env=_environment(), capture_output=True, text=True, timeout=TIMEOUT * 2)
    assert done.returncode == 0, done.stderr[-2000:]
    # The last line names the loss: the ELBO's, or the bound that training minimised.
    bound = "importance-weighted bound" in done.stdout
    assert bound == ("--train_iw_samples=3" in RESUMED_KINDS[kind]), done.stdout
    command = [*args, f"--model_dir={killed}", "--checkpoint_every_steps=5"]
    _run_until_killed("after an in-epoch checkpoint of epoch 2", command, str(killed),
                      lambda d, done, temporary: _recorded_in_epoch(d) > 30, 0.0)
    finish = subprocess.run(command, cwd=REPO_ROOT, env=_environment(), capture_output=True,
                            text=True, timeout=TIMEOUT * 2)
    assert finish.returncode == 0, finish.stderr[-2000:]
    assert re.search(r"resuming in epoch 2 at step (5|10|15|20|25)", finish.stdout), \
        finish.stdout
    _assert_same_final_weights(reference, killed, epochs=3)


def test_after_the_first_signal_a_second_one_ends_the_process_at_once():
    from vae_tf.run import callbacks

    # What was installed before training (a pytest-xdist worker may have SIGINT ignored).
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    stop = callbacks.StopOnSignal()
    stop.on_train_begin()
    try:
        assert signal.getsignal(signal.SIGTERM) == stop._request
        os.kill(os.getpid(), signal.SIGTERM)  # handled: only sets the flag
        time.sleep(0.01)
        assert stop.requested == signal.SIGTERM
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        assert signal.getsignal(signal.SIGINT) == signal.SIG_DFL
        with pytest.raises(Preempted):
            stop.on_epoch_end(0)
    finally:
        stop.on_train_end()
    assert {signum: signal.getsignal(signum) for signum in before} == before


def _corrupt(prefix, how):
    data_file, index_file = prefix + ".data-00000-of-00001", prefix + ".index"
    if how == "truncated data":
        content = open(data_file, "rb").read()
        open(data_file, "wb").write(content[:len(content) // 2])
    elif how == "garbage index":
        open(index_file, "wb").write(b"\0" * 64)
    elif how == "missing data":
        os.remove(data_file)


@pytest.mark.parametrize("how", ["truncated data", "garbage index", "missing data"])
def test_unreadable_latest_checkpoint_is_reported_and_the_previous_one_used(tiny_args, how,
                                                                            capsys):
    first = training.train_and_evaluate(parse_config(*FAST, *tiny_args, "--epochs=2"))
    prefix = os.path.join(first.model_dir, "checkpoints", "ckpt-2")
    _corrupt(prefix, how)
    capsys.readouterr()
    resumed = training.train_and_evaluate(parse_config(*FAST, *tiny_args, "--epochs=3"))
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"vae_tf: warning: skipped the unreadable checkpoint {prefix} (")
    assert warnings[0].endswith("resuming from " + prefix[:-1] + "1.")
    assert (resumed.initial_epoch, resumed.epochs) == (1, 3)
    assert [row["epoch"] for row in resumed.metrics] == [0, 1, 2]
    # The rewritten epoch-2 checkpoint is whole again.
    tf.train.load_checkpoint(prefix)


def test_checkpoints_without_their_record_are_still_found(tiny_args):
    first = training.train_and_evaluate(parse_config(*FAST, *tiny_args, "--epochs=2"))
    os.remove(os.path.join(first.model_dir, "checkpoints", "checkpoint"))
    again = training.train_and_evaluate(parse_config(*FAST, *tiny_args, "--epochs=2"))
    assert again.initial_epoch == 2


def test_no_readable_checkpoint_stops_instead_of_starting_over(tiny_args):
    first = training.train_and_evaluate(parse_config(*FAST, *tiny_args, "--epochs=1"))
    prefix = os.path.join(first.model_dir, "checkpoints", "ckpt-1")
    _corrupt(prefix, "garbage index")
    with pytest.raises(RunDirError, match=r"no checkpoint in .*checkpoints can be read: "
                                          r".*ckpt-1 \(not an sstable"):
        training.train_and_evaluate(parse_config(*FAST, *tiny_args, "--epochs=2"))
    assert os.path.getsize(prefix + ".index") == 64  # left for the user to inspect


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_keeps_the_last_checkpoint_and_says_how_to_resume(tiny_data_dir,
                                                                              tmp_path,
                                                                              reference_run):
    model_dir = tmp_path / "run"
    command = _command(tiny_data_dir, model_dir)
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=_environment(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        while len(_checkpoint_files(str(model_dir))) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, stderr[-2000:]
    assert "vae_tf: interrupted." in stderr and "run the same command again to resume" in stderr
    assert "Traceback" not in stderr
    saved = _checkpoint_files(str(model_dir))
    assert saved and not _temporary(str(model_dir))
    tf.train.load_checkpoint(saved[-1][:-len(".index")])  # whole
    # The figures of every completed epoch are kept.
    completed = _number(saved[-1])
    for epoch in range(1, completed + 1):
        assert (model_dir / "figures" / f"reconstructions_epoch_{epoch:03d}.png").is_file()
    resumed = subprocess.run(command, cwd=REPO_ROOT, env=_environment(), capture_output=True,
                             text=True, timeout=TIMEOUT * 2)
    assert resumed.returncode == 0 and "resuming after epoch" in resumed.stdout
    _assert_same_final_weights(reference_run, model_dir)  # bit for bit, as the README says


def test_a_diverging_run_stops_naming_epoch_and_step_and_saves_nothing(tiny_args):
    from vae_tf.errors import TrainingError

    with pytest.raises(TrainingError, match=r"the loss became (nan|inf) in epoch 1, step \d+; "
                                            r".*Try a lower --learning_rate"):
        training.train_and_evaluate(parse_config(*FAST, *tiny_args, "--scale=log_var",
                                                 "--learning_rate=1e6", "--epochs=2"))
    model_dir = tiny_args[1].split("=", 1)[1]
    assert _checkpoint_files(model_dir) == []


def test_divergence_after_a_good_epoch_keeps_its_checkpoint_and_writes_no_other(tiny_args):
    from vae_tf.errors import TrainingError

    model_dir = tiny_args[1].split("=", 1)[1]
    training.train_and_evaluate(parse_config(*FAST, *tiny_args, "--scale=log_var", "--epochs=1"))
    folder = os.path.join(model_dir, "checkpoints")
    before = {name: open(os.path.join(folder, name), "rb").read()
              for name in os.listdir(folder)}
    assert "ckpt-1.index" in before
    # Epoch 2 resumes at a rate that makes the loss diverge.
    with pytest.raises(TrainingError, match=r"the loss became (nan|inf) in epoch 2, step \d+"):
        training.train_and_evaluate(parse_config(*FAST, *tiny_args, "--scale=log_var",
                                                 "--learning_rate=1e6", "--epochs=2"))
    after = {name: open(os.path.join(folder, name), "rb").read() for name in os.listdir(folder)}
    assert after == before  # ckpt-1 byte for byte, and no ckpt-2
