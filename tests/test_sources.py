"""The IDX reader on good and corrupt files, the search order, and the pipelines."""

import gzip
import os
import shutil
import time

import numpy as np
import pytest
import tensorflow as tf

from vae_tf import pixels
from vae_tf.data import idx, pipelines, sources
from vae_tf.errors import DataError

from conftest import make_images, real_data_dir, write_dataset, write_idx

IMAGES = sources.FILE_NAMES["train"][0]
LABELS = sources.FILE_NAMES["train"][1]


@pytest.fixture
def folder(tmp_path):
    return write_dataset(tmp_path / "data", num_train=30, num_test=20)


def test_read_split_returns_uint8_images_and_int32_labels(folder):
    split = sources.read_split(folder, "train")
    assert split.images.shape == (30, 28, 28, 1) and split.images.dtype == np.uint8
    assert split.labels.shape == (30,) and split.labels.dtype == np.int32
    assert len(split) == 30


def test_read_idx_round_trips_the_pixels(tmp_path):
    images = make_images(np.arange(10))
    path = str(tmp_path / "images.gz")
    write_idx(path, images)
    np.testing.assert_array_equal(idx.read_idx(path, idx.IMAGES_MAGIC), images)


def _corrupt(path, payload):
    with open(path, "wb") as stream:
        stream.write(payload)


def _gzip(path, payload):
    with gzip.open(path, "wb") as stream:
        stream.write(payload)


def _header(magic, *dims):
    return magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)


@pytest.mark.parametrize("name, corrupt, message", [
    ("not gzip", lambda p: _corrupt(p, b"plain text, not gzip"), "not a readable gzip file"),
    ("truncated gzip", lambda p: _corrupt(p, open(p, "rb").read()[:200]),
     "not a readable gzip file"),
    ("empty", lambda p: _gzip(p, b""), "too short for an IDX header"),
    ("wrong magic", lambda p: _gzip(p, _header(2049, 30, 28, 28) + bytes(30 * 784)),
     "magic number 2049, expected 2051"),
    ("wrong image size", lambda p: _gzip(p, _header(2051, 30, 32, 32) + bytes(30 * 1024)),
     "images are 32x32, expected 28x28"),
    ("truncated payload", lambda p: _gzip(p, _header(2051, 30, 28, 28) + bytes(29 * 784)),
     "promises 23520 bytes of data but the file holds 22736"),
    ("extra bytes", lambda p: _gzip(p, _header(2051, 30, 28, 28) + bytes(30 * 784 + 5)),
     "promises 23520 bytes"),
])
def test_each_kind_of_corrupt_image_file_names_the_file(folder, name, corrupt, message):
    path = os.path.join(folder, IMAGES)
    corrupt(path)
    with pytest.raises(DataError, match=message) as error:
        sources.read_split(folder, "train")
    assert str(error.value).startswith(path) and "\n" not in str(error.value)


def test_label_count_must_match_image_count(folder):
    write_idx(os.path.join(folder, LABELS), np.zeros(29, np.uint8))
    with pytest.raises(DataError, match="29 labels for the 30 images"):
        sources.read_split(folder, "train")


def test_label_values_must_be_digits(folder):
    write_idx(os.path.join(folder, LABELS), np.full(30, 12, np.uint8))
    with pytest.raises(DataError, match="label value 12 is outside 0-9"):
        sources.read_split(folder, "train")


def test_label_file_with_image_magic_is_refused(folder):
    write_idx(os.path.join(folder, LABELS), np.zeros((30, 28, 28), np.uint8))
    with pytest.raises(DataError, match="magic number 2051, expected 2049"):
        sources.read_split(folder, "train")


def test_missing_file_is_named(folder):
    os.remove(os.path.join(folder, sources.FILE_NAMES["test"][1]))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: file not found"):
        sources.find_local_dir("mnist", folder)


def test_data_dir_without_any_file_is_an_error_even_when_other_places_have_data(
        tmp_path, monkeypatch):
    write_dataset(tmp_path / "env" / "mnist", 10, 10)
    monkeypatch.setenv(sources.ENV_DATA_DIR, str(tmp_path / "env"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="--data_dir=.*empty holds none of the IDX files"):
        sources.find_local_dir("mnist", str(tmp_path / "empty"))


def test_search_order_is_data_dir_then_environment_then_system(tmp_path, monkeypatch):
    explicit = write_dataset(tmp_path / "explicit", 10, 10)
    from_env = write_dataset(tmp_path / "env" / "fashion_mnist", 10, 10)
    system = write_dataset(tmp_path / "system", 10, 10)
    monkeypatch.setitem(sources.SYSTEM_DIRS, "fashion_mnist", (system,))
    monkeypatch.setenv(sources.ENV_DATA_DIR, str(tmp_path / "env"))
    assert sources.find_local_dir("fashion_mnist", explicit) == explicit
    assert sources.find_local_dir("fashion_mnist") == from_env
    monkeypatch.delenv(sources.ENV_DATA_DIR)
    assert sources.find_local_dir("fashion_mnist") == system


def test_data_dir_may_hold_a_dataset_sub_folder(tmp_path):
    nested = write_dataset(tmp_path / "mnist", 10, 10)
    assert sources.find_local_dir("mnist", str(tmp_path)) == nested


@pytest.mark.parametrize("name, proxy_variable, url", [
    ("mnist", "HTTPS_PROXY", "https://storage.googleapis.com/"),
    ("fashion_mnist", "HTTP_PROXY", "http://fashion-mnist."),  # tfds fetches it over http
])
def test_offline_without_local_files_fails_fast_listing_every_place(
        name, proxy_variable, url, tmp_path, monkeypatch):
    monkeypatch.setenv(sources.ENV_DATA_DIR, str(tmp_path / "nothing_here"))
    monkeypatch.setitem(sources.SYSTEM_DIRS, name, (str(tmp_path / "no_system_dir"),))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setattr(sources, "TFDS_DATA_DIR", str(tmp_path / "tfds"))
    # A proxy that refuses every connection stands in for a machine without a network.
    monkeypatch.setenv(proxy_variable, "http://127.0.0.1:9")
    start = time.monotonic()
    with pytest.raises(DataError) as error:
        sources.load_dataset(name)
    assert time.monotonic() - start < 30
    message = str(error.value)
    assert "no network" in message and "\n" not in message and url in message
    places = [f"nothing_here/{name}", "no_system_dir", "tfds", "--data_dir"]
    for place in places + (["keras_home"] if name == "fashion_mnist" else []):
        assert place in message


def _take(dataset, count):
    return [(images.numpy(), labels.numpy()) for images, labels in dataset.take(count)]


def test_train_pipeline_yields_uint8_batches_that_convert_to_the_unit_range(folder):
    split = sources.read_split(folder, "train")
    images, labels = next(iter(pipelines.train_pipeline(split, batch_size=8, seed=0)))
    assert images.shape == (8, 28, 28, 1) and images.dtype == tf.uint8
    assert labels.dtype == tf.int32
    floats = pixels.as_float_images(images)
    assert floats.dtype == tf.float32
    np.testing.assert_array_equal(floats.numpy(), images.numpy().astype(np.float32) / 255)
    assert float(tf.reduce_max(floats)) == float(tf.reduce_max(images)) / 255
    assert pixels.as_float_images(floats) is floats


def test_train_pipeline_visits_every_example_once_per_pass_with_labels_attached(folder):
    split = sources.read_split(folder, "train")
    # 30 examples: 8+8+8+6
    batches = _take(pipelines.train_pipeline(split, batch_size=8, seed=3), 4)
    images = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    assert len(labels) == 30
    expected = {(split.images[i].tobytes(), split.labels[i]) for i in range(30)}
    seen = {(images[i, ..., 0].tobytes(), labels[i])
            for i in range(30)}
    assert seen == expected


def test_train_pipeline_order_depends_only_on_seed_and_position(folder):
    split = sources.read_split(folder, "train")
    first = _take(pipelines.train_pipeline(split, batch_size=7, seed=5), 12)
    again = _take(pipelines.train_pipeline(split, batch_size=7, seed=5), 12)
    resumed = _take(pipelines.train_pipeline(split, batch_size=7, seed=5, start_batch=7), 5)
    other_seed = _take(pipelines.train_pipeline(split, batch_size=7, seed=6), 12)
    for (a_images, a_labels), (b_images, b_labels) in zip(first, again):
        np.testing.assert_array_equal(a_labels, b_labels)
        np.testing.assert_array_equal(a_images, b_images)
    for (a_images, _), (b_images, _) in zip(first[7:], resumed):
        np.testing.assert_array_equal(a_images, b_images)
    assert any(not np.array_equal(a[1], b[1]) for a, b in zip(first, other_seed))
    # Consecutive passes are shuffled differently (5 batches of 7 cover 30 examples).
    assert not np.array_equal(first[0][1], first[5][1])


def test_eval_pipeline_keeps_order_and_covers_the_split(folder):
    split = sources.read_split(folder, "test")
    batches = _take(pipelines.eval_pipeline(split, batch_size=6), 100)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), split.labels)
    assert [len(b[1]) for b in batches] == [6, 6, 6, 2]


@pytest.mark.realdata
def test_real_fashion_mnist_has_the_published_counts():
    dataset = sources.load_dataset("fashion_mnist", real_data_dir("fashion_mnist"))
    assert (len(dataset.train), len(dataset.test)) == (60000, 10000)
    assert np.bincount(dataset.test.labels).tolist() == [1000] * 10
    assert dataset.class_names[9] == "Ankle boot"


@pytest.mark.realdata
def test_real_mnist_counts_come_from_the_headers(tmp_path):
    folder = real_data_dir("mnist")
    dataset = sources.load_dataset("mnist", folder)
    # The offline copy holds 5,000 training digits; a full copy holds 60,000.
    assert len(dataset.train) in (5000, 60000) and len(dataset.test) == 10000
    copy = shutil.copytree(folder, tmp_path / "mnist")
    assert sources.load_dataset("mnist", str(copy)).source == str(copy)


def test_offline_message_says_when_the_environment_variable_is_unset(tmp_path, monkeypatch):
    monkeypatch.delenv(sources.ENV_DATA_DIR, raising=False)
    monkeypatch.setitem(sources.SYSTEM_DIRS, "mnist", ())
    monkeypatch.setattr(sources, "TFDS_DATA_DIR", str(tmp_path / "tfds"))
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    with pytest.raises(DataError, match=r"Looked in: \$VAE_TF_DATA_DIR \(not set\); "
                                        r"tensorflow-datasets cache"):
        sources.load_dataset("mnist")


def test_static_binarization_draws_each_pixel_once_from_its_grey_value(folder):
    split = sources.read_split(folder, "train")
    binary = pipelines.binarize_split(split, seed=1)
    assert set(np.unique(binary.images)) <= {0, 255}
    np.testing.assert_array_equal(binary.labels, split.labels)
    assert abs(binary.images.mean() / 255 - split.images.mean() / 255) < 0.01
    np.testing.assert_array_equal(binary.images, pipelines.binarize_split(split, seed=1).images)
    assert pipelines.prepare_test_split(split, "none") is split
    fixed = pipelines.binarize_split(split, pipelines.TEST_BINARIZATION_SEED)
    np.testing.assert_array_equal(pipelines.prepare_test_split(split, "static").images,
                                  fixed.images)


def test_dynamic_binarization_redraws_per_batch_and_resumes_exactly(folder):
    split = sources.read_split(folder, "train")
    stream = _take(pipelines.train_pipeline(split, 10, seed=2, binarize="dynamic"), 6)
    resumed = _take(pipelines.train_pipeline(split, 10, seed=2, start_batch=4,
                                             binarize="dynamic"), 2)
    for images, _ in stream:
        assert set(np.unique(images)) <= {0, 255}
    for (a, _), (b, _) in zip(stream[4:], resumed):
        np.testing.assert_array_equal(a, b)
    # Pass 2 shows the same images as pass 1 in another order, with other binary draws.
    first_pass = np.concatenate([b[0] for b in stream[:3]]).sum()
    second_pass = np.concatenate([b[0] for b in stream[3:6]]).sum()
    assert first_pass != second_pass


def test_float_images_scale_to_unit_range_with_a_channel(folder):
    split = sources.read_split(folder, "test")
    images = split.float_images(5)
    assert images.shape == (5, 28, 28, 1) and images.dtype == np.float32
    np.testing.assert_allclose(images * 255.0, split.images[:5], atol=1e-4)
    assert split.float_images().shape[0] == len(split)
