"""Explores a run's latent space in the browser: `python -m vae_tf.explore --model_dir=DIR`.

Starts a local web page (bound to 127.0.0.1 unless --host says otherwise) that
decodes any point of the latent space through the run's exported SavedModel:
sliders for every latent dimension, the plane of a 2-D latent space with the
test images on it, a class picker for conditional models, samples from the
prior, test images' encodings and the line between two of them.
"""

from absl import flags

from vae_tf import cli

flags.DEFINE_string("model_dir", "", "Folder of the run to explore (as given to vae_tf.train); "
                    "its newest export in saved_model/ decodes.")
flags.DEFINE_string("host", "127.0.0.1", "Address to serve on; the default answers only this "
                    "machine. 0.0.0.0 answers every network this machine is on.")
flags.DEFINE_integer("port", 8000, "Port to serve on; 0 picks a free one.")
flags.DEFINE_integer("num_test_images", 1000, "Test images to encode for the plane and the "
                     "picker (0: none).")
FLAGS = flags.FLAGS


def main(argv):
    del argv  # cli.run rejects positional arguments
    cli.require_model_dir(FLAGS.model_dir)
    if FLAGS.num_test_images < 0:
        from vae_tf.errors import ConfigError

        raise ConfigError(f"--num_test_images={FLAGS.num_test_images} must be 0 or more.")
    from vae_tf.figures import explorer

    explorer.serve(FLAGS.model_dir, FLAGS.host, FLAGS.port, FLAGS.num_test_images)


def entry_point():
    """The `vae-tf-explore` console command."""
    cli.run(main)


if __name__ == "__main__":
    entry_point()
