"""The user's own images in a folder of PNG or JPEG files (`vae_tf.data.npz_files` reads .npz).

A folder is read in one of three layouts:

- `train/` and `test/` sub-folders, each either holding one sub-folder per
  class or the images themselves;
- one sub-folder per class (labels and class names come from the folder
  names, in sorted order);
- the images themselves, flat: an unlabelled set.

Without a `test/` sub-folder, `--test_fraction` of the images (chosen with the
run's seed) becomes the test split.

Every image becomes uint8 [H, W, C] with C = 1 (grey) or 3 (colour): a set
with any colour image is colour throughout, an alpha channel is dropped and
16-bit images are scaled to 8 bits. With `image_size`, images are resized on
load (bilinear); without it, images of different sizes are an error naming
two of them. Pillow decodes every image, in memory and when streaming alike,
so both ways give the same pixels.
"""

import concurrent.futures
import dataclasses
import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from vae_tf import log
from vae_tf.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N")
SIXTEEN_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")
TEST_DIR, TRAIN_DIR = "test", "train"


@dataclasses.dataclass(frozen=True)
class FileSplit:
    """The image files of one split and their labels (all 0 for an unlabelled set)."""

    paths: tuple
    labels: np.ndarray


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith(".")


def _images_in(folder: str) -> list:
    return sorted(os.path.join(folder, name) for name in os.listdir(folder)
                  if _is_image(name) and os.path.isfile(os.path.join(folder, name)))


def _subfolders(folder: str) -> list:
    return sorted(name for name in os.listdir(folder)
                  if os.path.isdir(os.path.join(folder, name)) and not name.startswith("."))


def _read_split_folder(folder: str, class_names=None):
    """(FileSplit, class names) of a folder of class sub-folders, or of flat images."""
    classes = [name for name in _subfolders(folder) if _images_in(os.path.join(folder, name))]
    flat = _images_in(folder)
    if classes and flat:
        raise DataError(f"{flat[0]}: an image beside the class folders of {folder} "
                        f"({', '.join(classes[:3])}...); move it into a class folder or away.")
    if not classes:
        if class_names:
            raise DataError(f"{folder}: holds no class folders, but the training split has "
                            f"classes {', '.join(class_names[:3])}...; give both splits the "
                            f"same class folders.")
        return FileSplit(tuple(flat), np.zeros(len(flat), np.int32)), ()
    names = tuple(class_names or classes)
    unknown = sorted(set(classes) - set(names))
    if unknown:
        raise DataError(f"{os.path.join(folder, unknown[0])}: a class folder that the "
                        f"training split does not have; the test split's classes must be "
                        f"among {', '.join(names)}.")
    paths, labels = [], []
    for name in classes:
        found = _images_in(os.path.join(folder, name))
        paths += found
        labels += [names.index(name)] * len(found)
    return FileSplit(tuple(paths), np.array(labels, np.int32)), names


def _describe_contents(folder: str) -> str:
    others = []
    for root, _, names in os.walk(folder):
        others += [os.path.join(root, name) for name in names]
    if not others:
        return f"{folder}: the folder is empty; put PNG or JPEG images in it (one sub-folder " \
               f"per class for labels)."
    return (f"{folder}: holds no PNG or JPEG images ({len(others)} other files, such as "
            f"{sorted(others)[0]}); put PNG or JPEG images in it (one sub-folder per class "
            f"for labels).")


def list_folder(folder: str, test_fraction: float, seed: int):
    """({"train": FileSplit, "test": FileSplit}, class names, how the test split was made)."""
    if os.path.isdir(os.path.join(folder, TEST_DIR)):
        train_folder = os.path.join(folder, TRAIN_DIR)
        if not os.path.isdir(train_folder):
            raise DataError(f"{folder}: has a {TEST_DIR}/ folder but no {TRAIN_DIR}/ folder; "
                            f"put the training images in {train_folder}/.")
        train, class_names = _read_split_folder(train_folder)
        test, _ = _read_split_folder(os.path.join(folder, TEST_DIR), class_names)
        for split, where in ((train, train_folder), (test, os.path.join(folder, TEST_DIR))):
            if not split.paths:
                raise DataError(_describe_contents(where))
        return {"train": train, "test": test}, class_names, f"{TEST_DIR}/ folder"
    whole, class_names = _read_split_folder(folder)
    if not whole.paths:
        raise DataError(_describe_contents(folder))
    train, test = split_off_test(whole, test_fraction, seed, folder)
    return ({"train": train, "test": test}, class_names,
            f"--test_fraction={test_fraction:g} with seed {seed}")


def split_off_test(whole: FileSplit, test_fraction: float, seed: int, where: str):
    """A random `test_fraction` of the images as the test split, the rest for training."""
    count = len(whole.paths)
    num_test = int(round(count * test_fraction))
    if not 1 <= num_test < count:
        raise DataError(f"{where}: {count} images; --test_fraction={test_fraction:g} leaves "
                        f"{num_test} for testing and {count - num_test} for training; each "
                        f"needs at least one, so add images or change --test_fraction.")
    order = np.random.default_rng(seed).permutation(count)
    test_indices, train_indices = np.sort(order[:num_test]), np.sort(order[num_test:])

    def take(indices):
        return FileSplit(tuple(whole.paths[i] for i in indices), whole.labels[indices])

    return take(train_indices), take(test_indices)


def image_size(value: list):
    """--image_size as (height, width): one number for square images, or two; None if empty."""
    if not value:
        return None
    if len(value) == 1:
        return int(value[0]), int(value[0])
    return int(value[0]), int(value[1])


def _open(path: str) -> Image.Image:
    try:
        return Image.open(path)
    except UnidentifiedImageError:
        raise DataError(f"{path}: not an image that Pillow can read; remove it or replace it "
                        f"with a PNG or JPEG.") from None
    except OSError as error:
        raise DataError(f"{path}: cannot be opened ({error}); check the file.") from None


def survey(paths, size=None):
    """(height, width, channels) that every image of `paths` will have.

    Reads only the headers. Images of different sizes need `size` (height,
    width), else the error names two of them.
    """
    channels, first, notes = 1, None, set()
    for path in paths:
        with _open(path) as image:
            mode, dims = image.mode, image.size  # size is (width, height)
        if mode not in GREY_MODES:
            channels = 3
        if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
            notes.add("an alpha channel is dropped")
        if mode in SIXTEEN_BIT_MODES:
            notes.add("16-bit images are scaled to 8 bits")
        if mode == "F":
            raise DataError(f"{path}: floating-point pixels (mode F) are not supported; save "
                            f"it as an 8- or 16-bit PNG.")
        if first is None:
            first = (path, dims)
        elif dims != first[1] and size is None:
            raise DataError(
                f"{path}: {dims[0]}x{dims[1]} pixels, but {first[0]} is "
                f"{first[1][0]}x{first[1][1]}; pass --image_size=HEIGHT,WIDTH to resize every "
                f"image on load.")
    for note in sorted(notes):
        log.info(f"images: {note}.")
    height, width = size if size else (first[1][1], first[1][0])
    return height, width, channels


def read_image(path: str, shape) -> np.ndarray:
    """One image file as uint8 [H, W, C] of `shape`: converted, and resized if need be."""
    height, width, channels = shape
    with _open(path) as image:
        try:
            image.load()
        except (OSError, SyntaxError, ValueError) as error:
            raise DataError(f"{path}: truncated or corrupt ({error}); replace or remove "
                            f"it.") from None
        if image.mode in SIXTEEN_BIT_MODES:
            pixels = np.asarray(image, np.float64)
            image = Image.fromarray(np.clip(np.round(pixels / 257.0), 0, 255).astype(np.uint8))
        image = image.convert("L" if channels == 1 else "RGB")
        if image.size != (width, height):
            image = image.resize((width, height), Image.BILINEAR)
        pixels = np.asarray(image, np.uint8)
    return pixels.reshape(height, width, channels)


class ImageFiles:
    """Image files read on demand, indexed like a uint8 array [N, H, W, C].

    What a split streamed from disk holds instead of its images: indexing it
    with an int, a slice or an array of indices decodes those files.
    """

    dtype = np.dtype(np.uint8)

    def __init__(self, paths, image_shape):
        self.paths = tuple(paths)
        self.image_shape = tuple(image_shape)

    @property
    def shape(self):
        return (len(self.paths),) + self.image_shape

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return read_image(self.paths[index], self.image_shape)
        chosen = (self.paths[index] if isinstance(index, slice)
                  else [self.paths[i] for i in np.asarray(index).reshape(-1)])
        return read_images(chosen, self.image_shape, progress=False)


def _decoded(paths, shape, progress: bool):
    """The pixels of each image file, in order, decoded by a thread per core.

    Shows a progress bar for 5,000 images or more.
    """
    bar = None
    if progress and len(paths) >= 5000:
        import keras

        bar = keras.utils.Progbar(len(paths), unit_name="image")
    pool = concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1)
    try:
        for index, pixels in enumerate(pool.map(lambda p: read_image(p, shape), paths)):
            yield index, pixels
            if bar is not None and ((index + 1) % 1000 == 0 or index + 1 == len(paths)):
                bar.update(index + 1)
    finally:  # a bad file stops the rest at once, rather than after every decode queued
        pool.shutdown(wait=True, cancel_futures=True)


def read_images(paths, shape, progress: bool = True) -> np.ndarray:
    """uint8 [N, H, W, C] of image files, decoded by a thread per core."""
    images = np.empty((len(paths),) + tuple(shape), np.uint8)
    for index, pixels in _decoded(paths, shape, progress):
        images[index] = pixels
    return images


def check_images(paths, shape, progress: bool = True) -> None:
    """Decodes every image once and keeps nothing: DataError naming the first bad file.

    A set that streams from disk is decoded again every epoch; a file that
    cannot be decoded must stop the run before any work, not inside an epoch.
    """
    for _ in _decoded(paths, shape, progress):
        pass
