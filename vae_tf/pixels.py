"""Images as the models see them: the MNIST shape, and uint8 pixels made floats."""

import tensorflow as tf

MNIST_IMAGE_SHAPE = (28, 28, 1)


def as_float_images(images):
    """uint8 grey values -> float32 in [0, 1]; float images pass through unchanged."""
    if images.dtype == tf.uint8:
        return tf.cast(images, tf.float32) / 255.0
    return images
