"""Figures of a trained run, from its latest checkpoint: what `vae_tf.visualize` draws.

`plot_run` works on a finished run or on one still training (the checkpoint
manager only publishes complete checkpoints). It writes PNGs into
`<model_dir>/figures/`, named after the plot and the checkpoint's epoch, and
returns their paths.
"""

import dataclasses
import os

import numpy as np

from vae_tf.data import sources
from vae_tf.errors import ConfigError
from vae_tf.figures import inspection, per_epoch, plots
from vae_tf.run import checkpoints, run_dir


@dataclasses.dataclass
class PlotOptions:
    traversal_range: float = 3.0  # the swept dimension runs over [-range, range]
    steps: int = 11  # images along a traversal or interpolation
    label: int = 0  # class decoded by conditional models in manifold/traversal/interpolation
    conditional_rows: int = 8  # shared z draws in the conditional grid
    seed: int = 0
    data_dir: str = ""  # overrides the run's --data_dir


@dataclasses.dataclass
class LoadedRun:
    model_dir: str
    config: object
    model: object
    epoch: int
    dataset: sources.Dataset


def load_run(model_dir: str, data_dir: str = "") -> LoadedRun:
    """The run's model restored from its newest checkpoint, with its data set."""
    config, state = checkpoints.restore_trained(model_dir)
    dataset = sources.load_for(config, data_dir)
    return LoadedRun(model_dir, config, state.model, state.completed_epochs, dataset)


def _examples(run: LoadedRun) -> np.ndarray:
    """One test image per class (the first few of an unlabelled set), [N, H, W, C] float32."""
    test = run.dataset.test
    return test.float_images()[inspection.one_per_class(test.labels, len(run.dataset.class_names))]


def _label(run: LoadedRun, options: PlotOptions):
    return options.label if run.model.conditional else None


def _reconstructions(run: LoadedRun, options: PlotOptions):
    examples = _examples(run)
    return per_epoch.reconstructions_figure(run.epoch, inspection.displayable(examples),
                                          inspection.reconstructions(run.model, examples))


def _samples(run: LoadedRun, options: PlotOptions):
    return per_epoch.samples_figure(
        run.epoch, inspection.prior_samples(run.model, per_epoch.NUM_SAMPLES, options.seed))


def _conditional(run: LoadedRun, options: PlotOptions):
    if not run.model.conditional:
        raise ConfigError(f"--plot=conditional needs a conditional model; {run.model_dir} "
                          f"was trained without a classifier (--classifier_weight=0).")
    rows = np.stack([inspection.conditional_row(run.model, options.seed + row)
                     for row in range(options.conditional_rows)])
    return plots.conditional_grid(rows, [f"z #{row + 1}" for row in range(len(rows))],
                                  run.dataset.class_names,
                                  title=f"Epoch {run.epoch}: each row decodes one z as every "
                                        f"class")


def _scatter(run: LoadedRun, options: PlotOptions):
    z_mean, _ = inspection.encode(run.model, run.dataset.test.float_images())
    return per_epoch.scatter_figure(run.epoch, z_mean, run.dataset.test.labels,
                                  run.dataset.class_names)


def _manifold(run: LoadedRun, options: PlotOptions):
    if run.model.z_dim != 2:
        raise ConfigError(f"--plot=manifold needs z_dim=2 and {run.model_dir} has "
                          f"z_dim={run.model.z_dim}; try --plot=traversal.")
    values = plots.manifold_values(per_epoch.MANIFOLD_SIZE)
    return per_epoch.manifold_figure(run.epoch,
                                   inspection.manifold(run.model, values, options.label))


def _traversal(run: LoadedRun, options: PlotOptions):
    values = np.linspace(-options.traversal_range, options.traversal_range, options.steps)
    z_base = inspection.encode(run.model, _examples(run)[:1])[0][0]
    return plots.traversal(inspection.traversal(run.model, z_base, values, options.label),
                           values, title=f"Epoch {run.epoch}: one latent dimension swept per "
                                         f"row, from the first test image's latent mean")


def _interpolation(run: LoadedRun, options: PlotOptions):
    examples = _examples(run)
    label = _label(run, options)
    line = inspection.interpolation(run.model, examples[0], examples[1], options.steps,
                                    label if label is not None else 0)
    names = run.dataset.class_names or ("test image", "another")
    return plots.interpolation(line, title=f"Epoch {run.epoch}: from a {names[0]} to a "
                                           f"{names[1]} through the latent space")


# --plot: the figure of each plot name, drawn from one run's latest checkpoint; `compare`
# draws several runs (see compare_runs).
PLOTS = {"reconstructions": _reconstructions, "samples": _samples,
         "conditional": _conditional, "scatter": _scatter, "manifold": _manifold,
         "traversal": _traversal, "interpolation": _interpolation}
PLOT_NAMES = tuple(PLOTS) + ("compare",)


def _require_plot(plot: str) -> None:
    if plot not in PLOTS:
        raise ConfigError(f"--plot={plot} is not one of {', '.join(PLOT_NAMES)}.")


def figure_for(run: LoadedRun, plot: str, options: PlotOptions):
    """The Figure of one `plot` (a name in PLOTS) for a loaded run."""
    _require_plot(plot)
    return PLOTS[plot](run, options)


def plot_run(model_dir: str, plot: str, options: PlotOptions = None) -> list:
    """Writes the PNG of `plot` for the run in model_dir; returns its path in a list."""
    options = options or PlotOptions()
    if plot == "compare":
        raise ConfigError("--plot=compare draws several runs: pass --model_dirs=A,B.")
    _require_plot(plot)  # before the run is loaded
    run = load_run(model_dir, options.data_dir)
    if run.model.conditional and not 0 <= options.label < run.model.num_classes:
        raise ConfigError(f"--label={options.label} is outside 0-{run.model.num_classes - 1}, "
                          f"the classes of {run.config.dataset}.")
    figure = figure_for(run, plot, options)
    return [_write(figure, model_dir, f"{plot}_checkpoint_epoch_{run.epoch:03d}.png")]


def compare_runs(model_dirs: list, options: PlotOptions = None) -> list:
    """Writes the side-by-side comparison of several runs into the first one's figures."""
    options = options or PlotOptions()
    if len(model_dirs) < 2:
        raise ConfigError(f"--plot=compare needs two or more --model_dirs, got "
                          f"{','.join(model_dirs) or 'none'}.")
    runs, class_names = [], None
    for model_dir in model_dirs:
        run = load_run(model_dir, options.data_dir)
        if class_names is not None and tuple(run.dataset.class_names) != tuple(class_names):
            raise ConfigError(f"--model_dirs mixes data sets: {model_dir} is "
                              f"{run.config.dataset}; compare runs on the same data set.")
        class_names = run.dataset.class_names
        z_mean, _ = inspection.encode(run.model, run.dataset.test.float_images())
        name = f"{os.path.basename(os.path.normpath(model_dir))} (beta={run.config.beta:g})"
        runs.append((name, z_mean, run.dataset.test.labels, run_dir.read_metrics(model_dir)))
    names = "_vs_".join(os.path.basename(os.path.normpath(d)) for d in model_dirs)
    return [_write(plots.compare_runs(runs, class_names), model_dirs[0], f"compare_{names}.png")]


def _write(figure, model_dir: str, name: str) -> str:
    directory = os.path.join(model_dir, per_epoch.FIGURES_DIR)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    figure.savefig(path, dpi=100)
    return path
