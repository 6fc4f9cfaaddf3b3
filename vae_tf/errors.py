"""Errors that vae_tf reports to its users as a single actionable line.

Every error a user can cause (a bad flag, a corrupt data file, a model
directory holding another run) is raised as a subclass of `VaeTfError`. The
command-line entry points print its message on one line and exit non-zero,
so the message itself must name the file or flag, say what is wrong and say
what to do about it.
"""


class VaeTfError(Exception):
    """Base class of all errors that vae_tf reports without a traceback."""


class ConfigError(VaeTfError, ValueError):
    """A flag value, or a combination of flag values, that cannot work."""


class DataError(VaeTfError):
    """A data file that is missing, corrupt or inconsistent."""


class RunDirError(VaeTfError):
    """A model directory that cannot be used for the requested run."""


class DiskFullError(VaeTfError):
    """A write failed for want of space; the message says how much is needed and where."""


class UnwritableError(VaeTfError):
    """A result that could not be written: a read-only or full folder, or no permission."""


class TrainingError(VaeTfError):
    """Training stopped because it could no longer make progress."""


class Preempted(Exception):
    """Training stopped on SIGTERM, after saving what it could; `where` says which checkpoint."""

    def __init__(self, where=None):
        super().__init__(where)
        self.where = where


class Terminated(BaseException):
    """SIGTERM outside training's steps (loading, tuning, figures, export, evaluation).

    A BaseException, as KeyboardInterrupt is, so that no `except Exception` on the
    way up swallows it; the entry point reports it in one line with exit code 143.
    """
