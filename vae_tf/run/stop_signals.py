"""The stop signals (Ctrl-C's SIGINT, a scheduler's SIGTERM) a vae_tf command has received.

A command's handler (`cli`) raises KeyboardInterrupt or `Terminated` wherever the program
is. When that is Python code which TensorFlow's C++ called back (a type check inside its
nest utilities, say), the exception can be lost, so that the work carries on, or come
out as another error. The handler therefore also records the signal here: the entry
point reports a recorded signal whatever error it ended in, and the long phases stop at
their next boundary (`stop_if_received`): tuning between its timed calls, training as
it begins, the evaluation between its batches.
"""

import signal

from vae_tf.errors import Terminated

_received: list = []


def record(signum: int) -> None:
    _received.append(signum)


def first():
    """The first stop signal received, or None."""
    return _received[0] if _received else None


def stop_if_received() -> None:
    """Raises what the first stop signal raises (KeyboardInterrupt, `Terminated`), if any."""
    if _received:
        raise Terminated() if _received[0] == signal.SIGTERM else KeyboardInterrupt()
