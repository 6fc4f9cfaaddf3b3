"""The data sets of a run: finding them and reading them safely.

`--dataset` names one of four kinds of data:

- `mnist` or `fashion_mnist`. The loader prefers local IDX files so that
  vae_tf works offline. It looks in `--data_dir` when one is given (and only
  there), otherwise in `$VAE_TF_DATA_DIR/<dataset>/`, in the folder of the
  Debian package `dataset-fashion-mnist` and in Keras' download cache; only
  when none holds the files does it ask tensorflow-datasets.
- any other image data set of tensorflow-datasets (`kmnist`, `emnist/digits`,
  `cifar10`...), which tfds downloads when its URLs answer (`vae_tf.data.downloads`);
  without a network it fails at once with a message listing every place searched.
- a folder of images, or an `.npz` of arrays (`vae_tf.data.image_files`).

Every split is uint8 [N, H, W, C], C = 1 or 3, with int32 labels (all 0 for an
unlabelled set, which has no class names). A data set larger than the memory
budget (`--memory_budget_mb`) streams from disk: its splits hold an
`image_files.ImageFiles` or a memory-mapped array instead of the images, and
the pipelines (`vae_tf.data.pipelines`) read each batch when it is needed.
"""

import dataclasses
import os
from typing import Any

import numpy as np

from vae_tf import log
from vae_tf.data import downloads, image_files, npz_files
from vae_tf.data.datatypes import Dataset, DataSpec, Split
from vae_tf.data.idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx
from vae_tf.errors import ConfigError, DataError
from vae_tf.pixels import MNIST_IMAGE_SHAPE

# The shape of MNIST and Fashion-MNIST, and of runs recorded before vae_tf read other data.
NUM_CLASSES = 10
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


def mnist_spec(name: str) -> DataSpec:
    """The spec of MNIST or Fashion-MNIST, which runs recorded before data.json had."""
    return DataSpec(MNIST_IMAGE_SHAPE, CLASS_NAMES.get(name, CLASS_NAMES["mnist"]))


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
    return Split(images=images[..., np.newaxis], labels=labels.astype(np.int32))


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


def _tfds_builder(name: str):
    import tensorflow_datasets as tfds

    try:
        return tfds.builder(name, data_dir=TFDS_DATA_DIR)
    except tfds.core.registered.DatasetNotFoundError:
        raise DataError(f"--dataset={name}: neither mnist, fashion_mnist, a folder, an .npz "
                        f"file nor a tensorflow-datasets name; pass one of those (a path must "
                        f"exist).") from None


def _load_with_tfds(name: str, searched: list, options: "LoadOptions") -> Dataset:
    """Loads through tensorflow-datasets, downloading only when the network is up."""
    import tensorflow_datasets as tfds

    builder = _tfds_builder(name)
    if not builder.is_prepared():
        urls = downloads.download_urls(builder)
        if urls and not downloads.reachable(urls[0]):
            places = "; ".join(searched + [f"tensorflow-datasets cache {builder.data_dir}"])
            hint = ("apt-get install dataset-fashion-mnist, " if name == "fashion_mnist"
                    else "")
            files = ("the four IDX .gz files" if name in CLASS_NAMES
                     else "the images (one sub-folder per class)")
            raise DataError(
                f"{name} not found and no network to download it ({urls[0]} did not answer "
                f"within {downloads.PROBE_TIMEOUT_SECONDS:g} s; proxies are read from "
                f"HTTP_PROXY/HTTPS_PROXY). Looked in: {places}. Fix: "
                f"{hint}put {files} in a folder and pass "
                + ("--data_dir=FOLDER, or " f"set {ENV_DATA_DIR} to a folder with a {name}/ "
                   f"sub-folder." if name in CLASS_NAMES else "--dataset=FOLDER."))
        builder.download_and_prepare()
    features = builder.info.features
    if "image" not in features:
        raise DataError(f"--dataset={name}: the tensorflow-datasets set has no 'image' "
                        f"feature ({', '.join(features)}); vae_tf trains on image data sets.")
    label_feature = features["label"] if "label" in features else None
    if label_feature is not None and not isinstance(label_feature, tfds.features.ClassLabel):
        label_feature = None
    class_names = CLASS_NAMES.get(name) or (tuple(label_feature.names) if label_feature
                                            else ())
    split_names = set(builder.info.splits)
    if "train" not in split_names:
        raise DataError(f"--dataset={name}: the tensorflow-datasets set has no 'train' split "
                        f"({', '.join(sorted(split_names))}).")
    shape = features["image"].shape
    test_name = "test" if "test" in split_names else None
    examples = sum(builder.info.splits[s].num_examples for s in {"train", test_name} - {None})
    if None not in shape and examples * int(np.prod(shape)) > options.memory_budget:
        raise DataError(
            f"--dataset={name}: about {examples * int(np.prod(shape)) / 2**20:,.0f} MB of "
            f"images, above --memory_budget_mb={options.memory_budget // 2**20}; "
            f"tensorflow-datasets sets are held in memory, so raise --memory_budget_mb, or "
            f"write the images into a folder, which streams from disk.")

    def read(split):
        arrays = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
        images = np.asarray(arrays["image"])
        if images.ndim == 3:
            images = images[..., np.newaxis]
        labels = (arrays["label"].astype(np.int32) if label_feature is not None
                  else np.zeros(len(images), np.int32))
        return images, labels

    train_images, train_labels = read("train")
    if test_name:
        test_images, test_labels = read(test_name)
        train, test = Split(train_images, train_labels), Split(test_images, test_labels)
    else:
        train, test = _split_off_test(Split(train_images, train_labels), options, name)
    train, test = (_fitted(split, options.image_size, name) for split in (train, test))
    return Dataset(name, train, test, class_names,
                   source=f"tensorflow-datasets ({builder.data_dir})")


@dataclasses.dataclass(frozen=True)
class LoadOptions:
    """How images are read: resized to `image_size`, split off, and held or streamed."""

    image_size: Any = None  # (height, width), or None to keep the images' own size
    test_fraction: float = 0.1  # of a data set without a test split, chosen with `seed`
    seed: int = 0
    memory_budget: int = 0  # bytes; a data set above it streams from disk (0: a quarter of RAM)

    def __post_init__(self):
        if not self.memory_budget:
            object.__setattr__(self, "memory_budget", default_memory_budget())


def default_memory_budget() -> int:
    """A quarter of this machine's physical memory, in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4


def _split_off_test(whole: Split, options: LoadOptions, where: str):
    """A seeded random --test_fraction of an in-memory split as the test split."""
    indices = image_files.split_off_test(
        image_files.FileSplit(tuple(range(len(whole))), whole.labels), options.test_fraction,
        options.seed, where)
    return tuple(Split(whole.images[list(part.paths)], part.labels) for part in indices)


def _fitted(split: Split, image_size, where: str) -> Split:
    """The split with its in-memory images resized to `image_size` (height, width) if given."""
    if image_size is None or split.image_shape[:2] == tuple(image_size):
        return split
    if split.streamed:
        raise DataError(f"{where}: --image_size cannot resize a streamed array; resize the "
                        f"images before saving them, or raise --memory_budget_mb.")
    from PIL import Image

    height, width = image_size
    mode = "L" if split.image_shape[-1] == 1 else "RGB"
    resized = np.stack([np.asarray(Image.fromarray(image.squeeze(-1) if mode == "L" else image,
                                                   mode).resize((width, height),
                                                                Image.BILINEAR))
                        for image in split.images])
    return Split(resized.reshape((len(split), height, width, split.image_shape[-1])),
                 split.labels)


def _load_folder(folder: str, options: LoadOptions) -> Dataset:
    splits, class_names, test_from = image_files.list_folder(folder, options.test_fraction,
                                                             options.seed)
    paths = splits["train"].paths + splits["test"].paths
    shape = image_files.survey(paths, options.image_size)
    streamed = len(paths) * int(np.prod(shape)) > options.memory_budget
    if streamed:
        log.info(f"{folder}: {len(paths):,} images of {shape[0]}x{shape[1]}x{shape[2]} are "
                 f"{len(paths) * int(np.prod(shape)) / 2**20:,.0f} MB, above "
                 f"--memory_budget_mb={options.memory_budget // 2**20}: streaming them from "
                 f"disk; checking that every one decodes first.")
        image_files.check_images(paths, shape)

    def split_of(files):
        images = (image_files.ImageFiles(files.paths, shape) if streamed
                  else image_files.read_images(files.paths, shape))
        return Split(images, files.labels)

    return Dataset(folder, split_of(splits["train"]), split_of(splits["test"]), class_names,
                   source=f"{folder} (test split: {test_from})")


def _load_npz(path: str, options: LoadOptions) -> Dataset:
    x_train, y_train, x_test, y_test, class_names = npz_files.read_npz(
        path, options.memory_budget)
    train = Split(x_train, y_train if y_train is not None else np.zeros(len(x_train), np.int32))
    test = Split(x_test, y_test if y_test is not None else np.zeros(len(x_test), np.int32))
    train, test = (_fitted(split, options.image_size, path) for split in (train, test))
    if train.image_shape != test.image_shape:
        raise DataError(f"{path}: x_train holds {'x'.join(map(str, train.image_shape))} "
                        f"images but x_test {'x'.join(map(str, test.image_shape))}; pass "
                        f"--image_size=HEIGHT,WIDTH to resize both, or store one shape.")
    if train.streamed:
        log.info(f"{path}: x_train is above --memory_budget_mb="
                 f"{options.memory_budget // 2**20}: streaming it from disk.")
    return Dataset(path, train, test, class_names, source=path)


def _looks_like_path(name: str) -> bool:
    return (name.endswith(".npz") or name.startswith((os.sep, ".", "~"))
            or os.path.exists(name))


def load_dataset(name: str, data_dir: str = "", options: LoadOptions = None) -> Dataset:
    """Loads both splits of `--dataset=name`: IDX files, a folder, an .npz, or tfds."""
    options = options or LoadOptions()
    if name not in CLASS_NAMES and _looks_like_path(name):
        path = os.path.expanduser(name)
        if os.path.isdir(path):
            return _load_folder(path, options)
        if path.endswith(".npz") or os.path.isfile(path):
            if not path.endswith(".npz"):
                raise DataError(f"--dataset={name} is a file but not an .npz; pass a folder "
                                f"of images or an .npz with x_train and x_test.")
            return _load_npz(path, options)
        raise DataError(f"--dataset={name}: no such folder or file; check the path.")
    if name not in CLASS_NAMES:
        return _load_with_tfds(name, [], options)
    folder = find_local_dir(name, data_dir)
    if folder is None:
        searched = candidate_dirs(name, data_dir)
        if not os.environ.get(ENV_DATA_DIR):
            searched.insert(0, f"${ENV_DATA_DIR} (not set)")
        return _load_with_tfds(name, searched, options)
    train, test = read_split(folder, "train"), read_split(folder, "test")
    return Dataset(name, _fitted(train, options.image_size, name),
                   _fitted(test, options.image_size, name), CLASS_NAMES[name], source=folder)


def load_for(config, data_dir: str = "") -> Dataset:
    """The data set of a run's configuration (`data_dir` overrides its --data_dir)."""
    return load_dataset(config.dataset, data_dir or config.data_dir, options_of(config))


def options_of(config) -> LoadOptions:
    return LoadOptions(image_files.image_size(config.image_size), config.test_fraction,
                       config.seed, config.memory_budget_mb * 2**20)


def check_config(config, dataset: Dataset) -> None:
    """Raises ConfigError for settings that this data set cannot support: the one place
    where a run's settings are checked against its data (`Config.validate` checks the
    settings among themselves)."""
    if config.batch_size > len(dataset.train):
        raise ConfigError(f"--batch_size={config.batch_size} is larger than the "
                          f"{len(dataset.train):,} images of the {config.dataset} training "
                          f"split; use a smaller --batch_size.")
    if config.conditional and not dataset.labelled:
        raise ConfigError(f"--classifier_weight={config.classifier_weight:g} needs labels, but "
                          f"{config.dataset} has none (a flat folder, or an .npz without "
                          f"y_train); use --classifier_weight=0, or give the images labels.")
    if config.binarize == "static" and dataset.train.streamed:
        raise ConfigError("--binarize=static needs the training images in memory, but "
                          f"{config.dataset} streams from disk; use --binarize=dynamic, or "
                          f"raise --memory_budget_mb.")


# --binarize: keep grey values, draw binary pixels afresh per batch, or once per run.
