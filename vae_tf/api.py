"""vae_tf from Python: train a run and load a trained model.

    import vae_tf
    config = vae_tf.Config.from_preset("mlp_cvae", epochs=5, model_dir="runs/cvae")
    model = vae_tf.train(config)                  # the run folder `vae_tf.train` writes
    sevens = model.generate(7, label=7, seed=0)   # NumPy [7, 28, 28, 1] in [0, 1]
    model.save("cvae.keras")                      # reloads with keras.saving.load_model
    model = vae_tf.load("cvae.keras")             # or vae_tf.load("runs/cvae")

The model is a `vae_tf.model.vae.VAE`, a Keras model: `fit`, `evaluate`, `save` and
`summary` work on it, and `vae_tf.model.inference` documents its NumPy methods. A run's
per-epoch numbers are `vae_tf.metrics(model_dir)`, and `vae_tf.figure(model_dir,
"manifold")` draws what `python -m vae_tf.visualize --plot=manifold` draws, as a
matplotlib Figure.
"""

import os

import keras

from vae_tf.config import Config
from vae_tf.errors import ConfigError, RunDirError
from vae_tf.figures import visualization
from vae_tf.model.vae import VAE
from vae_tf.run import checkpoints, run_dir, training

KERAS_SUFFIX = ".keras"


def train(config: Config) -> VAE:
    """Trains (or resumes) the run `config` describes, as `python -m vae_tf.train` does,
    and returns the trained model; its folder is `model.model_dir`."""
    result = training.train_and_evaluate(config.validate())
    result.model.model_dir = result.model_dir
    return result.model


def load(path: str) -> VAE:
    """The model of a `.keras` file, or of a run folder's newest checkpoint (with its
    averaged weights, if it keeps any), compiled and ready to train on."""
    if path.endswith(KERAS_SUFFIX):
        if not os.path.isfile(path):
            raise ConfigError(f"{path}: no such file; give a .keras file or a run's folder.")
        return keras.saving.load_model(path)
    if not os.path.isdir(path):
        raise RunDirError(f"{path}: neither a .keras file nor a run's folder.")
    model = checkpoints.restore_trained(path)[1].model
    model.model_dir = path
    return model


def metrics(model_dir: str) -> list:
    """The run's `metrics.csv`: one dict per epoch (losses, `val_` test losses, timings)."""
    return run_dir.read_metrics(model_dir)


def figure(model_dir: str, plot: str, data_dir: str = "", **options):
    """The matplotlib Figure of `python -m vae_tf.visualize --plot=PLOT` for a run:
    `reconstructions`, `samples`, `conditional`, `scatter`, `manifold`, `traversal` or
    `interpolation`. `options` are `visualization.PlotOptions`' (`seed`, `label`,
    `steps`, `traversal_range`, `conditional_rows`)."""
    run = visualization.load_run(model_dir, data_dir)
    return visualization.figure_for(run, plot, visualization.PlotOptions(data_dir=data_dir,
                                                                         **options))
