"""Any image data: folders of PNGs, .npz files, colour, unlabelled sets, streaming, bad input.

The data sets are written by the tests: Fashion-MNIST test images as PNGs in
class folders, MNIST digits tinted with a random colour each (32x32x3) as PNGs
and as an .npz, a flat folder without labels, and broken files of each kind.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from vae_tf.data import image_files, pipelines, sources
from vae_tf.errors import ConfigError, DataError
from vae_tf.model import vae
from vae_tf.run import optimizers, training

from conftest import SETTLED, parse_config, real_data_dir

QUICK = ["--noprogress_bar", "--epochs=1", "--steps_per_epoch=3", "--batch_size=50",
         "--eval_batch_size=200", "--z_dim=2", *SETTLED]
SMALL_CONV = ["--arch=conv", "--conv_filters=8,8,8"]
SMALL_MLP = ["--arch=mlp", "--encoder_layers=32", "--decoder_layers=32"]


def _folder_name(class_name: str) -> str:
    return class_name.replace("/", "-")


@pytest.fixture(scope="module")
def fashion_folder(tmp_path_factory):
    """600 real Fashion-MNIST test images as PNGs, one folder per class; and their arrays."""
    dataset = sources.load_dataset("fashion_mnist", real_data_dir("fashion_mnist"))
    root = tmp_path_factory.mktemp("fashion_png")
    images, labels = dataset.test.images[:600], dataset.test.labels[:600]
    for index, (image, label) in enumerate(zip(images, labels)):
        folder = root / _folder_name(dataset.class_names[label])
        folder.mkdir(exist_ok=True)
        Image.fromarray(image[..., 0]).save(folder / f"{index:04d}.png")
    return str(root), images, labels, dataset.class_names


def _tinted_digits(count: int, offset: int, seed: int):
    """MNIST test digits, padded to 32x32 and tinted with a random colour each: uint8 RGB."""
    mnist = sources.load_dataset("mnist", real_data_dir("mnist"))
    digits = mnist.test.images[offset:offset + count, ..., 0]
    colours = np.random.default_rng(seed).uniform(0.2, 1.0, size=(count, 1, 1, 3))
    padded = np.pad(digits, ((0, 0), (2, 2), (2, 2)))[..., np.newaxis]
    return np.round(padded * colours).astype(np.uint8), mnist.test.labels[offset:offset + count]


@pytest.fixture(scope="module")
def colour_sets(tmp_path_factory):
    """The same 32x32x3 colour digits as a train/ and test/ folder of PNGs and as an .npz."""
    root = tmp_path_factory.mktemp("colour")
    x_train, y_train = _tinted_digits(500, 0, seed=1)
    x_test, y_test = _tinted_digits(100, 5000, seed=2)
    npz = root / "digits.npz"
    np.savez(npz, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    folder = root / "pngs"
    for split, images, labels in (("train", x_train, y_train), ("test", x_test, y_test)):
        for index, (image, label) in enumerate(zip(images, labels)):
            (folder / split / str(label)).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / split / str(label) / f"{index:04d}.png")
    return str(folder), str(npz), (x_train, y_train, x_test, y_test)


def _exported(model_dir):
    return tf.saved_model.load(os.path.join(model_dir, "saved_model"))


def _saved_config(model_dir):
    with open(os.path.join(model_dir, "saved_model", "assets", "config.json")) as stream:
        return json.load(stream)


def _colour_pixels(png_path) -> float:
    """The share of a PNG's pixels whose red, green and blue differ: 0 for a grey picture."""
    pixels = np.asarray(Image.open(png_path).convert("RGB"), np.int32)
    spread = pixels.max(axis=-1) - pixels.min(axis=-1)
    return float(np.mean(spread > 30))


@pytest.mark.realdata
def test_a_folder_of_class_folders_keeps_pixels_labels_and_class_names(fashion_folder):
    root, images, labels, class_names = fashion_folder
    dataset = sources.load_dataset(root, options=sources.LoadOptions(test_fraction=0.25, seed=3))
    assert dataset.image_shape == (28, 28, 1) and len(dataset.test) == 150
    assert dataset.class_names == tuple(sorted(_folder_name(name) for name in class_names))
    # Every image comes back with its own pixels under its own class's name.
    by_pixels = {image.tobytes(): class_names[label] for image, label in zip(images, labels)}
    for split in (dataset.train, dataset.test):
        for image, label in zip(split.images, split.labels):
            assert _folder_name(by_pixels[image.tobytes()]) == dataset.class_names[label]
    # The split is the seed's: the same seed gives the same test images, another seed others.
    again = sources.load_dataset(root, options=sources.LoadOptions(test_fraction=0.25, seed=3))
    np.testing.assert_array_equal(again.test.images, dataset.test.images)
    other = sources.load_dataset(root, options=sources.LoadOptions(test_fraction=0.25, seed=4))
    assert not np.array_equal(other.test.images, dataset.test.images)


@pytest.mark.realdata
@pytest.mark.parametrize("arch", [SMALL_MLP, SMALL_CONV], ids=["mlp", "conv"])
def test_each_architecture_trains_on_a_folder_exports_and_reloads(fashion_folder, arch,
                                                                  tmp_path):
    root, _, _, class_names = fashion_folder
    model_dir = str(tmp_path / "run")
    config = parse_config(f"--dataset={root}", f"--model_dir={model_dir}", "--classifier_weight=1",
                          "--figures_every=0", *QUICK, *arch)
    result = training.train_and_evaluate(config)
    assert np.isfinite(result.metrics[-1]["val_loss"])
    with open(os.path.join(model_dir, "data.json")) as stream:
        recorded = json.load(stream)
    assert recorded["image_shape"] == [28, 28, 1] and recorded["train_examples"] == 540
    described = _saved_config(model_dir)
    assert described["class_names"] == sorted(_folder_name(name) for name in class_names)
    assert described["image_shape"] == [28, 28, 1] and described["num_classes"] == 10
    exported = _exported(model_dir)
    decoded = exported.signatures["decode"](z=tf.zeros([4, 2]), label=tf.range(4))["images"]
    assert decoded.shape == (4, 28, 28, 1)
    np.testing.assert_allclose(decoded, result.model.decode(tf.zeros([4, 2]), tf.range(4)),
                               atol=1e-5)
    # Resuming reads the folder again and finds the same model.
    config = parse_config(f"--dataset={root}", f"--model_dir={model_dir}", "--classifier_weight=1",
                          "--figures_every=0", *QUICK[:1], "--epochs=2", *QUICK[2:], *arch)
    assert training.train_and_evaluate(config).initial_epoch == 1


@pytest.mark.realdata
def test_colour_pngs_and_npz_hold_the_same_images(colour_sets):
    folder, npz, (x_train, y_train, x_test, y_test) = colour_sets
    from_npz = sources.load_dataset(npz)
    from_folder = sources.load_dataset(folder)
    assert from_npz.image_shape == from_folder.image_shape == (32, 32, 3)
    np.testing.assert_array_equal(from_npz.train.images, x_train)
    np.testing.assert_array_equal(from_npz.test.labels, y_test)
    assert from_npz.class_names == tuple(str(k) for k in range(10))
    # The folder lists images by class: the same images and labels, in another order.
    assert sorted(zip(from_folder.train.labels.tolist(), map(bytes, from_folder.train.images))) \
        == sorted(zip(y_train.tolist(), map(bytes, x_train)))


@pytest.mark.realdata
@pytest.mark.parametrize("kind, arch", [("npz", SMALL_MLP), ("folder", SMALL_CONV)],
                         ids=["mlp on the npz", "conv on the pngs"])
def test_colour_runs_draw_colour_figures_and_decode_colour_images(colour_sets, kind, arch,
                                                                  tmp_path):
    folder, npz, _ = colour_sets
    model_dir = str(tmp_path / "run")
    config = parse_config(f"--dataset={npz if kind == 'npz' else folder}",
                          f"--model_dir={model_dir}", *QUICK, *arch)
    result = training.train_and_evaluate(config)
    assert result.model.image_shape == (32, 32, 3)
    figures = os.path.join(model_dir, "figures")
    # The test images in the top row are coloured digits on black: a grey figure has none.
    assert _colour_pixels(os.path.join(figures, "reconstructions_epoch_001.png")) > 0.005
    sprite = Image.open(os.path.join(model_dir, "tensorboard", "figures", "sprite.png"))
    assert sprite.mode == "RGB" and sprite.size == (10 * 32, 10 * 32)
    exported = _exported(model_dir)
    assert exported.signatures["decode"](z=tf.zeros([5, 2]))["images"].shape == (5, 32, 32, 3)
    generated = exported.signatures["generate"](num_images=tf.constant(3),
                                                seed=tf.constant(1, tf.int64))["images"]
    assert generated.shape == (3, 32, 32, 3)
    assert _saved_config(model_dir)["channels"] == 3


def test_the_conv_decoder_keeps_the_tutorial_layers_at_28x28_and_adapts_elsewhere():
    config = parse_config("--arch=conv")
    tutorial = vae.build_vae(config, 10, (28, 28, 1))
    assert tutorial.decoder.dense_output and tutorial.decoder.output_layer.units == 784
    for shape in ((32, 32, 3), (40, 24, 1), (64, 64, 3)):
        model = vae.build_vae(config, 10, shape)
        assert model.decode(tf.zeros([2, config.z_dim])).shape == (2, *shape)
        assert not model.decoder.dense_output
        # The weights stay in the conv kernels: no dense layer of H*W*C outputs.
        assert model.decoder.count_params() < 200_000
    mlp = vae.build_vae(parse_config("--arch=mlp"), 10, (20, 30, 3))
    assert mlp.reconstruct(tf.zeros([2, 20, 30, 3])).shape == (2, 20, 30, 3)


def test_a_flat_folder_trains_an_unlabelled_model_and_refuses_a_classifier(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "flat"
    folder.mkdir()
    for index in range(120):
        Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(
            folder / f"{index}.png")
    dataset = sources.load_dataset(str(folder))
    assert not dataset.labelled and dataset.image_shape == (16, 16, 1)
    assert len(dataset.test) == 12 and len(dataset.train) == 108
    model_dir = str(tmp_path / "run")
    result = training.train_and_evaluate(parse_config(
        f"--dataset={folder}", f"--model_dir={model_dir}", *QUICK, *SMALL_MLP))
    assert not result.model.conditional
    assert _saved_config(model_dir)["class_names"] == []
    assert os.path.isfile(os.path.join(model_dir, "figures", "scatter_epoch_001.png"))
    with pytest.raises(ConfigError, match="--classifier_weight=1 needs labels") as error:
        training.train_and_evaluate(parse_config(
            f"--dataset={folder}", f"--model_dir={tmp_path / 'other'}", "--classifier_weight=1",
            *QUICK, *SMALL_MLP))
    assert "\n" not in str(error.value)
    assert not os.path.exists(tmp_path / "other")


def test_mixed_sizes_are_an_error_naming_two_files_unless_resized(tmp_path):
    folder = tmp_path / "mixed" / "a"
    folder.mkdir(parents=True)
    for index in range(6):
        size = (20, 20) if index % 2 else (24, 18)
        Image.fromarray(np.full(size[::-1], 40 * index, np.uint8)).save(folder / f"{index}.png")
    with pytest.raises(DataError) as error:
        sources.load_dataset(str(tmp_path / "mixed"),
                             options=sources.LoadOptions(test_fraction=0.5))
    message = str(error.value)
    assert "1.png: 20x20 pixels, but" in message and "0.png is 24x18" in message
    assert "--image_size" in message and "\n" not in message
    resized = sources.load_dataset(str(tmp_path / "mixed"), options=sources.LoadOptions(
        image_size=(12, 16), test_fraction=0.5))
    assert resized.image_shape == (12, 16, 1)
    # A uniform image stays uniform through the resize: its own grey value, not a blend.
    grey_values = sorted(int(image.mean()) for image in
                         np.concatenate([resized.train.images, resized.test.images]))
    assert grey_values == [0, 40, 80, 120, 160, 200]


def test_rgba_palette_and_16_bit_images_are_converted(tmp_path):
    folder = tmp_path / "modes" / "only"
    folder.mkdir(parents=True)
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 128
    Image.fromarray(rgba, "RGBA").save(folder / "rgba.png")
    Image.fromarray(np.full((8, 8), 65535 // 2, np.uint16)).save(folder / "grey16.png")
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).convert(
        "P", palette=Image.Palette.ADAPTIVE).save(folder / "palette.png")
    Image.fromarray(np.full((8, 8), 30, np.uint8)).save(folder / "grey.jpg", quality=100)
    dataset = sources.load_dataset(str(tmp_path / "modes"),
                                options=sources.LoadOptions(test_fraction=0.25))
    assert dataset.image_shape == (8, 8, 3)  # one colour image makes the set colour
    images = {int(image[0, 0, 0]): image for image in
              np.concatenate([dataset.train.images, dataset.test.images])}
    assert sorted(images) == [30, 90, 127, 200]  # 16-bit 32767 -> 127
    assert tuple(images[200][0, 0]) == (200, 0, 0)  # RGBA: the colour, without its alpha
    assert tuple(images[127][0, 0]) == (127, 127, 127)  # grey repeated in every channel


def _write_png(path, size=8, value=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size), value, np.uint8)).save(path)


def _noise_folder(tmp_path, count, size, name_of, cut, kept=0.5, **save):
    """`count` noise images of size x size in tmp_path/set, file `name_of(cut)` cut to `kept`."""
    noise = np.random.default_rng(0).integers(0, 255, (count, size, size), dtype=np.uint8)
    (tmp_path / "set").mkdir()
    for index in range(count):
        Image.fromarray(noise[index]).save(tmp_path / "set" / name_of(index), **save)
    whole = (tmp_path / "set" / name_of(cut)).read_bytes()
    (tmp_path / "set" / name_of(cut)).write_bytes(whole[:int(len(whole) * kept)])
    return str(tmp_path / "set"), f"{name_of(cut)}: truncated or corrupt"


def _truncated(tmp_path):
    return _noise_folder(tmp_path, 10, 32, lambda index: f"{index}.png", cut=2)


def _not_an_image(tmp_path):
    for index in range(10):
        _write_png(tmp_path / "set" / f"{index}.png")
    (tmp_path / "set" / "1.png").write_text("not a picture")
    return str(tmp_path / "set"), "1.png: not an image that Pillow can read"


def _empty(tmp_path):
    (tmp_path / "set").mkdir()
    return str(tmp_path / "set"), "set: the folder is empty"


def _no_images(tmp_path):
    (tmp_path / "set" / "docs").mkdir(parents=True)
    (tmp_path / "set" / "docs" / "notes.txt").write_text("hello")
    return str(tmp_path / "set"), "set: holds no PNG or JPEG images (1 other files, such as"


def _npz_without_x_train(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, x_test=np.zeros((3, 8, 8), np.uint8), images=np.zeros((3, 8, 8), np.uint8))
    return str(path), "bad.npz: no x_train array (it holds images, x_test)"


def _npz_labels_off_by_one(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, x_train=np.zeros((5, 8, 8), np.uint8), y_train=np.zeros(4, np.int64),
             x_test=np.zeros((2, 8, 8), np.uint8), y_test=np.zeros(2, np.int64))
    return str(path), "bad.npz: y_train holds 4 labels for the 5 images of x_train"


def _npz_not_a_zip(tmp_path):
    path = tmp_path / "bad.npz"
    path.write_bytes(b"PK\x03\x04 not really")
    return str(path), "bad.npz: not a readable .npz file"


def _test_class_unknown(tmp_path):
    _write_png(tmp_path / "set" / "train" / "cat" / "0.png")
    _write_png(tmp_path / "set" / "test" / "dog" / "0.png")
    return str(tmp_path / "set"), "dog: a class folder that the training split does not have"


def _npz_test_class_unseen(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, x_train=np.zeros((4, 8, 8), np.uint8), y_train=np.array([0, 1, 0, 1]),
             x_test=np.zeros((2, 8, 8), np.uint8), y_test=np.array([1, 2]))
    return str(path), "bad.npz: y_test holds class 2, which no image of y_train has"


def _npz_no_training_images(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, x_train=np.zeros((0, 8, 8), np.uint8), x_test=np.zeros((2, 8, 8), np.uint8))
    return str(path), "bad.npz: x_train holds no images"


BAD_INPUTS = [_truncated, _not_an_image, _empty, _no_images, _npz_without_x_train,
              _npz_labels_off_by_one, _npz_not_a_zip, _test_class_unknown,
              _npz_test_class_unseen, _npz_no_training_images]


@pytest.mark.parametrize("make", BAD_INPUTS, ids=[make.__name__[1:] for make in BAD_INPUTS])
def test_each_bad_input_is_one_line_naming_the_file(make, tmp_path):
    path, expected = make(tmp_path)
    with pytest.raises(DataError) as error:
        sources.load_dataset(path)
    message = str(error.value)
    assert expected in message and "\n" not in message
    assert str(tmp_path) in message  # the full path, not only the file's name


def _streamed_png_cut(tmp_path):
    """80 PNGs of 128x128 (1.25 MB, above --memory_budget_mb=1), one of them cut in half."""
    return _noise_folder(tmp_path, 80, 128, lambda index: f"{index:02d}.png", cut=37)


def _streamed_jpeg_scan_cut(tmp_path):
    """80 JPEGs of 128x128, one whose scan data is cut while its headers are whole."""
    folder, expected = _noise_folder(tmp_path, 80, 128, lambda index: f"{index:02d}.jpg",
                                     cut=51, kept=0.75, quality=95)
    with Image.open(tmp_path / "set" / "51.jpg") as image:  # the headers still read
        assert image.size == (128, 128)
    return folder, expected


@pytest.mark.parametrize("make", [_truncated, _streamed_png_cut, _streamed_jpeg_scan_cut],
                         ids=["held", "streamed png", "streamed jpeg"])
def test_the_train_command_reports_a_bad_folder_in_one_line_and_exits_1(make, tmp_path):
    path, expected = make(tmp_path)
    result = subprocess.run([sys.executable, "-m", "vae_tf.train", f"--dataset={path}",
                             f"--model_dir={tmp_path / 'run'}", "--memory_budget_mb=1",
                             *SMALL_MLP, "--epochs=1", "--noprogress_bar"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert expected in result.stderr and not os.path.exists(tmp_path / "run")


@pytest.mark.realdata
@pytest.mark.parametrize("kind", ["folder", "npz"])
def test_above_the_memory_budget_a_set_streams_and_feeds_the_same_batches(colour_sets, kind,
                                                                          tmp_path):
    folder, npz, _ = colour_sets
    path = folder if kind == "folder" else npz  # x_train is 1.5 MB: above a 1 MB budget
    held = sources.load_dataset(path)
    streamed = sources.load_dataset(path, options=sources.LoadOptions(memory_budget=2**20))
    assert streamed.train.streamed and not held.train.streamed
    assert isinstance(streamed.train.images,
                      image_files.ImageFiles if kind == "folder" else np.memmap)
    # The same batches at any position of the stream, so a resumed run sees what an
    # uninterrupted one saw; dynamic binarisation included.
    for start in (0, 7):
        ours = pipelines.train_pipeline(streamed.train, 64, seed=5, start_batch=start,
                                   binarize="dynamic").take(10)
        reference = pipelines.train_pipeline(held.train, 64, seed=5, start_batch=start,
                                        binarize="dynamic").take(10)
        for (a_images, a_labels), (b_images, b_labels) in zip(ours, reference):
            np.testing.assert_array_equal(a_images, b_images)
            np.testing.assert_array_equal(a_labels, b_labels)
    for (a, _), (b, _) in zip(pipelines.eval_pipeline(streamed.test, 30),
                              pipelines.eval_pipeline(held.test, 30)):
        np.testing.assert_array_equal(a, b)
    model_dir = str(tmp_path / "run")
    result = training.train_and_evaluate(parse_config(
        f"--dataset={path}", f"--model_dir={model_dir}", "--memory_budget_mb=1",
        "--figures_every=0", *QUICK, *SMALL_MLP))
    with open(os.path.join(model_dir, "data.json")) as stream:
        assert json.load(stream)["streamed"] is True
    assert np.isfinite(result.metrics[-1]["val_loss"])


# The losses of each preset's first three training steps and of its first 200 test images,
# from the seed of its flagfile, as commit 3542580 (before vae_tf read data other than
# MNIST-format IDX files) computed them on this project's data: the offline MNIST copy
# (5,000 training digits) and the Debian package's Fashion-MNIST. Reading images as
# [N, H, W, C] and building models from the data's shape must not move them.
PRESET_LOSSES = {
    "mlp_conditional": ([576.5272827148438, 555.8687744140625, 537.1737060546875],
                        520.1397705078125),
    "conv_squared_error": ([181.021484375, 175.5168914794922, 163.8604736328125],
                           147.3256378173828),
    "conv_bernoulli": ([543.6502075195312, 535.1800537109375, 506.82244873046875],
                       466.6333312988281),
    "mlp_cvae": ([545.582763671875, 533.28564453125, 511.6119384765625], 481.5375061035156),
    "mlp_binarized_bernoulli": ([560.8267822265625, 568.41064453125, 540.6752319335938],
                                525.3460693359375),
}


@pytest.mark.realdata
@pytest.mark.parametrize("preset", sorted(PRESET_LOSSES))
def test_the_presets_losses_are_those_before_any_image_data(preset):
    config = parse_config(f"--preset={preset}")
    real_data_dir(config.dataset)
    dataset = sources.load_for(config)
    keras.utils.set_random_seed(config.seed)
    model = vae.build_vae(config, dataset.spec.num_classes, dataset.image_shape)
    model.compile(optimizer=optimizers.make_adam(config.learning_rate))
    batches = iter(pipelines.train_pipeline(dataset.train, config.batch_size, config.seed,
                                       binarize=config.binarize))
    train_losses = [float(model.train_on_batch(*next(batches), return_dict=True)["loss"])
                    for _ in range(3)]
    images, labels = next(iter(pipelines.eval_pipeline(
        pipelines.prepare_test_split(dataset.test, config.binarize), 200)))
    model.reset_metrics()
    test_loss = float(model.test_on_batch(images, labels, return_dict=True)["loss"])
    expected_train, expected_test = PRESET_LOSSES[preset]
    np.testing.assert_allclose(train_losses, expected_train, rtol=1e-5)
    assert test_loss == pytest.approx(expected_test, rel=1e-5)


def _store_tfds_set(data_dir, name, splits):
    """Prepares a tensorflow-datasets data set `name` from {split: (images, labels)}."""
    import tensorflow_datasets as tfds

    shape = next(iter(splits.values()))[0].shape[1:]
    features = tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=shape),
        "label": tfds.features.ClassLabel(names=["circle", "square", "star"])})
    tfds.dataset_builders.store_as_tfds_dataset(
        name=name, version="1.0.0", features=features, data_dir=str(data_dir),
        split_datasets={split: tf.data.Dataset.from_tensor_slices(
            {"image": images, "label": labels}) for split, (images, labels) in splits.items()})


def test_a_tensorflow_datasets_name_loads_with_its_class_names(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (40, 12, 12, 3), dtype=np.uint8)
    labels = np.arange(40) % 3
    _store_tfds_set(tmp_path, "vae_tf_shapes", {"train": (images[:30], labels[:30]),
                                                "test": (images[30:], labels[30:])})
    _store_tfds_set(tmp_path, "vae_tf_shapes_train_only", {"train": (images, labels)})
    monkeypatch.setattr(sources, "TFDS_DATA_DIR", str(tmp_path))
    dataset = sources.load_dataset("vae_tf_shapes")
    assert dataset.class_names == ("circle", "square", "star")
    assert dataset.image_shape == (12, 12, 3) and len(dataset.train) == 30
    assert sorted(map(bytes, dataset.test.images)) == sorted(map(bytes, images[30:]))
    # Without a test split, --test_fraction of the training split is held out.
    only = sources.load_dataset("vae_tf_shapes_train_only",
                             options=sources.LoadOptions(test_fraction=0.25))
    assert (len(only.train), len(only.test)) == (30, 10)
    # Resized on load like any other data.
    small = sources.load_dataset("vae_tf_shapes", options=sources.LoadOptions(image_size=(8, 8)))
    assert small.image_shape == (8, 8, 3)
    with pytest.raises(DataError, match="--dataset=no_such_set_anywhere: neither mnist"):
        sources.load_dataset("no_such_set_anywhere")


def test_a_tensorflow_datasets_name_offline_fails_fast_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "TFDS_DATA_DIR", str(tmp_path / "tfds"))
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # refuses every connection
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    with pytest.raises(DataError) as error:
        sources.load_dataset("kmnist")
    message = str(error.value)
    assert message.startswith("kmnist not found and no network to download it")
    assert "--dataset=FOLDER" in message and "\n" not in message
