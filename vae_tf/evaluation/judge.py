"""An independent judge of generated images: a classifier the VAE never trained with.

A conditional VAE's own classifier was trained jointly with the decoder it
would grade, so it flatters the model. The judge is a small conv classifier
trained only on the *training* split of the run's data set (never on anything
a VAE produced), seeded, and cached on disk, keyed by a fingerprint of that
split, so every run on the same data is graded by the same judge. Its held-out
accuracy on the test split is stored with it.

It gives two grades:

- judged class agreement: how often the judge assigns an image generated for
  class k to class k;
- a Fréchet distance between the judge's penultimate-layer features of
  generated images and of test images (as FID does with Inception features,
  Heusel et al., 2017, arXiv:1706.08500), with the distance of training images
  to test images as the floor that a perfect generator would reach.
"""

import dataclasses
import hashlib
import json
import os

import keras
import numpy as np
import tensorflow as tf

from vae_tf import files, log
from vae_tf.data import image_files
from vae_tf.data.sources import Split
from vae_tf.files import write_text_atomically

FEATURES = 128  # width of the penultimate layer, the features of the Fréchet distance
EPOCHS = 4
BATCH_SIZE = 128
# A streamed training split trains the judge on its first images, at most this many.
MAX_STREAMED_TRAIN = 60000


def fingerprint(split: Split) -> str:
    """A short hash of a split's images and labels: a judge is valid for exactly this data.

    A split streamed from files is hashed by their paths, sizes and modification
    times, which a changed image changes, rather than by reading every image.
    """
    digest = hashlib.sha256()
    if isinstance(split.images, image_files.ImageFiles):
        for path in split.images.paths:
            status = os.stat(path)
            digest.update(f"{path}\0{status.st_size}\0{status.st_mtime_ns}\0".encode())
    else:
        digest.update(np.ascontiguousarray(split.images).tobytes())
    digest.update(np.ascontiguousarray(split.labels).tobytes())
    return digest.hexdigest()[:16]


def floor_images(train: Split, seed: int = 0, num_samples: int = 10000) -> np.ndarray:
    """Up to `num_samples` training images, drawn at random (a split may be stored in class
    order), as float [N, H, W, C]: what the Fréchet distance's floor compares."""
    chosen = np.random.default_rng(seed).permutation(len(train))[:num_samples]
    return np.asarray(train.images[chosen]).astype(np.float32) / 255.0


def build_classifier(image_shape, num_classes: int, seed: int) -> keras.Model:
    """Two conv blocks and a dense layer of FEATURES units, then the class logits."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(image_shape)
    hidden = keras.layers.Conv2D(32, 3, activation="relu", padding="same")(inputs)
    hidden = keras.layers.MaxPooling2D()(hidden)
    hidden = keras.layers.Conv2D(64, 3, activation="relu", padding="same")(hidden)
    hidden = keras.layers.MaxPooling2D()(hidden)
    hidden = keras.layers.Flatten()(hidden)
    features = keras.layers.Dense(FEATURES, activation="relu", name="features")(hidden)
    logits = keras.layers.Dense(num_classes, name="logits")(
        keras.layers.Dropout(0.3, seed=seed)(features))
    return keras.Model(inputs, [logits, features], name="judge")


@dataclasses.dataclass
class Judge:
    """A trained judge: its network and what it scored on the held-out test split."""

    model: keras.Model
    test_accuracy: float
    path: str

    def _outputs(self, images: np.ndarray, batch_size: int = 1000):
        logits, features = [], []
        for start in range(0, len(images), batch_size):
            batch_logits, batch_features = self.model(
                tf.constant(images[start:start + batch_size], tf.float32), training=False)
            logits.append(batch_logits.numpy())
            features.append(batch_features.numpy())
        return np.concatenate(logits), np.concatenate(features)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Class indices [N] of float images [N, H, W, C] in [0, 1]."""
        return np.argmax(self._outputs(images)[0], axis=-1)

    def features(self, images: np.ndarray) -> np.ndarray:
        """Penultimate-layer features [N, FEATURES] of float images in [0, 1]."""
        return self._outputs(images)[1].astype(np.float64)


def load_or_train(train: Split, test: Split, dataset_name: str, num_classes: int,
                  seed: int = 0, epochs: int = EPOCHS) -> Judge:
    """The cached judge of this training split, trained first if there is none."""
    folder = os.path.join(files.cache_dir(), "judges",
                          f"{dataset_name}-{fingerprint(train)}-seed{seed}")
    weights_path = os.path.join(folder, "judge.weights.h5")
    info_path = os.path.join(folder, "judge.json")
    image_shape = train.float_images(1).shape[1:]
    model = build_classifier(image_shape, num_classes, seed)
    if os.path.isfile(weights_path) and os.path.isfile(info_path):
        model.load_weights(weights_path)
        with open(info_path) as stream:
            info = json.load(stream)
        log.info(f"judge: {folder} (held-out accuracy {info['test_accuracy']:.4f})")
        return Judge(model, info["test_accuracy"], folder)
    log.info(f"judge: training a classifier on the {len(train):,} training images of "
             f"{dataset_name}, once; it is kept in {folder}")
    logits = model.outputs[0]
    trainer = keras.Model(model.inputs, logits)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    count = min(len(train), MAX_STREAMED_TRAIN) if train.streamed else len(train)
    images = train.float_images(count)
    order = np.random.default_rng(seed).permutation(len(images))
    trainer.fit(images[order], train.labels[:count][order], batch_size=BATCH_SIZE,
                epochs=epochs, shuffle=False, verbose=0)
    judge = Judge(model, 0.0, folder)
    judge.test_accuracy = float(np.mean(judge.predict(test.float_images()) == test.labels))
    os.makedirs(folder, exist_ok=True)
    model.save_weights(weights_path)
    write_text_atomically(info_path, json.dumps(
        {"dataset": dataset_name, "train_fingerprint": fingerprint(train), "seed": seed,
         "epochs": epochs, "train_images": len(train), "test_accuracy": judge.test_accuracy},
        indent=2) + "\n")
    log.info(f"judge: held-out accuracy {judge.test_accuracy:.4f} on {len(test):,} test images")
    return judge


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) of two feature sets [N, D].

    Tr((S_a S_b)^(1/2)) is computed as the sum of the square roots of the
    eigenvalues of S_a^(1/2) S_b S_a^(1/2), which is symmetric, so only
    symmetric eigendecompositions are needed.
    """
    mean_a, mean_b = features_a.mean(axis=0), features_b.mean(axis=0)
    cov_a = np.cov(features_a, rowvar=False)
    cov_b = np.cov(features_b, rowvar=False)
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    middle = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_root = np.sum(np.sqrt(np.clip(middle, 0, None)))
    return float(np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b)
                 - 2.0 * trace_root)


def grade(model, judge: Judge, test_images: np.ndarray, train_images: np.ndarray,
          seed: int = 0, num_samples: int = 10000, per_class: int = 100) -> dict:
    """The judge's grades of a VAE's samples from the prior.

    `test_images` and `train_images` are float [N, H, W, C] in [0, 1]; the
    floor compares the training images (as `floor_images` draws them) with the
    test images.
    """
    from vae_tf.figures import inspection

    generated = inspection.decode(model, inspection.model_prior_z(model, num_samples, seed),
                                  channels=True)
    test_features = judge.features(test_images)
    result = {
        "judge_test_accuracy": judge.test_accuracy,
        "frechet_distance": frechet_distance(judge.features(generated), test_features),
        "frechet_distance_train_floor": frechet_distance(judge.features(train_images),
                                                         test_features),
    }
    if model.conditional:
        classes = np.repeat(np.arange(model.num_classes), per_class)
        images = inspection.decode(model, inspection.prior_z(len(classes), model.z_dim,
                                                             seed + 1), classes, channels=True)
        result["judged_class_agreement"] = float(np.mean(judge.predict(images) == classes))
    return result
