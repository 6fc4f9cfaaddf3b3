"""Exports a run's model as a SavedModel: `python -m vae_tf.export --model_dir=DIR`.

Writes `<model_dir>/saved_model/` from the latest checkpoint; it loads with
plain `tf.saved_model.load` and offers the `decode`, `encode` and `generate`
signatures described in `vae_tf.exporting`.
"""

from absl import flags

from vae_tf import cli

flags.DEFINE_string("model_dir", "", "Folder of the run to export (as given to vae_tf.train).")
flags.DEFINE_boolean("overwrite", False, "Replace an existing <model_dir>/saved_model.")
FLAGS = flags.FLAGS


def main(argv):
    del argv  # cli.run rejects positional arguments
    cli.require_model_dir(FLAGS.model_dir)
    from vae_tf import checkpoints, exporting

    config, state = checkpoints.restore_trained(FLAGS.model_dir)
    path = exporting.export_model(state.model, config, FLAGS.model_dir, FLAGS.overwrite)
    print(f"vae_tf: exported epoch {state.completed_epochs} to {path}")


def entry_point():
    """The `vae-tf-export` console command."""
    cli.run(main)


if __name__ == "__main__":
    entry_point()
