"""Writing a file so that readers only ever see the old version or the whole new one."""

import os


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


def write_text_atomically(path: str, text: str) -> str:
    """Writes `text` to `path` atomically (see `write_atomically`)."""
    def write(temporary):
        with open(temporary, "w", newline="") as stream:
            stream.write(text)
    return write_atomically(path, write)
