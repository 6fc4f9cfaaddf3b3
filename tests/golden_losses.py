"""The losses of every preset's fresh model on a fixed batch, and the script that records them.

`python tests/golden_losses.py OUT.json` (run from a checkout) writes them;
tests/data/golden_losses.json holds those of the commit it names, and
test_vae.py checks that the current code gives the same numbers.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import tensorflow as tf

HERE = os.path.dirname(os.path.abspath(__file__))
# This checkout's vae_tf, whatever is installed.
sys.path[:0] = [HERE, os.path.dirname(HERE)]
from vae_tf.model.vae import build_vae  # noqa: E402

from conftest import make_images, parse_config  # noqa: E402


def preset_losses(flagfile: str) -> dict:
    """The mean of each loss term of a preset's model, built with Keras' seed 0, on 16
    fixed images (0/1 pixels for binarised presets), with the model's own first draw."""
    config = parse_config(f"--flagfile={flagfile}")
    keras.utils.set_random_seed(0)
    model = build_vae(config, 10)
    labels = np.arange(16) % 10
    images = make_images(labels, seed=3).astype(np.float32)[..., np.newaxis] / 255.0
    if config.binarize != "none":
        images = (images > 0.5).astype(np.float32)
    images, labels = tf.constant(images), tf.constant(labels, tf.int32)
    outputs = model(images, training=False, labels=labels)
    terms = model.example_losses(images, labels, outputs)
    return {name: float(tf.reduce_mean(value)) for name, value in sorted(terms.items())}


def main(path):
    import vae_tf
    print("vae_tf from", os.path.dirname(vae_tf.__file__))
    flags = os.path.join(HERE, os.pardir, "flags")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            cwd=HERE).stdout.strip()
    losses = {name[:-len(".flags")]: preset_losses(os.path.join(flags, name))
              for name in sorted(os.listdir(flags)) if name.endswith(".flags")}
    with open(path, "w") as out:
        json.dump({"commit": commit, "losses": losses}, out, indent=1)
        out.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
