"""What vae_tf tells its user while it works: status lines and warnings.

Library code reports through `info` and `warning` instead of printing, so that
the entry points (and notebooks) decide what is shown: status lines go to
standard output as `vae_tf: ...`, warnings to standard error as
`vae_tf: warning: ...`. It is Python's `logging` underneath, under the logger
name "vae_tf", so `logging.getLogger("vae_tf").setLevel(logging.WARNING)` quiets
the status lines.
"""

import logging
import sys

LOGGER = logging.getLogger("vae_tf")


class _ConsoleHandler(logging.Handler):
    """Writes to the current sys.stdout or sys.stderr, looked up at each message."""

    def emit(self, record):
        if record.levelno >= logging.WARNING:
            stream, prefix = sys.stderr, "vae_tf: warning: "
        else:
            stream, prefix = sys.stdout, "vae_tf: "
        stream.write(prefix + record.getMessage() + "\n")
        stream.flush()


if not LOGGER.handlers:
    LOGGER.addHandler(_ConsoleHandler())
    LOGGER.setLevel(logging.INFO)
    LOGGER.propagate = False  # absl's root handler would print each line a second time


def info(message: str) -> None:
    LOGGER.info(message)


def warning(message: str) -> None:
    LOGGER.warning(message)
