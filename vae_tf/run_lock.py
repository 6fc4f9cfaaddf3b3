"""One training run per model directory, held by a lock file.

`vae_tf.train` creates `<model_dir>/.lock` (with O_EXCL, so two processes
cannot both create it) holding its process id and host, and deletes it when it
ends. A second run into a locked folder stops with one line naming the other
process. A lock left by a process that died (SIGKILL, a crash) on this host is
taken over with a note; one from another host is never second-guessed, since its
process cannot be checked from here. `evaluate`, `visualize` and `export` only
read, so they take no lock.
"""

import json
import os
import socket
import time

from vae_tf import log
from vae_tf.errors import RunDirError

LOCK_FILE = ".lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def owner(model_dir: str):
    """The lock's record ({"pid", "host", "started"}) if a live process holds the folder."""
    path = os.path.join(model_dir, LOCK_FILE)
    try:
        with open(path) as stream:
            record = json.load(stream)
    except (FileNotFoundError, json.JSONDecodeError, OSError):
        return None
    if record.get("host") == socket.gethostname() and not _alive(int(record.get("pid", 0))):
        return None
    return record


def _describe(record: dict) -> str:
    return (f"process {record.get('pid')} on {record.get('host')}, started "
            f"{record.get('started', 'at an unknown time')}")


def acquire(model_dir: str) -> str:
    """Takes the folder's lock for this process; returns the lock file's path."""
    path = os.path.join(model_dir, LOCK_FILE)
    record = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(2):
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            other = owner(model_dir)
            if other is not None:
                raise RunDirError(f"--model_dir={model_dir} is in use by another vae_tf run "
                                  f"({_describe(other)}); wait for it to end, or choose "
                                  f"another --model_dir.") from None
            log.info(f"took over {path}, left by a run that is no longer running.")
            os.remove(path)
            continue
        with os.fdopen(descriptor, "w") as stream:
            json.dump(record, stream)
        return path
    raise RunDirError(f"{path}: could not take the lock; another run may be starting there.")


def release(path: str) -> None:
    """Deletes the lock file if this process still holds it."""
    try:
        with open(path) as stream:
            mine = json.load(stream).get("pid") == os.getpid()
    except (OSError, json.JSONDecodeError):
        return
    if mine:
        os.remove(path)
