"""A part-done IWAE evaluation, kept so that a stopped `vae_tf.evaluate` resumes.

K = 5000 importance samples per test image take from minutes (an MLP) to hours (a
conv HVAE) on a CPU. `elbo_iwae.evaluate_model` sums its terms batch by batch, and
seeds each batch's draws by the batch's position, so the sums after n images are all
a rerun needs to carry on and end at the same number, bit for bit, as an evaluation
never stopped. They are written atomically, at most every SAVE_SECONDS and whenever
the evaluation ends (finished, stopped by a signal, or failed), to
<model_dir>/evaluations/in_progress/K<k>-N<n>.json with what they depend on: digests
of the weights and of the test images, the seed, and the shape of the IWAE call.
A rerun whose weights, images or seed differ starts afresh. One file is kept per K
and image count, so a quick K = 4 check does not discard hours of a K = 5000 one;
`elbo_iwae.record` removes the file once the finished evaluation is kept.
"""

import hashlib
import json
import os
import time

import numpy as np

from vae_tf import log
from vae_tf.files import write_text_atomically
from vae_tf.run import layout

SAVE_SECONDS = 10.0
# What the estimate's call shape is; a resumed evaluation keeps the one it began with.
SETTINGS = ("batch_size", "chunk_size", "jit_compile")


def path(model_dir: str, num_samples: int, count: int) -> str:
    return os.path.join(model_dir, layout.EVALUATIONS_IN_PROGRESS_DIR,
                        f"K{num_samples}-N{count}.json")


def identity(model, images: np.ndarray, num_samples: int, seed: int) -> dict:
    """What the sums depend on besides the call shape: the weights, the images, K, the seed."""
    weights = hashlib.sha256()
    for variable in model.weights:
        weights.update(np.ascontiguousarray(variable.numpy()).tobytes())
    return {"weights_sha256": weights.hexdigest(),
            "images_sha256": hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest(),
            "num_examples": len(images), "iw_samples": num_samples, "seed": seed}


def load(model_dir: str, ident: dict):
    """The kept progress of the evaluation `ident` names ({"start", "totals", settings}),
    or None when there is none or it belongs to other weights, images or seed."""
    file = path(model_dir, ident["iw_samples"], ident["num_examples"])
    if not os.path.isfile(file):
        return None
    try:
        with open(file) as stream:
            kept = json.load(stream)
        if kept["identity"] != ident:
            log.info(f"{file} belongs to other weights, test images or seed; starting afresh.")
            return None
        return {name: kept[name] for name in ("start", "totals", *SETTINGS)}
    except (OSError, ValueError, KeyError, TypeError) as error:
        log.warning(f"{file} cannot be read ({error}); starting the evaluation afresh.")
        return None


class Saver:
    """Writes the progress of one evaluation: `save(start, totals)` after each batch.

    Writing is best effort: a folder that cannot be written (read-only, full) costs
    the ability to resume, said once, not the evaluation, whose result is printed.
    """

    def __init__(self, model_dir: str, ident: dict, settings: dict):
        self.file = path(model_dir, ident["iw_samples"], ident["num_examples"])
        self.record = {"identity": ident, **{name: settings[name] for name in SETTINGS}}
        self.last_saved = time.monotonic()
        self.failed = False

    def save(self, start: int, totals: dict, force: bool = False) -> None:
        if self.failed or not (force or time.monotonic() - self.last_saved >= SAVE_SECONDS):
            return
        try:
            os.makedirs(os.path.dirname(self.file), exist_ok=True)
            write_text_atomically(self.file, json.dumps(
                dict(self.record, start=start, totals=totals), indent=1, sort_keys=True))
            self.last_saved = time.monotonic()
        except OSError as error:
            self.failed = True
            log.warning(f"{self.file}: cannot be written ({error.strerror or error}); this "
                        f"evaluation goes on but cannot resume if it is stopped.")


def discard(model_dir: str, num_samples: int, count: int) -> None:
    """Removes the progress of a finished evaluation, if any, and its folder once empty."""
    file = path(model_dir, num_samples, count)
    try:
        os.remove(file)
        os.rmdir(os.path.dirname(file))
    except (FileNotFoundError, OSError):  # none kept; others still in the folder
        pass
