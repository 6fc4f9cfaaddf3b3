"""Writing files so that readers only ever see the old version or the whole new one,
reporting a full disk as one line that says how much room is needed, and where
vae_tf keeps its cache."""

import contextlib
import errno
import os
import secrets
import shutil

from vae_tf.errors import DiskFullError, UnwritableError

_FULL = (errno.ENOSPC, errno.EDQUOT)
_UNWRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)
CACHE_ENV = "VAE_TF_CACHE_DIR"


def cache_dir() -> str:
    """vae_tf's cache (judges, tuning): $VAE_TF_CACHE_DIR, else ~/.cache/vae_tf (or
    $XDG_CACHE_HOME/vae_tf)."""
    if os.environ.get(CACHE_ENV):
        return os.environ[CACHE_ENV]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "vae_tf")


def is_disk_full(error: BaseException) -> bool:
    """Whether `error` (an OSError, or TensorFlow's error for a failed write) is a full disk."""
    return getattr(error, "errno", None) in _FULL or "No space left on device" in str(error)


def _megabytes(size: int) -> str:
    return f"{size / 2**20:,.1f} MB"


@contextlib.contextmanager
def reporting_full_disk(folder: str, needed=lambda: None, what: str = "the run"):
    """Turns a full-disk error inside the block into a one-line DiskFullError.

    `needed()` gives the bytes that one write of the block needs (a checkpoint,
    say), for the message; TensorFlow's checkpoint writes and Keras' files leave
    the previous version whole when they fail, so the run resumes once there is room.
    """
    try:
        yield
    except Exception as error:
        if not is_disk_full(error):
            raise
        existing = os.path.abspath(folder)
        while not os.path.isdir(existing):
            existing = os.path.dirname(existing)
        free = shutil.disk_usage(existing).free
        size = needed()
        need = f"{what} needs about {_megabytes(size)} per checkpoint" if size else ""
        raise DiskFullError(
            f"{folder}: no space left on the device ({_megabytes(free)} free"
            + (f"; {need}" if need else "") + "). Free some space, then run the same command "
            "again: it resumes from the last checkpoint, which is whole.") from None


@contextlib.contextmanager
def reporting_unwritable(folder: str, what: str):
    """Turns a failed write inside the block (a read-only or full file system, no permission)
    into one line that names `folder` and says what was not saved (`what`)."""
    try:
        yield
    except Exception as error:
        code = getattr(error, "errno", None)
        text = str(error)
        if is_disk_full(error):
            reason = "no space left on the device"
        elif code in _UNWRITABLE or "Read-only file system" in text or \
                "Permission denied" in text:
            reason = os.strerror(code) if code in _UNWRITABLE else text.strip().splitlines()[0]
        else:
            raise
        raise UnwritableError(f"{folder}: cannot be written ({reason}), so {what} was not "
                              f"saved; make the folder writable or free some space, then run "
                              f"the command again.") from None


def write_atomically(path: str, write, suffix: str = ".tmp") -> str:
    """Calls `write(temporary_path)`, then renames the temporary file onto `path`.

    A process killed mid-write leaves the previous file intact. `suffix` ends
    the temporary file's name, for writers that infer the format from it (such
    as `.tmp.npz`). Returns `path`.
    """
    temporary = path + suffix
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


@contextlib.contextmanager
def staging_folder(parent: str, prefix: str):
    """A new folder `<parent>/<prefix><random>` for the block, removed with whatever is
    left in it when the block ends, however it ends.

    Unlike `tempfile.mkdtemp` before a `try`, the name is chosen before the folder is
    made, so a signal that raises between making the folder and entering the block
    (SIGTERM, Ctrl-C) cannot leave it behind.
    """
    path = os.path.join(parent, prefix + secrets.token_hex(4))
    try:
        os.mkdir(path, 0o700)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def write_text_atomically(path: str, text: str) -> str:
    """Writes `text` to `path` atomically (see `write_atomically`)."""
    def write(temporary):
        with open(temporary, "w", newline="") as stream:
            stream.write(text)
    return write_atomically(path, write)
