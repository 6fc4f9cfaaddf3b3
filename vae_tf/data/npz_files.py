"""The user's own images in an .npz of arrays, as `keras.datasets` returns them.

`x_train` and `x_test` ([N, H, W] or [N, H, W, C]; uint8, uint16 or floats in
[0, 1]) and optionally `y_train`, `y_test` and `class_names`. An uncompressed
file is memory-mapped when it is larger than the memory budget.
"""

import zipfile

import numpy as np

from vae_tf import log
from vae_tf.errors import DataError

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
