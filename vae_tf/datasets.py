"""Data sets from Python: ``vae_tf.datasets.load("fashion_mnist")``.

The same sources as `--dataset` (MNIST and Fashion-MNIST, found offline first; any
tensorflow-datasets name; a folder of images; an `.npz`), returned as a `Dataset`:
`train` and `test` splits (`images` uint8 [N, H, W, C], `labels` int32 [N];
`float_images()` in [0, 1]) and `class_names`.
"""

from vae_tf.data import sources
from vae_tf.data.datatypes import Dataset


def load(name_or_path: str, data_dir: str = "", image_size=None, test_fraction: float = 0.1,
         seed: int = 0) -> Dataset:
    """The data set `--dataset=name_or_path` would train on (`image_size`: (height, width)
    to resize every image to; `test_fraction` and `seed`: the test split of a set without
    one)."""
    options = sources.LoadOptions(image_size=tuple(image_size) if image_size else None,
                               test_fraction=test_fraction, seed=seed)
    return sources.load_dataset(name_or_path, data_dir, options)
