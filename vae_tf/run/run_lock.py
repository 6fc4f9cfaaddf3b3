"""One training run per model directory, held by a lock file.

`vae_tf.train` takes the flock of `<model_dir>/.lock` (so two processes cannot
both hold it, and the operating system lets go of it when the process ends,
however it ends), writes its process id and host into the file, and deletes it
when it ends. A second run into a locked folder stops with one line naming the other
process. A lock left by a process that died (SIGKILL, a crash) on this host is
taken over with a note; one from another host is never second-guessed, since its
process cannot be checked from here. `evaluate`, `visualize` and `export` only
read, so they take no lock.
"""

import fcntl
import json
import os
import socket
import time

from vae_tf import log
from vae_tf.errors import RunDirError
from vae_tf.run.layout import LOCK_FILE

_HELD = {}  # lock file path -> the open descriptor whose flock this process holds


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _describe(record: dict) -> str:
    if not record:
        return "a process that is still starting"
    return (f"process {record.get('pid')} on {record.get('host')}, started "
            f"{record.get('started', 'at an unknown time')}")


def _read(descriptor: int) -> dict:
    os.lseek(descriptor, 0, os.SEEK_SET)
    text = b""
    while chunk := os.read(descriptor, 4096):
        text += chunk
    try:
        record = json.loads(text.decode() or "{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return record if isinstance(record, dict) else {}


def _locked(descriptor: int) -> bool:
    """Takes the file's flock for this open file; False if another one holds it."""
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def owner(model_dir: str):
    """The lock's record ({"pid", "host", "started"}) if a live process holds the folder."""
    path = os.path.join(model_dir, LOCK_FILE)
    try:
        descriptor = os.open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        record = _read(descriptor)
        if not _locked(descriptor):
            return record
    finally:
        os.close(descriptor)  # which also lets go of a lock taken just to look
    if record and record.get("host") != socket.gethostname():
        return record  # another host's process cannot be checked from here
    if record and _alive(int(record.get("pid", 0))) and record.get("pid") != os.getpid():
        return record  # a run of a vae_tf from before the flock, still running
    return None


def _in_use(model_dir: str, record: dict) -> RunDirError:
    return RunDirError(f"--model_dir={model_dir} is in use by another vae_tf run "
                       f"({_describe(record)}); wait for it to end, or choose another "
                       f"--model_dir.")


def acquire(model_dir: str) -> str:
    """Takes the folder's lock for this process; returns the lock file's path.

    The lock is the file's flock, which the operating system holds for this
    process until `release`, or until the process ends however it ends: two
    runs starting together (after a crash left a lock file, say) cannot both
    get it. The file also records who holds it, for the message of the one refused.
    """
    path = os.path.join(model_dir, LOCK_FILE)
    record = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(10):
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _locked(descriptor):
            other = _read(descriptor)
            os.close(descriptor)
            raise _in_use(model_dir, other)
        try:
            same_file = os.stat(path).st_ino == os.fstat(descriptor).st_ino
        except FileNotFoundError:
            same_file = False
        if not same_file:  # its holder released it (deleting the file) as we opened it
            os.close(descriptor)
            continue
        left = _read(descriptor)
        # Another host's process cannot be checked from here; a live process on this one
        # may be a vae_tf from before the flock, which only wrote the file.
        if left and (left.get("host") != socket.gethostname() or
                     _alive(int(left.get("pid", 0)))):
            os.close(descriptor)
            raise _in_use(model_dir, left)
        if left:
            log.info(f"took over {path}, left by a run that is no longer running.")
        os.ftruncate(descriptor, 0)
        os.lseek(descriptor, 0, os.SEEK_SET)
        os.write(descriptor, json.dumps(record).encode())
        _HELD[path] = descriptor
        return path
    raise RunDirError(f"{path}: could not take the lock; another run may be starting there.")


def release(path: str) -> None:
    """Deletes the lock file and lets go of its lock, if this process holds it."""
    descriptor = _HELD.pop(path, None)
    if descriptor is None:
        return
    try:
        os.remove(path)  # before unlocking, so a waiting run sees the file change
    except FileNotFoundError:
        pass
    os.close(descriptor)
