"""Exports a run's model: `python -m vae_tf.export --model_dir=DIR [--format=tflite|keras]`.

`--format=saved_model` writes `<model_dir>/saved_model/<epoch>/` from the latest
checkpoint, and points `saved_model/` at it; it loads with plain
`tf.saved_model.load` and offers the `decode`, `encode` and `generate` signatures
described in `vae_tf.run.exporting`. `--format=tflite` writes the decoder as
`<model_dir>/decoder.tflite` (`decoder_float16.tflite` or `decoder_int8.tflite`
with `--quantize`). `--format=keras` writes `<model_dir>/vae-<epoch>.keras`.
"""

from absl import flags

from vae_tf import cli

flags.DEFINE_string("model_dir", "", "Folder of the run to export (as given to vae_tf.train).")
flags.DEFINE_boolean("overwrite", False, "Replace an existing export of the same epoch in "
                     "<model_dir>/saved_model/.")
flags.DEFINE_enum("format", "saved_model", ["saved_model", "tflite", "keras"],
                  "saved_model: the versioned SavedModel with every signature; tflite: the "
                  "decoder for TensorFlow Lite; keras: the model and its optimizer as "
                  "<model_dir>/vae-<epoch>.keras, for keras.saving.load_model.")
flags.DEFINE_enum("quantize", "none", ["none", "float16", "int8"],
                  "TFLite weights: float32 (none), float16, or int8 with float activations "
                  "(--format=tflite).")
FLAGS = flags.FLAGS


def main(argv):
    del argv  # cli.run rejects positional arguments
    cli.require_model_dir(FLAGS.model_dir)
    from vae_tf.files import reporting_unwritable
    from vae_tf.run import checkpoints, exporting

    config, state = checkpoints.restore_trained(FLAGS.model_dir)
    with reporting_unwritable(FLAGS.model_dir, "the new export (any earlier one is kept whole)"):
        if FLAGS.format == "tflite":
            path = exporting.export_tflite(state.model, FLAGS.model_dir, FLAGS.quantize)
        elif FLAGS.format == "keras":
            path = exporting.export_keras(state.model, FLAGS.model_dir, state.completed_epochs,
                                          FLAGS.overwrite)
        else:
            path = exporting.export_model(state.model, config, FLAGS.model_dir,
                                          FLAGS.overwrite, version=state.completed_epochs)
    print(f"vae_tf: exported epoch {state.completed_epochs} to {path}")


def entry_point():
    """The `vae-tf-export` console command."""
    cli.run(main)


if __name__ == "__main__":
    entry_point()
