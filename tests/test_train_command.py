"""`python -m vae_tf.train` as a user runs it: output, exit codes, one-line errors."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT


def _train(*args, timeout=300):
    environment = dict(os.environ, PYTHONPATH=REPO_ROOT)
    environment.pop("TF_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "vae_tf.train", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO_ROOT, env=environment)


def _error_lines(stderr):
    return [line for line in stderr.splitlines() if line.startswith("error:")]


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


BAD_FLAGS = [
    (["--dataset=/no/such/images"],
     "error: --dataset=/no/such/images: no such folder or file; check the path."),
    (["--z_dim=0"], "error: --z_dim=0 must be at least 1."),
    (["--learning_rate=-1"], "error: --learning_rate=-1.0 must be positive."),
    (["--arch=resnet"], "error: --arch=resnet is not one of mlp, conv."),
    (["--likelihood=poisson"],
     "error: --likelihood=poisson is not one of gaussian, squared_error, bernoulli."),
    (["--batch_size=0"], "error: --batch_size=0 must be at least 1."),
    (["--binarize=dynamic", "--likelihood=squared_error"],
     "error: --binarize=dynamic needs --likelihood=bernoulli: binary pixels under a "
     "squared_error likelihood give neither sharper images nor comparable likelihoods; use "
     "--binarize=none, or --likelihood=bernoulli."),
    (["--encoder_layers=64,x"], "error: --encoder_layers=64,x must be comma-separated integers."),
    (["--strategy=multi_worker"],
     'error: --strategy=multi_worker needs TF_CONFIG set on every worker, e.g. {"cluster": '
     '{"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}.'),
    (["stray"], "error: unexpected argument 'stray'; every setting is a --flag (see --help)."),
    # absl's own parse errors, which it would print as two lines, the cause above the last.
    (["--epochs=abc"], "error: flag --epochs=abc: invalid literal for int() with base 10: "
     "'abc'; see --help for every flag."),
    (["--no_such_flag=1"], "error: Unknown command line flag 'no_such_flag'; see --help for "
     "every flag."),
    (["--flagfile=/no/such.flags"], "error: Unable to open flagfile: [Errno 2] No such file or "
     "directory: '/no/such.flags'; see --help for every flag."),
]

# Each case in a process of its own, as `python -m vae_tf.train` runs, but forked from one
# that has imported vae_tf.train already: TensorFlow's import (about 4 s) once rather than
# once per case. The child parses its own argv from a fresh state, as a new process would.
_FORKED_TRAIN = """
import json, os, sys
import vae_tf.train
cases, folder = json.loads(sys.argv[1]), sys.argv[2]
for index, args in enumerate(cases):
    pid = os.fork()
    if pid == 0:
        for stream, name in ((1, "out"), (2, "err")):
            os.dup2(os.open(os.path.join(folder, f"{index}.{name}"),
                            os.O_WRONLY | os.O_CREAT | os.O_TRUNC), stream)
        sys.argv = ["vae_tf.train", *args]
        code = 0
        try:
            vae_tf.train.entry_point()
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
"""


@pytest.fixture(scope="module")
def bad_flag_runs(tmp_path_factory):
    """(exit code, stderr, whether its --model_dir was made) of each BAD_FLAGS case."""
    folder = tmp_path_factory.mktemp("bad_flags")
    cases = [[*args, f"--model_dir={folder / f'run{index}'}"]
             for index, (args, _) in enumerate(BAD_FLAGS)]
    environment = dict(os.environ, PYTHONPATH=REPO_ROOT)
    environment.pop("TF_CONFIG", None)
    driver = subprocess.run([sys.executable, "-c", _FORKED_TRAIN, json.dumps(cases), str(folder)],
                            capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
                            env=environment)
    assert driver.returncode == 0, driver.stderr[-3000:]
    codes = [int(line) for line in driver.stdout.split()]
    assert len(codes) == len(cases), driver.stdout
    return [(code, (folder / f"{index}.err").read_text(), (folder / f"run{index}").exists())
            for index, code in enumerate(codes)]


@pytest.mark.parametrize("index", range(len(BAD_FLAGS)),
                         ids=[" ".join(args) for args, _ in BAD_FLAGS])
def test_bad_flags_fail_with_one_line_before_any_work(index, bad_flag_runs):
    returncode, stderr, made_model_dir = bad_flag_runs[index]
    assert returncode == 1
    assert _error_lines(stderr) == [BAD_FLAGS[index][1]]
    assert "Traceback" not in stderr and "FATAL" not in stderr
    assert not made_model_dir


def test_corrupt_data_file_fails_with_one_line_naming_it(tiny_data_dir, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    for name in os.listdir(tiny_data_dir):
        (folder / name).write_bytes((open(os.path.join(tiny_data_dir, name), "rb")).read())
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(b"garbage")
    result = _train(f"--data_dir={folder}", f"--model_dir={tmp_path / 'run'}")
    assert result.returncode == 1
    [line] = _error_lines(result.stderr)
    assert line.startswith(f"error: {folder}/t10k-images-idx3-ubyte.gz: not a readable gzip")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_missing_data_dir_is_an_error_not_a_fallback(tmp_path):
    result = _train("--data_dir=/nonexistent", f"--model_dir={tmp_path / 'r'}", timeout=120)
    assert result.returncode == 1
    assert _error_lines(result.stderr) == [
        "error: --data_dir=/nonexistent holds none of the IDX files of fashion_mnist "
        "(train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
        "t10k-labels-idx1-ubyte.gz), nor does /nonexistent/fashion_mnist/."]


def test_verbosity_shows_the_traceback(tmp_path):
    result = _train("--data_dir=/nonexistent", f"--model_dir={tmp_path / 'r'}",
                    "--verbosity=1", timeout=120)
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_model_dir_that_cannot_be_created_is_named(tiny_data_dir, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    result = _train(f"--data_dir={tiny_data_dir}", f"--model_dir={blocker}/run", timeout=120)
    assert result.returncode == 1
    assert _error_lines(result.stderr) == [
        f"error: --model_dir={blocker}/run cannot be created (Not a directory); choose a "
        f"writable --model_dir."]


@pytest.mark.parametrize("command", ["export", "evaluate", "visualize"])
def test_commands_on_a_run_without_a_checkpoint_fail_in_one_line(command, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    environment = dict(os.environ, PYTHONPATH=REPO_ROOT)
    for model_dir, expected in ((empty, "holds no vae_tf run"),
                                (tmp_path / "missing", "holds no vae_tf run")):
        result = subprocess.run([sys.executable, "-m", f"vae_tf.{command}",
                                 f"--model_dir={model_dir}"], capture_output=True, text=True,
                                timeout=120, cwd=REPO_ROOT, env=environment)
        assert result.returncode == 1, result.stderr[-2000:]
        [line] = _error_lines(result.stderr)
        assert str(model_dir) in line and expected in line, line
        assert "Traceback" not in result.stderr
    assert os.listdir(empty) == []
