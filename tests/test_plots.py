"""Each plot function returns a Figure of the expected layout, headless."""

import numpy as np
import pytest
from matplotlib.figure import Figure

from vae_tf.data.sources import CLASS_NAMES
from vae_tf.figures import plots

RNG = np.random.default_rng(0)
NAMES = CLASS_NAMES["fashion_mnist"]


def _images(*shape):
    return RNG.uniform(size=shape + (28, 28)).astype(np.float32)


def _picture(figure):
    """The single tiled image of a grid figure, as drawn."""
    [axes] = figure.axes
    [image] = axes.get_images()
    return axes, image


def test_tile_places_each_image_with_padding():
    images = np.zeros((2, 3, 28, 28))
    images[1, 2] = 0.5
    canvas = plots.tile(images)
    assert canvas.shape == (2 * 28 + plots.PAD, 3 * 28 + 2 * plots.PAD)
    step = 28 + plots.PAD
    assert np.all(canvas[step:step + 28, 2 * step:2 * step + 28] == 0.5)
    assert np.all(canvas[28:step, :] == 1.0)  # the padding row between the grid rows


def test_image_grid_is_grey_unsmoothed_and_labelled():
    figure = plots.image_grid(_images(3, 10), title="t", row_labels=["a", "b", "c"],
                              col_labels=list(NAMES))
    assert isinstance(figure, Figure)
    axes, image = _picture(figure)
    assert image.get_cmap().name == "gray" and image.get_interpolation() == "nearest"
    assert image.get_clim() == (0.0, 1.0)
    assert [t.get_text() for t in axes.get_yticklabels()] == ["a", "b", "c"]
    assert [t.get_text() for t in axes.get_xticklabels()] == list(NAMES)
    assert figure._suptitle.get_text() == "t"


def test_grid_size_scales_with_the_number_of_images():
    small = plots.samples(_images(16)).get_size_inches()
    large = plots.samples(_images(64)).get_size_inches()
    assert large[0] > small[0] and large[1] > small[1]


def test_reconstructions_stack_originals_above_reconstructions():
    originals, reconstructed = _images(10), _images(10)
    axes, image = _picture(plots.reconstructions(originals, reconstructed))
    array = image.get_array()
    np.testing.assert_allclose(array[:28, :28], originals[0])
    np.testing.assert_allclose(array[30:58, :28], reconstructed[0])
    assert [t.get_text() for t in axes.get_yticklabels()] == ["original", "reconstruction"]


def test_reconstructions_by_epoch_have_a_row_per_epoch():
    figure = plots.reconstructions_by_epoch(_images(5), {3: _images(5), 1: _images(5)})
    axes, image = _picture(figure)
    assert image.get_array().shape[0] == 3 * 28 + 2 * plots.PAD
    assert [t.get_text() for t in axes.get_yticklabels()] == ["original", "epoch 1", "epoch 3"]


def test_conditional_grid_has_epochs_as_rows_and_class_names_as_columns():
    axes, image = _picture(plots.conditional_grid(_images(2, 10), ["epoch 1", "epoch 2"], NAMES))
    assert image.get_array().shape == (2 * 28 + plots.PAD, 10 * 28 + 9 * plots.PAD)
    assert [t.get_text() for t in axes.get_xticklabels()] == list(NAMES)
    assert [t.get_text() for t in axes.get_yticklabels()] == ["epoch 1", "epoch 2"]


def _metrics(with_classifier):
    rows = []
    for epoch in range(4):
        row = {"epoch": epoch, "loss": 300.0 - epoch, "val_loss": 290.0 - epoch,
               "reconstruction_loss": 290.0 - epoch, "val_reconstruction_loss": 280.0 - epoch,
               "kl_loss": 5.0 + epoch, "val_kl_loss": 5.5 + epoch}
        if with_classifier:
            row.update(classifier_loss=1.0 / (epoch + 1), val_classifier_loss=1.1 / (epoch + 1))
        rows.append(row)
    return rows


@pytest.mark.parametrize("with_classifier, panels", [(False, 3), (True, 4)])
def test_loss_curves_have_a_panel_per_term_with_train_and_test(with_classifier, panels):
    figure = plots.loss_curves(_metrics(with_classifier))
    assert len(figure.axes) == panels
    for axes in figure.axes:
        train, test = axes.get_lines()
        assert (train.get_label(), test.get_label()) == ("train", "test")
        assert list(train.get_xdata()) == [1, 2, 3, 4]
        assert axes.get_xlabel() == "epoch" and axes.get_ylabel() == "nats per image"
    assert list(figure.axes[1].get_lines()[1].get_ydata()) == [5.5, 6.5, 7.5, 8.5]


def test_latent_scatter_in_two_dimensions_has_a_legend_of_class_names():
    figure = plots.latent_scatter(RNG.normal(size=(500, 2)), RNG.integers(0, 10, 500), NAMES)
    [axes] = figure.axes
    assert [t.get_text() for t in axes.get_legend().get_texts()] == list(NAMES)
    assert axes.get_xlabel() == "z[0]" and "PCA" not in axes.get_title()
    assert sum(len(c.get_offsets()) for c in axes.collections) == 500


def test_latent_scatter_of_more_dimensions_says_it_is_a_pca_projection():
    figure = plots.latent_scatter(RNG.normal(size=(300, 8)), RNG.integers(0, 10, 300), NAMES)
    [axes] = figure.axes
    assert "PCA projection of z_dim=8" in axes.get_title()
    assert axes.get_xlabel() == "principal component 1"


def test_pca_finds_the_direction_of_largest_variance():
    rng = np.random.default_rng(1)
    z = np.zeros((1000, 5))
    z[:, 3] = rng.normal(scale=10.0, size=1000)
    z[:, 1] = rng.normal(scale=1.0, size=1000)
    projected = plots.pca_2d(z)
    assert projected.shape == (1000, 2)
    assert abs(np.corrcoef(projected[:, 0], z[:, 3])[0, 1]) > 0.999
    assert abs(np.corrcoef(projected[:, 1], z[:, 1])[0, 1]) > 0.99


def test_manifold_values_are_central_normal_quantiles():
    values = plots.manifold_values(20)
    assert len(values) == 20 and values[0] == pytest.approx(-1.6449, abs=1e-4)
    assert values[-1] == pytest.approx(1.6449, abs=1e-4) and np.all(np.diff(values) > 0)


def test_manifold_labels_its_axes_with_latent_values():
    values = plots.manifold_values(5)
    axes, image = _picture(plots.manifold(_images(5, 5), values))
    assert axes.get_xlabel() == "z[0]" and axes.get_ylabel() == "z[1]"
    assert [t.get_text() for t in axes.get_yticklabels()][0] == f"{values[-1]:.2f}"


def test_traversal_and_interpolation_layouts():
    axes, image = _picture(plots.traversal(_images(3, 7), np.linspace(-2, 2, 7)))
    assert [t.get_text() for t in axes.get_yticklabels()] == ["z[0]", "z[1]", "z[2]"]
    assert image.get_array().shape[1] == 7 * 28 + 6 * plots.PAD
    axes, image = _picture(plots.interpolation(_images(9)))
    assert image.get_array().shape == (28, 9 * 28 + 8 * plots.PAD)


def test_to_png_renders_a_png():
    png = plots.to_png(plots.samples(_images(4)))
    assert png.startswith(b"\x89PNG")


def test_compare_runs_puts_each_run_in_a_column():
    metrics = _metrics(False)
    runs = [("with KL", RNG.normal(size=(100, 2)), RNG.integers(0, 10, 100), metrics),
            ("beta=0", RNG.normal(size=(100, 5)), RNG.integers(0, 10, 100), metrics)]
    figure = plots.compare_runs(runs, NAMES)
    titles = [axes.get_title() for axes in figure.axes]
    assert titles[:2] == ["with KL", "beta=0 (PCA)"]
    assert len(figure.axes) == 4
    assert sum(1 for axes in figure.axes if axes.get_xlabel() == "epoch") == 2
