"""Shared fixtures: tiny IDX data sets, configurations, and the real data sets."""

import gzip
import logging
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


from vae_tf import cli  # noqa: E402
from vae_tf.data import idx, sources  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGFILES = sorted(os.path.join(REPO_ROOT, "flags", name)
                   for name in os.listdir(os.path.join(REPO_ROOT, "flags"))
                   if name.endswith(".flags"))


def write_idx(path, array, magic=None):
    """Writes `array` (uint8) as a gzip-compressed IDX file."""
    array = np.asarray(array, dtype=np.uint8)
    if magic is None:
        magic = idx.IMAGES_MAGIC if array.ndim == 3 else idx.LABELS_MAGIC
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as stream:
        stream.write(header + array.tobytes())


def make_images(labels, seed=0):
    """Images with a class-dependent bright bar plus noise: learnable, but tiny."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 40, size=(len(labels), 28, 28))
    for index, label in enumerate(labels):
        images[index, 2 + 2 * label: 5 + 2 * label, 4:24] = 255
    return images.astype(np.uint8)


def write_dataset(folder, num_train=240, num_test=60, seed=0):
    """Writes the four IDX files of a tiny synthetic data set into `folder`."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, count in (("train", num_train), ("test", num_test)):
        labels = rng.integers(0, 10, size=count).astype(np.uint8)
        images_name, labels_name = sources.FILE_NAMES[split]
        write_idx(os.path.join(folder, images_name), make_images(labels, seed))
        write_idx(os.path.join(folder, labels_name), labels)
    return str(folder)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    """Slow tests first, so that with two workers (`make test`) the long ones start at
    once rather than leaving one worker busy at the end; and each module whose tests
    share a module-scoped fixture (a trained model) in one xdist group, so that the
    fixture is built once."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
    for item in items:
        # pytest's record of the fixtures a test function uses (private, no public API
        # gives their scopes; tested with the pytest versions setup.cfg allows).
        definitions = getattr(item, "_fixtureinfo", None)
        if definitions and any(definition.scope == "module"
                               for chain in definitions.name2fixturedefs.values()
                               for definition in chain):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


@pytest.fixture(scope="session", autouse=True)
def judge_cache(tmp_path_factory):
    """Judges trained by the tests stay in the session's temporary folder, not ~/.cache."""
    folder = str(tmp_path_factory.mktemp("cache"))
    previous = os.environ.get("VAE_TF_CACHE_DIR")
    os.environ["VAE_TF_CACHE_DIR"] = folder
    yield folder
    if previous is None:
        del os.environ["VAE_TF_CACHE_DIR"]
    else:
        os.environ["VAE_TF_CACHE_DIR"] = previous


@pytest.fixture
def tensorflow_log():
    """The messages TensorFlow's Python logger passes to its handlers meanwhile."""
    import tensorflow as tf

    seen = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    tf.get_logger().addHandler(handler)
    yield seen
    tf.get_logger().removeHandler(handler)


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("tiny_data"))


# The settings `auto` would measure (test_tuning.py tests that), given instead: runs then
# compare number for number and do not spend seconds timing candidates.
SETTLED = ["--nojit_compile", "--steps_per_execution=1"]
# A small, fast MLP for whole runs on the tiny data set.
FAST = ["--arch=mlp", "--encoder_layers=32", "--decoder_layers=32", "--z_dim=2",
        "--batch_size=32", "--figures_every=0", "--noexport", *SETTLED]


def parse_config(*args):
    """A Config parsed from command-line arguments exactly as `vae_tf.train` does."""
    return cli.config_from_args(list(args))


@pytest.fixture
def tiny_args(tiny_data_dir, tmp_path):
    """Flags for a fast run on the tiny data set in a fresh model directory."""
    return [f"--data_dir={tiny_data_dir}", f"--model_dir={tmp_path / 'run'}",
            "--noprogress_bar", "--eval_batch_size=60", *SETTLED]


def real_data_dir(name):
    """The folder of a real data set, failing in CI and skipping elsewhere if absent."""
    folder = sources.find_local_dir(name)
    if folder is None:
        hint = "apt-get install dataset-fashion-mnist, or " if name == "fashion_mnist" else ""
        message = (f"real {name} IDX files not found ({hint}set {sources.ENV_DATA_DIR} to a "
                   f"folder with a {name}/ sub-folder)")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return folder
