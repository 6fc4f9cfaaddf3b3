"""What a data set is to vae_tf: its splits, its shape and class names, and both together."""

import dataclasses
from typing import Any

import numpy as np

from vae_tf.data import image_files


@dataclasses.dataclass(frozen=True)
class Split:
    """One split of a data set: its images (in memory, or read on demand) and labels."""

    images: Any  # [N, H, W, C] uint8: an ndarray, or streamed (ImageFiles, np.memmap)
    labels: np.ndarray  # [N] int32 in [0, num_classes); all 0 for an unlabelled set

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def streamed(self) -> bool:
        """Whether the images are read from disk when used rather than held in memory."""
        return isinstance(self.images, (image_files.ImageFiles, np.memmap))

    @property
    def image_shape(self) -> tuple:
        return tuple(int(size) for size in self.images.shape[1:])

    def float_images(self, count=None) -> np.ndarray:
        """The first `count` images (all by default) as [N, H, W, C] float32 in [0, 1]."""
        return np.asarray(self.images[:count]).astype(np.float32) / 255.0


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """What a model needs to know of its data: the image shape and the class names."""

    image_shape: tuple  # (H, W, C)
    class_names: tuple  # () for an unlabelled data set

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict:
        return {"image_shape": list(self.image_shape), "class_names": list(self.class_names)}

    @classmethod
    def from_dict(cls, values: dict) -> "DataSpec":
        return cls(tuple(values["image_shape"]), tuple(values["class_names"]))


@dataclasses.dataclass(frozen=True)
class Dataset:
    """The train and test splits of a data set, with where they came from."""

    name: str
    train: Split
    test: Split
    class_names: tuple  # () for an unlabelled data set
    source: str

    @property
    def image_shape(self) -> tuple:
        return self.train.image_shape

    @property
    def labelled(self) -> bool:
        return bool(self.class_names)

    @property
    def spec(self) -> DataSpec:
        return DataSpec(self.image_shape, tuple(self.class_names))

    @property
    def streamed(self) -> bool:
        return self.train.streamed or self.test.streamed
