"""The user's own images: a folder of PNG or JPEG files, or an .npz of arrays.

A folder is read in one of three layouts:

- `train/` and `test/` sub-folders, each either holding one sub-folder per
  class or the images themselves;
- one sub-folder per class (labels and class names come from the folder
  names, in sorted order);
- the images themselves, flat: an unlabelled set.

Without a `test/` sub-folder, `--test_fraction` of the images (chosen with the
run's seed) becomes the test split. An `.npz` holds `x_train` and `x_test`
([N, H, W] or [N, H, W, C]) and optionally `y_train` and `y_test`, as
`keras.datasets` returns them.

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
import zipfile

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


NPZ_KEYS = ("x_train", "x_test", "y_train", "y_test")


def _as_uint8(array: np.ndarray, path: str, key: str) -> np.ndarray:
    """[N, H, W] or [N, H, W, C] pixels as uint8 [N, H, W, 1 or 3]."""
    if array.ndim == 3:
        array = array[..., np.newaxis]
    if array.ndim != 4 or array.shape[-1] not in (1, 3, 4):
        raise DataError(f"{path}: {key} has shape {array.shape}; expected [N, H, W] or "
                        f"[N, H, W, C] with 1, 3 or 4 channels.")
    if array.shape[-1] == 4:
        log.info(f"{path}: {key} has 4 channels; the alpha channel is dropped.")
        array = array[..., :3]
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return np.round(array / 257.0).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        if array.size and (np.nanmin(array) < 0 or np.nanmax(array) > 1 or
                           np.isnan(array).any()):
            raise DataError(f"{path}: {key} holds floats outside [0, 1]; store uint8 pixels "
                            f"(0-255) or floats in [0, 1].")
        return np.round(array * 255.0).astype(np.uint8)
    raise DataError(f"{path}: {key} has dtype {array.dtype}; store uint8 pixels (0-255), "
                    f"uint16, or floats in [0, 1].")


def npz_member(path: str, key: str, memory_map: bool):
    """One array of an .npz, read whole or (when stored uncompressed) memory-mapped."""
    if not memory_map:
        with np.load(path, allow_pickle=False) as archive:
            return archive[key]
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(key + ".npy")
        if info.compress_type != zipfile.ZIP_STORED:
            raise DataError(f"{path}: {key} is compressed and above --memory_budget_mb, so it "
                            f"can be neither held nor streamed; save it with np.savez (not "
                            f"np.savez_compressed), or raise --memory_budget_mb.")
    with open(path, "rb") as stream:
        stream.seek(info.header_offset)
        local_header = stream.read(30)
        name_length = int.from_bytes(local_header[26:28], "little")
        extra_length = int.from_bytes(local_header[28:30], "little")
        stream.seek(info.header_offset + 30 + name_length + extra_length)
        version = np.lib.format.read_magic(stream)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(stream)
        offset = stream.tell()
    return np.memmap(path, dtype=dtype, mode="r", shape=shape, offset=offset,
                     order="F" if fortran else "C")


def read_npz(path: str, memory_budget: int):
    """(x_train, y_train, x_test, y_test, class names) of an .npz; labels may be None.

    Arrays above `memory_budget` bytes are memory-mapped, not read, when they
    are uint8 and stored uncompressed (np.savez).
    """
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = set(archive.files)
            if "class_names" in keys:
                class_names = tuple(str(name) for name in archive["class_names"])
            else:
                class_names = None
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; check --dataset.") from None
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise DataError(f"{path}: not a readable .npz file ({error}); write it with "
                        f"np.savez.") from None
    for key in ("x_train", "x_test"):
        if key not in keys:
            held = ", ".join(sorted(keys)) or "nothing"
            raise DataError(f"{path}: no {key} array (it holds {held}); save x_train and "
                            f"x_test, and optionally y_train and y_test, with np.savez.")
    if ("y_train" in keys) != ("y_test" in keys):
        present = "y_train" if "y_train" in keys else "y_test"
        raise DataError(f"{path}: has {present} but not its partner; give labels for both "
                        f"splits, or for neither.")
    arrays = {}
    for key in ("x_train", "x_test"):
        with zipfile.ZipFile(path) as archive:
            size = archive.getinfo(key + ".npy").file_size
        if size <= memory_budget:
            arrays[key] = _as_uint8(npz_member(path, key, memory_map=False), path, key)
            continue
        array = npz_member(path, key, memory_map=True)
        if array.ndim == 3:
            array = array[..., np.newaxis]
        if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] not in (1, 3):
            raise DataError(f"{path}: {key} ({array.dtype}, shape {array.shape}) is above "
                            f"--memory_budget_mb; to stream it, store uint8 pixels of 1 or 3 "
                            f"channels, or raise --memory_budget_mb.")
        arrays[key] = array
    for key in ("x_train", "x_test"):
        if not len(arrays[key]):
            raise DataError(f"{path}: {key} holds no images; store at least one image in "
                            f"each of x_train and x_test.")
    labels = {}
    for split in ("train", "test"):
        key = f"y_{split}"
        if key in keys:
            values = npz_member(path, key, memory_map=False).reshape(-1)
            if len(values) != len(arrays[f"x_{split}"]):
                raise DataError(f"{path}: {key} holds {len(values)} labels for the "
                                f"{len(arrays[f'x_{split}'])} images of x_{split}; they must "
                                f"match one for one.")
            if not np.issubdtype(values.dtype, np.integer) or (len(values) and values.min() < 0):
                raise DataError(f"{path}: {key} must hold integer class indices 0, 1, 2...; "
                                f"it holds {values.dtype} values from {values.min()}.")
            labels[split] = values.astype(np.int32)
    if labels:
        unseen = sorted(set(labels["test"].tolist()) - set(labels["train"].tolist()))
        if unseen:
            raise DataError(f"{path}: y_test holds class {unseen[0]}, which no image of "
                            f"y_train has; a model cannot learn a class it never sees, so "
                            f"give it training images or drop it from the test split.")
        num_classes = int(max(labels["train"].max(initial=0), labels["test"].max(initial=0))) + 1
        if class_names is None:
            class_names = tuple(str(k) for k in range(num_classes))
        elif len(class_names) < num_classes:
            raise DataError(f"{path}: class_names names {len(class_names)} classes but the "
                            f"labels go up to {num_classes - 1}; name every class.")
    else:
        class_names = ()
    return (arrays["x_train"], labels.get("train"), arrays["x_test"], labels.get("test"),
            class_names)
