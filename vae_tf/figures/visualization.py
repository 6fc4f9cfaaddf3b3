"""Figures of a trained run, from its latest checkpoint: what `vae_tf.visualize` draws.

`plot_run` works on a finished run or on one still training (the checkpoint
manager only publishes complete checkpoints). It writes PNGs into
`<model_dir>/figures/`, named after the plot and the checkpoint's epoch, and
returns their paths.
"""

import dataclasses
import os

from vae_tf.data import sources
from vae_tf.errors import ConfigError
from vae_tf.evaluation import time_to_quality
from vae_tf.figures import catalogue, inspection, per_epoch, plots
from vae_tf.figures.catalogue import PlotOptions
from vae_tf.run import checkpoints, layout, run_dir

# --plot: a figure of the catalogue drawn from one run's latest checkpoint, or `compare`,
# which draws several runs (see compare_runs).
PLOTS = catalogue.plot_names()
MULTI_RUN_PLOTS = ("compare", "time_to_quality")
PLOT_NAMES = PLOTS + MULTI_RUN_PLOTS


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


def _require_plot(plot: str) -> None:
    names = catalogue.plot_names() + MULTI_RUN_PLOTS
    if plot not in names:
        raise ConfigError(f"--plot={plot} is not one of {', '.join(names)}.")


def figure_for(run: LoadedRun, plot: str, options: PlotOptions):
    """The Figure of one `plot` (a name in `PLOTS`) for a loaded run."""
    if plot not in catalogue.plot_names():
        _require_plot(plot)
        raise ConfigError(f"--plot={plot} draws several runs: pass --model_dirs=A,B.")
    figure = catalogue.CATALOGUE[plot]
    if (missing := figure.needs(run.model)) is not None:
        raise ConfigError(f"--plot={plot} {missing.format(run=run.model_dir)}.")
    inputs = per_epoch.FixedInputs.from_split(run.dataset.test, run.dataset.class_names,
                                              options.seed)
    return figure.draw(run.epoch, figure.compute(run.model, inputs, options), inputs, options)


def plot_run(model_dir: str, plot: str, options: PlotOptions = None) -> list:
    """Writes the PNG of `plot` for the run in model_dir; returns its path in a list."""
    options = options or PlotOptions()
    if plot in MULTI_RUN_PLOTS:
        raise ConfigError(f"--plot={plot} draws several runs: pass --model_dirs=A,B.")
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


def time_to_quality_runs(model_dirs: list, target=None) -> tuple:
    """Writes the runs' test losses against training minutes into the first one's figures;
    returns ([its path], {model_dir: minutes to reach `target`, or None})."""
    if not model_dirs:
        raise ConfigError("--plot=time_to_quality needs one or more --model_dirs.")
    curves = [time_to_quality.curve(model_dir) for model_dir in model_dirs]
    figure = plots.time_to_quality(curves, target)
    names = "_vs_".join(run.name for run in curves)
    reached = ({model_dir: time_to_quality.minutes_to_reach(run, target)
                for model_dir, run in zip(model_dirs, curves)} if target is not None else {})
    return [_write(figure, model_dirs[0], f"time_to_quality_{names}.png")], reached


def _write(figure, model_dir: str, name: str) -> str:
    return per_epoch.write_png(figure, os.path.join(model_dir, layout.FIGURES_DIR, name))
