"""vae_tf: variational autoencoders for MNIST, Fashion-MNIST and your own images in
TensorFlow 2 / Keras 3.

From Python (see `vae_tf.api`):

    import vae_tf
    model = vae_tf.train(vae_tf.Config.from_preset("mlp_cvae", epochs=5))
    images = model.generate(7, label=7)

Importing vae_tf loads TensorFlow and registers the model with Keras, so that
`keras.saving.load_model("vae.keras")` needs nothing more.
"""

__version__ = "0.1.0"

from vae_tf import datasets  # noqa: E402
from vae_tf.api import figure, load, metrics, train  # noqa: E402
from vae_tf.config import Config  # noqa: E402

__all__ = ["Config", "datasets", "figure", "load", "metrics", "train", "__version__"]
