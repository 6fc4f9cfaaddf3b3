"""What the figures show, computed from a trained model as NumPy arrays.

These functions run the model (reconstructions, prior samples, latent means,
sweeps over the latent space) and return arrays for `vae_tf.figures.plots` to draw.
Randomness comes from explicit seeds, so the same z is decoded at every epoch
and figures of successive epochs can be compared image by image.

Images come back as `vae_tf.figures.plots` draws them: grey images as [..., H, W]
(their channel axis dropped), colour images as [..., H, W, 3].
"""

import numpy as np
import tensorflow as tf

from vae_tf.model.vae import VAE

# Examples shown per figure of an unlabelled data set, which has no classes to pick by.
UNLABELLED_EXAMPLES = 10


def one_per_class(labels: np.ndarray, num_classes: int = 10) -> np.ndarray:
    """Indices of the first example of each class present, in class order.

    Without classes (an unlabelled data set) the first UNLABELLED_EXAMPLES examples.
    """
    if not num_classes:
        return np.arange(min(UNLABELLED_EXAMPLES, len(labels)))
    return np.array([np.flatnonzero(labels == k)[0] for k in range(num_classes)
                     if np.any(labels == k)])


def displayable(images) -> np.ndarray:
    """[..., H, W, C] images as plots draw them: grey ones without their channel axis."""
    images = np.asarray(images)
    return images[..., 0] if images.shape[-1] == 1 else images


def reconstructions(model: VAE, images: np.ndarray) -> np.ndarray:
    """Decoded latent means of [N, H, W, C] images -> [N, H, W(, 3)]."""
    return displayable(model.reconstruct(tf.constant(images, tf.float32)))


def encode(model: VAE, images: np.ndarray, batch_size: int = 1000):
    """(z_mean, z_log_var), each [N, z_dim], of [N, H, W, C] images, in batches."""
    means, log_vars = [], []
    for start in range(0, len(images), batch_size):
        batch = tf.constant(images[start:start + batch_size], tf.float32)
        z_mean, z_log_var = model.encode(batch)
        means.append(z_mean.numpy())
        log_vars.append(z_log_var.numpy())
    return np.concatenate(means), np.concatenate(log_vars)


def prior_z(num: int, z_dim: int, seed: int) -> np.ndarray:
    """`num` fixed draws from N(0, I) in z_dim dimensions."""
    return np.random.default_rng(seed).standard_normal((num, z_dim)).astype(np.float32)


def model_prior_z(model: VAE, num: int, seed: int) -> np.ndarray:
    """`num` fixed draws from the model's own prior: `prior_z` for N(0, I), so that figures of
    earlier runs stay as they were, else the model's sampler (a VampPrior's mixture)."""
    if model.standard_normal_prior:
        return prior_z(num, model.z_dim, seed)
    return model.sample_prior(num, seed).numpy()


def decode(model: VAE, z: np.ndarray, labels=None, channels: bool = False) -> np.ndarray:
    """Decoder means of [N, z_dim] latents -> [N, H, W(, 3)]; labels for conditional models.

    With `channels`, every image keeps its channel axis: [N, H, W, C].
    """
    if model.conditional and labels is None:
        labels = np.arange(len(z)) % model.num_classes
    labels = None if labels is None else tf.constant(labels, tf.int32)
    images = model.decode(tf.constant(z, tf.float32), labels).numpy()
    return images if channels else displayable(images)


def prior_samples(model: VAE, num: int, seed: int) -> np.ndarray:
    """Decoded samples from the prior -> [num, H, W(, 3)] (classes cycle if conditional)."""
    return decode(model, model_prior_z(model, num, seed))


def conditional_row(model: VAE, seed: int) -> np.ndarray:
    """One shared prior z decoded as every class -> [num_classes, H, W(, 3)]."""
    z = np.repeat(prior_z(1, model.z_dim, seed), model.num_classes, axis=0)
    return decode(model, z, np.arange(model.num_classes))


def manifold(model: VAE, values: np.ndarray, label: int = 0) -> np.ndarray:
    """Decodings of the grid z = (values[c], values[-1 - r]) -> [S, S, H, W(, 3)].

    Needs z_dim = 2; a conditional model decodes every point as class `label`.
    """
    if model.z_dim != 2:
        raise ValueError(f"the manifold needs z_dim=2, this model has z_dim={model.z_dim}")
    size = len(values)
    z = np.array([(values[c], values[size - 1 - r]) for r in range(size) for c in range(size)],
                 np.float32)
    images = decode(model, z, np.full(len(z), label) if model.conditional else None)
    return images.reshape((size, size) + images.shape[1:])


def traversal(model: VAE, z_base: np.ndarray, values: np.ndarray, label: int = 0) -> np.ndarray:
    """Row d sweeps dimension d of z_base over `values`, the rest fixed -> [Z, S, H, W(, 3)]."""
    z_dim, steps = len(z_base), len(values)
    z = np.repeat(z_base[np.newaxis].astype(np.float32), z_dim * steps, axis=0)
    for d in range(z_dim):
        z[d * steps:(d + 1) * steps, d] = values
    images = decode(model, z, np.full(len(z), label) if model.conditional else None)
    return images.reshape((z_dim, steps) + images.shape[1:])


def interpolation(model: VAE, image_a: np.ndarray, image_b: np.ndarray, steps: int = 10,
                  label: int = 0) -> np.ndarray:
    """Decodings along the line between the latent means of two images -> [S, H, W(, 3)]."""
    z_mean, _ = encode(model, np.stack([image_a, image_b]))
    weights = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, np.newaxis]
    z = (1.0 - weights) * z_mean[0] + weights * z_mean[1]
    return decode(model, z, np.full(steps, label) if model.conditional else None)
