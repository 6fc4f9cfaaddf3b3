"""Measures training and evaluation speed: `python -m vae_tf.benchmark --flagfile=...`.

Takes the same flags and flagfiles as `vae_tf.train`, runs --steps training steps
(after a warm-up) --repeats times, and prints one JSON line per measurement:
the matmul peak of this CPU, FLOPs per training image, training throughput and
its fraction of that peak, the same model trained the plain way for the
speed-up, evaluation throughput and peak memory. Nothing is written to
--model_dir. --synthetic also times one repeated in-memory batch, to show
whether the data pipeline holds training back; --profile_dir traces training
with the TensorFlow profiler and prints where the step's time goes;
--time_to_loss=NATS also trains the configuration from scratch and reports the
minutes of training it took to reach that test loss.
"""

import json

from absl import flags

from vae_tf import cli
from vae_tf.errors import ConfigError

cli.define_config_flags()
flags.DEFINE_integer("steps", 200, "Training steps per timed repeat.")
flags.DEFINE_integer("repeats", 5, "Timed repeats; the JSON gives their median and spread.")
flags.DEFINE_boolean("synthetic", False, "Also time training on one repeated batch, "
                     "without the data pipeline.")
flags.DEFINE_boolean("plain", True, "Also time the plain way (model.fit, no XLA, one step "
                     "per execution) for the speed-up ratio.")
flags.DEFINE_string("profile_dir", "", "Also trace 10 training calls with the TensorFlow "
                    "profiler into this folder (for TensorBoard's profile plugin) and print "
                    "the CPU time per step of the costliest op types.")
flags.DEFINE_boolean("whole_epochs", False, "Also time whole epochs (training, the test set "
                     "and every per-epoch extra) of vae_tf.train against the plain way "
                     "(model.fit with validation_data): the median epoch of epochs 2-6 of one run "
                     "each, every callback included.")
flags.DEFINE_float("time_to_loss", None, "Also train the configuration from scratch, as "
                   "vae_tf.train would (--epochs of it), and report the minutes of training "
                   "until the test loss first reached this many nats.")
FLAGS = flags.FLAGS


def main(argv):
    del argv  # cli.run rejects positional arguments
    for name in ("steps", "repeats"):
        if FLAGS[name].value < 1:
            raise ConfigError(f"--{name}={FLAGS[name].value} must be at least 1.")
    config = cli.config_from_flags()
    from vae_tf.evaluation import benchmarking

    for measurement in benchmarking.run(config, FLAGS.steps, FLAGS.repeats, FLAGS.synthetic,
                                        FLAGS.plain, FLAGS.profile_dir,
                                        FLAGS.whole_epochs):
        print(json.dumps(measurement, sort_keys=True), flush=True)
    if FLAGS.time_to_loss is not None:
        from vae_tf.evaluation import time_to_quality

        print(json.dumps(time_to_quality.measure(config, FLAGS.time_to_loss), sort_keys=True),
              flush=True)


def entry_point():
    """The `vae-tf-benchmark` console command."""
    cli.run(main)


if __name__ == "__main__":
    entry_point()
