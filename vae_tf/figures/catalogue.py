"""Every figure vae_tf draws, in one table: `CATALOGUE`.

Each entry, a `Figure`, says what the figure needs of the model, how its arrays
are computed from the model (`vae_tf.figures.inspection`), how they are drawn
(`vae_tf.figures.plots`), and when:

- `EPOCH`: after every epoch of training, as `<name>_epoch_NNN.png`, and by
  `vae_tf.visualize --plot=<name>` from a checkpoint;
- `ACROSS_EPOCHS`: after every epoch, as `<name>.png`, from the arrays of every
  epoch so far (the run's figure history) and the metrics;
- `CHECKPOINT`: only by `vae_tf.visualize --plot=<name>`.

Training keeps every epoch's arrays (of the EPOCH and ACROSS_EPOCHS entries) in
the run's figure history; entries with a `gif` become GIFs of those epochs when
training ends. Adding a figure is a function computing its arrays, one drawing
them, and one entry here; `vae_tf.figures.per_epoch` writes the files and
TensorBoard, `vae_tf.figures.visualization` draws from checkpoints.
"""

import dataclasses
from typing import Callable, Optional

import numpy as np

from vae_tf.figures import inspection, plots

EPOCH, ACROSS_EPOCHS, CHECKPOINT = "epoch", "across epochs", "checkpoint"
NUM_SAMPLES = 64
MANIFOLD_SIZE = 20


@dataclasses.dataclass
class PlotOptions:
    traversal_range: float = 3.0  # the swept dimension runs over [-range, range]
    steps: int = 11  # images along a traversal or interpolation
    label: int = 0  # class decoded by conditional models in manifold/traversal/interpolation
    conditional_rows: int = 8  # shared z draws in the conditional grid
    seed: int = 0
    data_dir: str = ""  # overrides the run's --data_dir
    limits: Optional[tuple] = None  # the scatter's axis limits (the same on every GIF frame)


@dataclasses.dataclass(frozen=True)
class Figure:
    """One figure. `compute(model, inputs, options)` returns arrays by name; `draw`
    makes the matplotlib Figure from the arrays named in `uses`: `draw(epoch, arrays,
    inputs, options)` for EPOCH and CHECKPOINT figures, `draw(history, inputs,
    metrics)` for ACROSS_EPOCHS ones, with history {epoch: arrays}. `inputs` are a
    run's fixed inputs (`per_epoch.FixedInputs`). `needs(model)` is None, or why the
    model cannot have the figure, with `{run}` where the run's folder goes."""

    when: str
    compute: Callable
    draw: Callable
    uses: tuple  # the arrays it is drawn from
    needs: Callable = lambda model: None
    tensorboard: str = ""  # the name of its image summary after each epoch, if any
    gif: str = ""  # the file name of its GIF across epochs, made when training ends


def _no_arrays(model, inputs, options) -> dict:
    return {}


def _needs_conditional(model) -> Optional[str]:
    if not model.conditional:
        return ("needs a conditional model; {run} was trained without a classifier "
                "(--classifier_weight=0)")
    return None


def _needs_2d(model) -> Optional[str]:
    if model.z_dim != 2:
        return f"needs z_dim=2 and {{run}} has z_dim={model.z_dim}; try --plot=traversal"
    return None


def _reconstructions(model, inputs, options) -> dict:
    return {"reconstructions": inspection.reconstructions(model, inputs.examples)}


def reconstructions_figure(epoch: int, arrays: dict, inputs, options=None):
    """Test images above their reconstructions."""
    return plots.reconstructions(inspection.displayable(inputs.examples),
                                 arrays["reconstructions"],
                                 title=f"Epoch {epoch}: test images (top) and reconstructions")


def _samples(model, inputs, options) -> dict:
    return {"samples": inspection.prior_samples(model, NUM_SAMPLES, options.seed)}


def samples_figure(epoch: int, arrays: dict, inputs=None, options=None):
    """Decoded draws from the model's prior."""
    return plots.samples(arrays["samples"], title=f"Epoch {epoch}: samples from the prior")


def _latent_means(model, inputs, options) -> dict:
    z_mean, z_log_var = inspection.encode(model, inputs.test_images)
    return {"z_mean": z_mean, "z_log_var": z_log_var}


def scatter_figure(epoch: int, arrays: dict, inputs, options=None):
    """The test set's latent means, coloured by class (PCA when Z > 2)."""
    return plots.latent_scatter(arrays["z_mean"], inputs.test_labels[:len(arrays["z_mean"])],
                                inputs.class_names, limits=options and options.limits,
                                title=f"Epoch {epoch}: latent means of the test set")


def _manifold(model, inputs, options) -> dict:
    values = plots.manifold_values(MANIFOLD_SIZE)
    return {"manifold": inspection.manifold(model, values, options.label)}


def manifold_figure(epoch: int, arrays: dict, inputs=None, options=None):
    """The decoded latent plane of `plots.manifold_values(MANIFOLD_SIZE)`."""
    return plots.manifold(arrays["manifold"], plots.manifold_values(MANIFOLD_SIZE),
                          title=f"Epoch {epoch}: decoded latent plane")


def _conditional_rows(model, inputs, options) -> dict:
    return {"rows": np.stack([inspection.conditional_row(model, options.seed + row)
                              for row in range(options.conditional_rows)])}


def _conditional_grid(epoch: int, arrays: dict, inputs, options):
    rows = arrays["rows"]
    return plots.conditional_grid(rows, [f"z #{row + 1}" for row in range(len(rows))],
                                  inputs.class_names,
                                  title=f"Epoch {epoch}: each row decodes one z as every class")


def _traversal(model, inputs, options) -> dict:
    values = np.linspace(-options.traversal_range, options.traversal_range, options.steps)
    z_base = inspection.encode(model, inputs.examples[:1])[0][0]
    return {"images": inspection.traversal(model, z_base, values, options.label),
            "values": values}


def _traversal_figure(epoch: int, arrays: dict, inputs, options):
    return plots.traversal(arrays["images"], arrays["values"],
                           title=f"Epoch {epoch}: one latent dimension swept per row, from "
                                 f"the first test image's latent mean")


def _interpolation(model, inputs, options) -> dict:
    label = options.label if model.conditional else 0
    return {"images": inspection.interpolation(model, inputs.examples[0], inputs.examples[1],
                                               options.steps, label)}


def _interpolation_figure(epoch: int, arrays: dict, inputs, options):
    names = inputs.class_names or ("test image", "another")
    return plots.interpolation(arrays["images"], title=f"Epoch {epoch}: from a {names[0]} to "
                                                       f"a {names[1]} through the latent space")


def _reconstructions_by_epoch(history: dict, inputs, metrics: list):
    return plots.reconstructions_by_epoch(
        inspection.displayable(inputs.examples),
        {epoch: arrays["reconstructions"] for epoch, arrays in history.items()})


def _conditional_row(model, inputs, options) -> dict:
    return {"conditional": inspection.conditional_row(model, options.seed)}


def conditional_by_epoch_figure(history: dict, inputs, metrics=None):
    """One shared z decoded as every class, one row per epoch of `history`."""
    epochs = sorted(history)
    return plots.conditional_grid(np.stack([history[e]["conditional"] for e in epochs]),
                                  [f"epoch {e}" for e in epochs], inputs.class_names)


def _losses(history: dict, inputs, metrics: list):
    return plots.loss_curves(metrics) if metrics else None


CATALOGUE = {
    "reconstructions": Figure(EPOCH, _reconstructions, reconstructions_figure,
                              ("reconstructions",), tensorboard="reconstructions"),
    "samples": Figure(EPOCH, _samples, samples_figure, ("samples",), tensorboard="samples"),
    "scatter": Figure(EPOCH, _latent_means, scatter_figure, ("z_mean",), gif="scatter.gif"),
    "manifold": Figure(EPOCH, _manifold, manifold_figure, ("manifold",), _needs_2d,
                       gif="manifold.gif"),
    "reconstructions_by_epoch": Figure(ACROSS_EPOCHS, _no_arrays, _reconstructions_by_epoch,
                                       ("reconstructions",)),
    "conditional_by_epoch": Figure(ACROSS_EPOCHS, _conditional_row,
                                   conditional_by_epoch_figure, ("conditional",),
                                   _needs_conditional, tensorboard="conditional",
                                   gif="conditional.gif"),
    "losses": Figure(ACROSS_EPOCHS, _no_arrays, _losses, ()),
    "conditional": Figure(CHECKPOINT, _conditional_rows, _conditional_grid, ("rows",),
                          _needs_conditional),
    "traversal": Figure(CHECKPOINT, _traversal, _traversal_figure, ("images", "values")),
    "interpolation": Figure(CHECKPOINT, _interpolation, _interpolation_figure, ("images",)),
}


def plot_names() -> tuple:
    """What `vae_tf.visualize --plot` draws from one checkpoint (`compare`, which draws
    several runs, aside)."""
    return tuple(name for name, figure in CATALOGUE.items() if figure.when != ACROSS_EPOCHS)


def of_training(model) -> dict:
    """{name: Figure} of the figures training draws for `model`."""
    return {name: figure for name, figure in CATALOGUE.items()
            if figure.when != CHECKPOINT and figure.needs(model) is None}


def drawable(arrays: dict) -> dict:
    """{name: Figure} of the figures of training that `arrays` (one epoch's) can draw."""
    return {name: figure for name, figure in CATALOGUE.items()
            if figure.when != CHECKPOINT and all(key in arrays for key in figure.uses)}
