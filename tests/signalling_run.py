"""Runs `python -m vae_tf.train ARGS...` as a process that signals itself at a chosen moment.

`python signalling_run.py MODE ARGS...`, for the signal tests of test_signals.py:

- `term_in_test`: SIGTERM to itself when epoch 1's test evaluation begins;
- `term_twice`: the same, then a second SIGTERM at the evaluation's next batch,
  after which it writes `<model_dir>/survived` if it is still alive a second later;
- `lost_term`: SIGTERM to itself just before training, whose exception is then lost, as
  when it is raised inside Python code that TensorFlow's C++ called back;
- `int_as_type_error`: SIGINT to itself just before training, whose KeyboardInterrupt
  comes out as the bare TypeError TensorFlow's nest utilities made of it once.

The signals go through the operating system to this process, as a scheduler's
would; only their timing comes from inside, where the test evaluation can be seen.
"""

import os
import signal
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402


class SignalAtTest(keras.callbacks.Callback):
    def __init__(self, mode: str, model_dir: str):
        super().__init__()
        self.mode, self.model_dir, self.sent = mode, model_dir, 0

    def on_test_begin(self, logs=None):
        if self.sent == 0:
            self.sent = 1
            os.kill(os.getpid(), signal.SIGTERM)

    def on_test_batch_end(self, batch, logs=None):
        if self.mode == "term_twice" and self.sent == 1:
            self.sent = 2
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1.0)
            with open(os.path.join(self.model_dir, "survived"), "w") as stream:
                stream.write("the second SIGTERM did not end the process\n")


def signal_lost_or_turned(mode: str) -> None:
    from vae_tf.errors import Terminated

    try:
        os.kill(os.getpid(), signal.SIGTERM if mode == "lost_term" else signal.SIGINT)
        time.sleep(1.0)  # the handler raises here
    except Terminated:
        pass  # lost
    except KeyboardInterrupt:
        raise TypeError() from None


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    model_dir = next(arg.split("=", 1)[1] for arg in args if arg.startswith("--model_dir="))
    import importlib

    from vae_tf.run import training

    train = importlib.import_module("vae_tf.train")  # the command's module, not vae_tf.train()

    plain = training.train_and_evaluate

    def train_and_evaluate(config):
        if mode in ("lost_term", "int_as_type_error"):
            signal_lost_or_turned(mode)
            return plain(config)
        return plain(config, observers=(SignalAtTest(mode, model_dir),))

    training.train_and_evaluate = train_and_evaluate
    sys.argv = ["vae_tf.train", *args]
    train.entry_point()


if __name__ == "__main__":
    main()
