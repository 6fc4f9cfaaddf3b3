"""The tf.data pipelines of training and evaluation, and the binarisation of the images.

Batches are uint8 images (and labels), sliced from the split held in memory or read
from disk when they are made; the compiled step converts them to floats.
"""

import numpy as np
import tensorflow as tf

from vae_tf.data.sources import Split
from vae_tf.pixels import as_float_images

BINARIZATIONS = ("none", "dynamic", "static")
# Test images are binarised with this seed whatever the run's seed, so that every
# run is evaluated on the same binary test set.
TEST_BINARIZATION_SEED = 20160901


def binarize_split(split: Split, seed: int) -> Split:
    """The split with each pixel drawn once as Bernoulli(grey value): values 0 or 255."""
    rng = np.random.default_rng(seed)
    images = np.asarray(split.images[:])
    binary = rng.uniform(size=images.shape) < images / 255.0
    return Split(images=(binary * 255).astype(np.uint8), labels=split.labels)


def prepare_test_split(split: Split, binarize: str) -> Split:
    """The test split as models trained with `binarize` are evaluated on."""
    return split if binarize == "none" else binarize_split(split, TEST_BINARIZATION_SEED)


def _reader(split: Split):
    """A function of int64 indices [B] -> uint8 images [B, H, W, C] of the split.

    In memory it gathers from a constant; streamed, it reads the images from
    disk (Pillow for files, the page cache for a memory-mapped array) when the
    batch is made.
    """
    if not split.streamed:
        images = tf.constant(split.images)
        return lambda idx: tf.gather(images, idx)
    source = split.images

    def read(idx):
        batch = tf.numpy_function(lambda i: np.asarray(source[i]), [idx], tf.uint8,
                                  stateful=False)
        return tf.ensure_shape(batch, [None, *split.image_shape])
    return read


def train_pipeline(split: Split, batch_size: int, seed: int, start_batch: int = 0,
                   binarize: str = "none"):
    """An endless stream of shuffled training batches: uint8 [B, H, W, C] images, labels.

    Pass p over the data is shuffled with the stateless seed (seed, p), so the
    batch at any position of the stream depends only on the seed and that
    position: a run resumed at batch `start_batch` sees exactly the batches an
    uninterrupted run would have seen, whether the split is in memory or
    streamed from disk (which reads the same images in the same order).
    `binarize="static"` binarises the split once; `"dynamic"` draws binary
    pixels afresh for every batch, seeded by the batch's position in the stream.
    """
    if binarize == "static":
        split = binarize_split(split, seed)
    num_examples = len(split)
    batches_per_pass = -(-num_examples // batch_size)
    read = _reader(split)
    labels = tf.constant(split.labels)

    full_batches = num_examples // batch_size

    def one_pass(pass_index):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(num_examples, dtype=tf.int64),
            seed=tf.stack([tf.constant(seed, tf.int64), pass_index]))
        # One slice per batch of indices, rather than batching single indices, whose
        # per-element work made the MLP preset's pipeline a fifth slower than no pipeline.
        batches = tf.data.Dataset.from_tensor_slices(
            tf.reshape(order[:full_batches * batch_size], [full_batches, batch_size]))
        if full_batches < batches_per_pass:
            batches = batches.concatenate(
                tf.data.Dataset.from_tensors(order[full_batches * batch_size:]))
        return batches

    def batch(position, idx):
        batch_images, batch_labels = read(idx), tf.gather(labels, idx)
        if binarize == "dynamic":
            noise = tf.random.stateless_uniform(
                tf.shape(batch_images), seed=tf.stack([tf.constant(seed + 1, tf.int64),
                                                       position]))
            binary = noise < as_float_images(batch_images)
            batch_images = tf.cast(binary, tf.uint8) * 255
        return batch_images, batch_labels

    first_pass, skip = divmod(start_batch, batches_per_pass)
    return (tf.data.Dataset.counter(first_pass)
            .flat_map(one_pass)
            .skip(skip)
            .enumerate(start_batch)
            .map(batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .prefetch(tf.data.AUTOTUNE)
            .with_options(_shard_by_data()))


def eval_pipeline(split: Split, batch_size: int):
    """The split once, in order, in batches of uint8 [B, H, W, C] images and labels."""
    if split.streamed:
        read, labels = _reader(split), tf.constant(split.labels)
        return (tf.data.Dataset.range(len(split)).batch(batch_size)
                .map(lambda idx: (read(idx), tf.gather(labels, idx)),
                     num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
                .prefetch(tf.data.AUTOTUNE)
                .with_options(_shard_by_data()))
    return (tf.data.Dataset.from_tensor_slices((split.images, split.labels))
            .batch(batch_size)
            .prefetch(tf.data.AUTOTUNE)
            .with_options(_shard_by_data()))


def _shard_by_data() -> tf.data.Options:
    """Options that make multi-worker training split each batch among the workers.

    The data comes from memory, not files, so tf.distribute's default attempt
    to give each worker its own files would fail over with a warning.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options
