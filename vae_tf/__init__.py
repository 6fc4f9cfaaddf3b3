"""vae_tf: variational autoencoders for MNIST and Fashion-MNIST in TensorFlow 2 / Keras 3.

The package is importable without loading TensorFlow; its modules (`config`,
`data`, `models`, `losses`, `training`, `callbacks`) load it when imported.
"""

__version__ = "0.1.0"
