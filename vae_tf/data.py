"""MNIST and Fashion-MNIST: finding the IDX files, reading them safely, feeding tf.data.

The loader prefers local files so that vae_tf works offline. It looks in
`--data_dir` when one is given (and only there), otherwise in
`$VAE_TF_DATA_DIR/<dataset>/`, in the folder of the Debian package
`dataset-fashion-mnist` and in Keras' download cache; only when none holds the
files does it ask tensorflow-datasets, which downloads when its URLs answer
(`vae_tf.downloads`) and otherwise fails at once with a message listing every
place that was searched.

Images stay in memory as uint8 ([N, 28, 28]); the pipelines shuffle and batch
them as uint8 [B, 28, 28, 1] with their labels, a quarter of float32's bytes, and
the model's compiled step converts them with `as_float_images`.
"""

import dataclasses
import gzip
import os

import numpy as np
import tensorflow as tf

from vae_tf import downloads
from vae_tf.errors import DataError

IMAGE_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049

CLASS_NAMES = {
    "mnist": tuple(str(digit) for digit in range(10)),
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                      "Shirt", "Sneaker", "Bag", "Ankle boot"),
}
FILE_NAMES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
# Folders that operating-system packages install the IDX files into.
SYSTEM_DIRS = {"fashion_mnist": ("/usr/share/datasets/fashion-mnist",)}
# Where `keras.datasets` caches the IDX files, under $KERAS_HOME/datasets/ (~/.keras by
# default); its MNIST is one mnist.npz, not IDX files.
KERAS_CACHE_DIRS = {"fashion_mnist": "fashion-mnist"}
ENV_DATA_DIR = "VAE_TF_DATA_DIR"
# Where tensorflow-datasets keeps prepared data sets; None means its own default.
TFDS_DATA_DIR = None


@dataclasses.dataclass(frozen=True)
class Split:
    """One split of a data set held in memory."""

    images: np.ndarray  # [N, 28, 28] uint8
    labels: np.ndarray  # [N] int32 in [0, 10)

    def __len__(self) -> int:
        return len(self.labels)

    def float_images(self, count=None) -> np.ndarray:
        """The first `count` images (all by default) as [N, 28, 28, 1] float32 in [0, 1]."""
        return self.images[:count, ..., np.newaxis].astype(np.float32) / 255.0


@dataclasses.dataclass(frozen=True)
class Dataset:
    """The train and test splits of a data set, with where they came from."""

    name: str
    train: Split
    test: Split
    class_names: tuple
    source: str


def read_idx(path: str, expected_magic: int) -> np.ndarray:
    """Reads one gzip-compressed IDX file, checking its header against its contents.

    Returns [N, 28, 28] uint8 for image files and [N] uint8 for label files.
    """
    try:
        with gzip.open(path, "rb") as stream:
            raw = stream.read()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; check --data_dir.") from None
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise DataError(f"{path}: not a readable gzip file ({error}); replace it with a fresh "
                        f"copy of the original .gz file.") from None
    if len(raw) < 8:
        raise DataError(f"{path}: only {len(raw)} bytes, too short for an IDX header; replace "
                        f"it with a fresh copy.")
    magic = int.from_bytes(raw[0:4], "big")
    if magic != expected_magic:
        kind = "images" if expected_magic == IMAGES_MAGIC else "labels"
        raise DataError(f"{path}: magic number {magic}, expected {expected_magic} (IDX "
                        f"{kind}); is this the right file?")
    num_dims = 3 if magic == IMAGES_MAGIC else 1
    header_size = 4 + 4 * num_dims
    if len(raw) < header_size:
        raise DataError(f"{path}: truncated IDX header; replace it with a fresh copy.")
    dims = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(num_dims))
    if num_dims == 3 and dims[1:] != IMAGE_SHAPE[:2]:
        raise DataError(f"{path}: images are {dims[1]}x{dims[2]}, expected 28x28; vae_tf "
                        f"reads MNIST-format data only.")
    expected_bytes = int(np.prod(dims))
    actual_bytes = len(raw) - header_size
    if actual_bytes != expected_bytes:
        raise DataError(f"{path}: header promises {expected_bytes} bytes of data but the file "
                        f"holds {actual_bytes} (truncated or corrupt); replace it with a "
                        f"fresh copy.")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(dims)


def read_split(folder: str, split: str) -> Split:
    """Reads and cross-checks the image and label files of one split."""
    images_name, labels_name = FILE_NAMES[split]
    images_path = os.path.join(folder, images_name)
    labels_path = os.path.join(folder, labels_name)
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if len(images) != len(labels):
        raise DataError(f"{labels_path}: {len(labels)} labels for the {len(images)} images "
                        f"of {images_path}; the two files must come from the same split.")
    if len(labels) and labels.max() >= NUM_CLASSES:
        raise DataError(f"{labels_path}: label value {labels.max()} is outside 0-9; replace "
                        f"it with a fresh copy.")
    return Split(images=images, labels=labels.astype(np.int32))


def candidate_dirs(name: str, data_dir: str = "") -> list:
    """The folders searched for the IDX files of data set `name`, in order.

    An explicit `data_dir` is the only place searched (it or its `<name>/`
    sub-folder): a user who names a folder never silently gets other data.
    """
    if data_dir:
        return [data_dir, os.path.join(data_dir, name)]
    dirs = []
    if os.environ.get(ENV_DATA_DIR):
        dirs.append(os.path.join(os.environ[ENV_DATA_DIR], name))
    dirs += SYSTEM_DIRS.get(name, ())
    if name in KERAS_CACHE_DIRS:
        keras_home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
        dirs.append(os.path.join(keras_home, "datasets", KERAS_CACHE_DIRS[name]))
    return dirs


def _all_file_names() -> list:
    return [file_name for names in FILE_NAMES.values() for file_name in names]


def find_local_dir(name: str, data_dir: str = ""):
    """The first folder holding all four IDX files, or None.

    A folder that holds some of the files but not all is an error, since the
    user evidently meant it to be used; so is an explicit `data_dir` without them.
    """
    for folder in candidate_dirs(name, data_dir):
        present = [f for f in _all_file_names() if os.path.isfile(os.path.join(folder, f))]
        if len(present) == len(_all_file_names()):
            return folder
        if present:
            missing = sorted(set(_all_file_names()) - set(present))
            raise DataError(f"{os.path.join(folder, missing[0])}: file not found (the folder "
                            f"holds {len(present)} of the 4 IDX files of {name}); add it or "
                            f"point --data_dir elsewhere.")
    if data_dir:
        raise DataError(f"--data_dir={data_dir} holds none of the IDX files of {name} "
                        f"({', '.join(_all_file_names())}), nor does "
                        f"{os.path.join(data_dir, name)}/.")
    return None


def _load_with_tfds(name: str, searched: list) -> Dataset:
    """Loads through tensorflow-datasets, downloading only when the network is up."""
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=TFDS_DATA_DIR)
    if not builder.is_prepared():
        urls = downloads.download_urls(builder)
        if urls and not downloads.reachable(urls[0]):
            places = "; ".join(searched + [f"tensorflow-datasets cache {builder.data_dir}"])
            hint = ("apt-get install dataset-fashion-mnist, " if name == "fashion_mnist"
                    else "")
            raise DataError(
                f"{name} not found and no network to download it ({urls[0]} did not answer "
                f"within {downloads.PROBE_TIMEOUT_SECONDS:g} s; proxies are read from "
                f"HTTP_PROXY/HTTPS_PROXY). Looked in: {places}. Fix: "
                f"{hint}put the four IDX .gz files in a folder and pass --data_dir=FOLDER, or "
                f"set {ENV_DATA_DIR} to a folder with a {name}/ sub-folder.")
        builder.download_and_prepare()
    splits = {}
    for split in ("train", "test"):
        arrays = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
        splits[split] = Split(images=arrays["image"][..., 0].astype(np.uint8),
                              labels=arrays["label"].astype(np.int32))
    return Dataset(name, splits["train"], splits["test"], CLASS_NAMES[name],
                   source=f"tensorflow-datasets ({builder.data_dir})")


def load_dataset(name: str, data_dir: str = "") -> Dataset:
    """Loads both splits of `name` from local IDX files, or else tensorflow-datasets."""
    if name not in CLASS_NAMES:
        raise DataError(f"--dataset={name} is not one of {', '.join(CLASS_NAMES)}.")
    folder = find_local_dir(name, data_dir)
    if folder is None:
        searched = candidate_dirs(name, data_dir)
        if not os.environ.get(ENV_DATA_DIR):
            searched.insert(0, f"${ENV_DATA_DIR} (not set)")
        return _load_with_tfds(name, searched)
    return Dataset(name, read_split(folder, "train"), read_split(folder, "test"),
                   CLASS_NAMES[name], source=folder)


# --binarize: keep grey values, draw binary pixels afresh per batch, or once per run.
BINARIZATIONS = ("none", "dynamic", "static")
# Test images are binarised with this seed whatever the run's seed, so that every
# run is evaluated on the same binary test set.
TEST_BINARIZATION_SEED = 20160901


def binarize_split(split: Split, seed: int) -> Split:
    """The split with each pixel drawn once as Bernoulli(grey value): values 0 or 255."""
    rng = np.random.default_rng(seed)
    binary = rng.uniform(size=split.images.shape) < split.images / 255.0
    return Split(images=(binary * 255).astype(np.uint8), labels=split.labels)


def prepare_test_split(split: Split, binarize: str) -> Split:
    """The test split as models trained with `binarize` are evaluated on."""
    return split if binarize == "none" else binarize_split(split, TEST_BINARIZATION_SEED)


def as_float_images(images):
    """uint8 grey values -> float32 in [0, 1]; float images pass through unchanged."""
    if images.dtype == tf.uint8:
        return tf.cast(images, tf.float32) / 255.0
    return images


def _add_channel(images, labels):
    return images[..., tf.newaxis], labels  # [B, 28, 28] -> [B, 28, 28, 1]


def train_pipeline(split: Split, batch_size: int, seed: int, start_batch: int = 0,
                   binarize: str = "none"):
    """An endless stream of shuffled training batches: uint8 [B, 28, 28, 1] images, labels.

    Pass p over the data is shuffled with the stateless seed (seed, p), so the
    batch at any position of the stream depends only on the seed and that
    position: a run resumed at batch `start_batch` sees exactly the batches an
    uninterrupted run would have seen. `binarize="static"` binarises the split
    once; `"dynamic"` draws binary pixels afresh for every batch, seeded by the
    batch's position in the stream.
    """
    if binarize == "static":
        split = binarize_split(split, seed)
    num_examples = len(split)
    batches_per_pass = -(-num_examples // batch_size)
    images = tf.constant(split.images)
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
        batch_images, batch_labels = _add_channel(tf.gather(images, idx), tf.gather(labels, idx))
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
    """The split once, in order, in batches of uint8 [B, 28, 28, 1] images and labels."""
    return (tf.data.Dataset.from_tensor_slices((split.images, split.labels))
            .batch(batch_size)
            .map(_add_channel, num_parallel_calls=tf.data.AUTOTUNE)
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
