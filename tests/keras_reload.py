"""Loads a `.keras` file in a fresh process with only `import vae_tf`, and trains on.

    python tests/keras_reload.py DIR

DIR holds vae.keras and inputs.npz (images, labels, z) written by
tests/test_python_api.py. Writes DIR/reloaded.npz: encode and decode of the loaded
model, then its weights after two more epochs of `fit` on the same batches.
"""

import sys

import keras
import numpy as np

import vae_tf  # noqa: F401  (registers the model with Keras)


def main(folder):
    model = keras.saving.load_model(f"{folder}/vae.keras")
    inputs = np.load(f"{folder}/inputs.npz")
    images, labels, z = inputs["images"], inputs["labels"], inputs["z"]
    z_mean, z_log_var = model.encode(images)
    decoded = model.decode(z, labels[:len(z)] if model.conditional else None)
    model.fit(images, labels, batch_size=16, epochs=2, verbose=0, shuffle=False)
    np.savez(f"{folder}/reloaded.npz", z_mean=z_mean, z_log_var=z_log_var, decoded=decoded,
             **{f"weight_{i}": v.numpy() for i, v in enumerate(model.variables)})


if __name__ == "__main__":
    main(sys.argv[1])
