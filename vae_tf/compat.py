"""Every workaround of a library bug and every use of a private API, in one place.

Each entry names why it exists and the versions it was tested with
(`TESTED_WITH`, the upper bounds pinned in setup.cfg); `tests/test_compat.py`
has a test per entry that fails when the entry is no longer needed or no
longer works, so that it can be removed or mended rather than linger.
"""

import contextlib
import ctypes
import errno
import functools
import logging
import os

import keras
import numpy as np
import tensorflow as tf

TESTED_WITH = {"tensorflow": "2.21", "keras": "3.15"}

# --- keras-team/keras#20585: Keras 3's fit under MultiWorkerMirroredStrategy -----------------


class SkipSymbolicBuildWhenBuilt:
    """A mixin for a keras.Model that is built, and whose optimizer is built, before `fit`.

    Under a tf.distribute strategy, Keras 3's fit first averages one batch across
    the replicas to build the model symbolically, which fails under
    MultiWorkerMirroredStrategy (keras-team/keras#20585). A model built beforehand
    has nothing left to build, so the step is skipped.
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if self.built and self.optimizer is not None and self.optimizer.built:
            return
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)


def step_logs(logs: dict) -> dict:
    """A train or test step's logs, shaped so that Keras can gather them across workers.

    Under MultiWorkerMirroredStrategy Keras 3 concatenates each worker's step logs
    along axis 0, which scalars lack (keras-team/keras#20585); they become [1].
    """
    if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
        return {name: tf.reshape(value, [1]) for name, value in logs.items()}
    return logs


def log_value(value) -> float:
    """A step log as a float, whether a scalar or the [1] of `step_logs`."""
    return float(np.mean(value))


# --- Keras' private optimizer slots, for FusedAdam -------------------------------------------


@functools.cache
def has_adam_slots() -> bool:
    """Whether keras.optimizers.Adam keeps its moments where `adam_slots` reads them."""
    optimizer = keras.optimizers.Adam()
    optimizer.build([keras.Variable(np.zeros(1, np.float32))])
    return all(hasattr(optimizer, name)
               for name in ("_get_variable_index", "_momentums", "_velocities"))


def adam_slots(optimizer: keras.optimizers.Adam, variable):
    """(first moment, second moment) variables of `variable` in a Keras Adam optimizer."""
    index = optimizer._get_variable_index(variable)
    return optimizer._momentums[index], optimizer._velocities[index]


# --- TensorFlow's profiler trace format, for vae_tf.benchmark --profile_dir ------------------


def xplane_pb2():
    """The protobuf module of TensorFlow's profiler traces (XSpace), a private module."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2 as module

    return module


# --- The TFLite converter and Keras 3 weights ------------------------------------------------


def frozen(concrete_function):
    """`concrete_function` with every variable it reads folded into a constant.

    On TensorFlow 2.21 the TFLite converter keeps a Keras 3 model's weights as
    resource variables (VAR_HANDLE ops) that the interpreter never initialises,
    so the decoder outputs NaN; converting a frozen function gives a
    self-contained flatbuffer. The function is TensorFlow's own freezer, from a
    private module.
    """
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    return convert_variables_to_constants_v2(concrete_function)


# --- Truncated checkpoints -------------------------------------------------------------------

# A checkpoint whose .data file is cut short fails to restore with an IndexError raised by
# TensorFlow's Python reader rather than an OpError; both mean "unreadable", not "foreign".
UNREADABLE_CHECKPOINT_ERRORS = (tf.errors.OpError, IndexError)


# --- Python's os module has no renameat2 (Linux 3.15+, glibc 2.28+) -------------------------

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def exchange_paths(first: str, second: str) -> None:
    """Swaps two paths in one atomic step, so that `second` never stops existing.

    Linux's renameat2(RENAME_EXCHANGE), which Python's `os` does not offer,
    through ctypes. Where it is missing (another system, a file system without
    it), two renames with `second` moved aside for an instant, and put back if
    the second rename fails.
    """
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        renameat2 = None
    if renameat2 is not None:
        if renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second),
                     _RENAME_EXCHANGE) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise OSError(code, os.strerror(code), second)
    aside = f"{second}.exchanging"
    os.rename(second, aside)
    try:
        os.rename(first, second)
    except BaseException:
        os.rename(aside, second)
        raise
    os.rename(aside, first)


# --- TensorFlow's "excessive retracing" warning counts traces per Python code object --------

# tf.function keys its retracing statistics by the wrapped function's code object
# (`_get_key_for_call_stats` in tensorflow/python/eager/polymorphic_function/
# polymorphic_function.py), so several tf.functions made from one lambda, each traced
# once (the IWAE's candidate call shapes, timed one after another), read as one function
# retraced again and again, and TensorFlow warns of a fault that is not there.
RETRACING_WARNING = "triggered tf.function retracing"


class _NotRetracing(logging.Filter):
    def filter(self, record):
        return RETRACING_WARNING not in record.getMessage()


@contextlib.contextmanager
def functions_of_one_code():
    """A block that makes tf.functions of one code on purpose, without that warning."""
    quiet = _NotRetracing()
    tf.get_logger().addFilter(quiet)
    try:
        yield
    finally:
        tf.get_logger().removeFilter(quiet)
