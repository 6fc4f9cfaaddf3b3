"""One run per model directory: a second run is refused and changes nothing; stale locks go."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from vae_tf.errors import RunDirError
from vae_tf.evaluation import elbo_iwae
from vae_tf.run import run_lock, training

from conftest import FAST, REPO_ROOT, parse_config


def _snapshot(folder):
    return {os.path.join(root, name): (os.path.getmtime(os.path.join(root, name)),
                                       os.path.getsize(os.path.join(root, name)))
            for root, _, names in os.walk(folder) for name in names}


def test_a_second_run_into_a_running_folder_is_refused_and_changes_nothing(tiny_args):
    model_dir = tiny_args[1].split("=", 1)[1]
    first = subprocess.Popen(
        [sys.executable, "-m", "vae_tf.train", *FAST, *tiny_args, "--epochs=400"],
        cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=REPO_ROOT))
    try:
        deadline = time.monotonic() + 120
        while not os.path.isfile(os.path.join(model_dir, "metrics.csv")):
            assert first.poll() is None, first.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline
            time.sleep(0.1)
        first.send_signal(signal.SIGSTOP)  # holds its lock, writes nothing meanwhile
        before = _snapshot(model_dir)
        with pytest.raises(RunDirError) as error:
            training.train_and_evaluate(parse_config(*FAST, *tiny_args, "--epochs=400"))
        message = str(error.value)
        assert f"in use by another vae_tf run (process {first.pid} on " \
               f"{socket.gethostname()}" in message and "\n" not in message
        with pytest.raises(RunDirError, match="in use by a running vae_tf run"):
            training.train_and_evaluate(parse_config(*FAST, *tiny_args, "--overwrite"))
        assert _snapshot(model_dir) == before
    finally:
        first.send_signal(signal.SIGCONT)
        first.kill()
        first.wait()


def test_a_lock_left_by_a_dead_process_is_taken_over_and_released(tiny_args, capsys):
    model_dir = tiny_args[1].split("=", 1)[1]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    os.makedirs(model_dir)
    with open(os.path.join(model_dir, run_lock.LOCK_FILE), "w") as stream:
        json.dump({"pid": dead.pid, "host": socket.gethostname()}, stream)
    result = training.train_and_evaluate(parse_config(*FAST, *tiny_args, "--epochs=1"))
    assert result.epochs == 1
    assert "took over" in capsys.readouterr().out
    assert not os.path.exists(os.path.join(model_dir, run_lock.LOCK_FILE))


def test_a_lock_from_another_host_is_respected_but_readers_need_none(tiny_args):
    model_dir = tiny_args[1].split("=", 1)[1]
    training.train_and_evaluate(parse_config(*FAST, *tiny_args, "--epochs=1"))
    with open(os.path.join(model_dir, run_lock.LOCK_FILE), "w") as stream:
        json.dump({"pid": 1, "host": "another-host", "started": "now"}, stream)
    with pytest.raises(RunDirError, match="process 1 on another-host"):
        training.train_and_evaluate(parse_config(*FAST, *tiny_args, "--epochs=2"))
    # evaluate reads the newest checkpoint while the folder is locked.
    result = elbo_iwae.evaluate_run(model_dir, num_samples=4, progress=False, judged=False)
    assert result["epoch"] == 1


# One contender: waits for the shared start time, tries the lock, says whether it got it,
# and holds it until the others have tried.
CONTENDER = """
import sys, time
from vae_tf.run import run_lock
from vae_tf.errors import RunDirError
print("ready", flush=True)
for line in sys.stdin:  # one round per line: the folder, and when to try
    model_dir, start = line.split()
    while time.time() < float(start):
        pass
    try:
        path = run_lock.acquire(model_dir)
    except RunDirError:
        print("refused", flush=True)
    else:
        print("got it", flush=True)
        sys.stdin.readline()  # held until every other contender has answered
        run_lock.release(path)
        print("released", flush=True)
"""


def _answer(process):
    """The contender's next answer, past vae_tf's notes ("took over ...")."""
    while (line := process.stdout.readline().strip()).startswith("vae_tf:"):
        pass
    return line


@pytest.mark.slow
def test_runs_starting_together_on_a_stale_lock_never_both_get_it(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    environment = dict(os.environ, PYTHONPATH=REPO_ROOT)
    contenders = [subprocess.Popen([sys.executable, "-c", CONTENDER], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True, env=environment,
                                   cwd=REPO_ROOT) for _ in range(4)]
    try:
        # Python and vae_tf load first, so that every round starts them together.
        assert [process.stdout.readline().strip() for process in contenders] == ["ready"] * 4
        for round_number in range(15):
            model_dir = tmp_path / f"round{round_number}"
            model_dir.mkdir()
            with open(model_dir / run_lock.LOCK_FILE, "w") as stream:  # left by a crash
                json.dump({"pid": dead.pid, "host": socket.gethostname()}, stream)
            start = time.time() + 0.2
            for process in contenders:
                process.stdin.write(f"{model_dir} {start}\n")
                process.stdin.flush()
            answers = [_answer(process) for process in contenders]
            assert sorted(answers) == ["got it", "refused", "refused", "refused"], (
                round_number, answers)
            winner = contenders[answers.index("got it")]
            winner.stdin.write("release\n")
            winner.stdin.flush()
            assert _answer(winner) == "released"
            assert not os.path.exists(model_dir / run_lock.LOCK_FILE)
    finally:
        for process in contenders:
            process.stdin.close()
            process.wait(timeout=60)
