"""Measures a run's test likelihood: `python -m vae_tf.evaluate --model_dir=DIR`.

Reports the test ELBO (with the analytic KL), the importance-weighted estimate
of -log p(x) with --iw_samples samples per image, and bits per dimension, with
a progress bar; prints them, then keeps them in <model_dir>/evaluations/ (one file
per evaluation, so none is lost), in <model_dir>/evaluation.json (the newest) and
in TensorBoard. A stopped evaluation resumes where it stopped when run again
(`vae_tf.evaluation.part_done`).
"""

import json
import os

from absl import flags

from vae_tf import cli
from vae_tf.errors import ConfigError

flags.DEFINE_string("model_dir", "", "Folder of the run to evaluate (as given to vae_tf.train).")
flags.DEFINE_integer("num_examples", 0, "Evaluate the first N test images; 0 means all.")
flags.DEFINE_integer("iw_samples", 5000, "Importance samples K per image for the IWAE bound.")
cli.define_auto_integer("batch_size", "Test images per call of the IWAE estimate; auto times "
                        "a few shapes of call (and XLA) on the first test images, keeps the "
                        "fastest and caches the choice per machine and model.")
cli.define_auto_integer("chunk_size", "Importance samples per image drawn at once; bounds the "
                        "memory. auto: measured with --batch_size.")
cli.define_auto_boolean("jit_compile", "auto", "Compile the IWAE estimate with XLA: true, false "
                        "or auto (measured with --batch_size).")
flags.DEFINE_string("data_dir", "", "Folder of the IDX files; empty uses the run's own.")
flags.DEFINE_boolean("judge", True, "Grade 10,000 samples from the prior with an independent "
                     "classifier trained on the training split (once per data set, then "
                     "cached in $VAE_TF_CACHE_DIR or ~/.cache/vae_tf): judged class agreement "
                     "for conditional models, and the Fréchet distance to the test images.")
FLAGS = flags.FLAGS


def main(argv):
    del argv  # cli.run rejects positional arguments
    cli.require_model_dir(FLAGS.model_dir)
    if FLAGS.iw_samples < 1:
        raise ConfigError(f"--iw_samples={FLAGS.iw_samples} must be at least 1.")
    if FLAGS.num_examples < 0:
        raise ConfigError(f"--num_examples={FLAGS.num_examples} must be 0 (all) or more.")
    from vae_tf.evaluation import elbo_iwae

    result = elbo_iwae.evaluate_run(FLAGS.model_dir, FLAGS.num_examples, FLAGS.iw_samples,
                                     FLAGS.batch_size, FLAGS.chunk_size, FLAGS.data_dir,
                                     judged=FLAGS.judge, jit_compile=FLAGS.jit_compile,
                                     write=False)
    # Printed first, so that a folder that cannot be written loses nothing of the work.
    print(json.dumps(result, indent=2, sort_keys=True), flush=True)
    path = elbo_iwae.record(FLAGS.model_dir, result)
    print(f"vae_tf: wrote {path} and {os.path.join(FLAGS.model_dir, 'evaluation.json')}")


def entry_point():
    """The `vae-tf-evaluate` console command."""
    cli.run(main)


if __name__ == "__main__":
    entry_point()
