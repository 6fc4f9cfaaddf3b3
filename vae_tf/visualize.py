"""Draws a figure of a run: `python -m vae_tf.visualize --model_dir=DIR --plot=NAME`.

Works from the latest checkpoint of a finished or running run and prints the
paths of the PNGs it writes into `<model_dir>/figures/`. `--plot=compare`
takes `--model_dirs=A,B` instead, e.g. a run beside its `--beta=0` twin, and
`--plot=time_to_quality --model_dirs=A,B,C` draws the runs' test losses against
their minutes of training (with `--target_loss`, the minutes each took to reach it).
"""

from absl import flags

from vae_tf import cli
from vae_tf.errors import ConfigError
from vae_tf.figures import visualization

PLOTS = visualization.PLOT_NAMES

flags.DEFINE_string("model_dir", "", "Folder of the run to draw (as given to vae_tf.train).")
flags.DEFINE_string("plot", "reconstructions",
                    f"Figure to draw. One of: {', '.join(PLOTS)}.")
flags.DEFINE_list("model_dirs", [], "Runs to draw together (--plot=compare, "
                  "--plot=time_to_quality).")
flags.DEFINE_float("target_loss", None, "--plot=time_to_quality: a test loss (nats) to draw, "
                   "and to print the minutes each run took to reach.")
flags.DEFINE_float("traversal_range", 3.0, "--plot=traversal sweeps each latent dimension "
                   "over [-range, range].")
flags.DEFINE_integer("steps", 11, "Images along a traversal or an interpolation.")
flags.DEFINE_integer("label", 0, "Class that conditional models decode in the manifold, "
                     "traversal and interpolation.")
flags.DEFINE_integer("seed", 0, "Seed of the prior draws in samples and conditional.")
flags.DEFINE_string("data_dir", "", "Folder of the IDX files; empty uses the run's own.")
FLAGS = flags.FLAGS


def main(argv):
    del argv  # cli.run rejects positional arguments
    if FLAGS.plot not in PLOTS:
        raise ConfigError(f"--plot={FLAGS.plot} is not one of {', '.join(PLOTS)}.")
    if FLAGS.plot not in visualization.MULTI_RUN_PLOTS:
        cli.require_model_dir(FLAGS.model_dir)
    if FLAGS.steps < 2 or FLAGS.traversal_range <= 0:
        raise ConfigError(f"--steps={FLAGS.steps} must be at least 2 and --traversal_range="
                          f"{FLAGS.traversal_range} positive.")
    options = visualization.PlotOptions(
        traversal_range=FLAGS.traversal_range, steps=FLAGS.steps, label=FLAGS.label,
        seed=FLAGS.seed, data_dir=FLAGS.data_dir)
    if FLAGS.plot == "compare":
        paths = visualization.compare_runs(FLAGS.model_dirs, options)
    elif FLAGS.plot == "time_to_quality":
        paths, reached = visualization.time_to_quality_runs(FLAGS.model_dirs, FLAGS.target_loss)
        for model_dir, minutes in reached.items():
            print(f"{model_dir}: " + (f"test loss {FLAGS.target_loss:g} reached after "
                                      f"{minutes:.1f} minutes of training" if minutes is not None
                                      else f"test loss {FLAGS.target_loss:g} not reached"))
    else:
        paths = visualization.plot_run(FLAGS.model_dir, FLAGS.plot, options)
    for path in paths:
        print(path)


def entry_point():
    """The `vae-tf-visualize` console command."""
    cli.run(main)


if __name__ == "__main__":
    entry_point()
