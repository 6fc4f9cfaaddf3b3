"""The IDX file format of MNIST and Fashion-MNIST: gzip-compressed, checked header by header."""

import gzip

import numpy as np

from vae_tf.errors import DataError
from vae_tf.pixels import MNIST_IMAGE_SHAPE

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049


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
    if num_dims == 3 and dims[1:] != MNIST_IMAGE_SHAPE[:2]:
        raise DataError(f"{path}: images are {dims[1]}x{dims[2]}, expected 28x28; vae_tf "
                        f"reads MNIST-format data only.")
    expected_bytes = int(np.prod(dims))
    actual_bytes = len(raw) - header_size
    if actual_bytes != expected_bytes:
        raise DataError(f"{path}: header promises {expected_bytes} bytes of data but the file "
                        f"holds {actual_bytes} (truncated or corrupt); replace it with a "
                        f"fresh copy.")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(dims)
