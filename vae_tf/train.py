"""Trains a VAE: `python -m vae_tf.train --dataset=fashion_mnist --z_dim=2`.

Presets reproducing the three tutorials are flagfiles:
`python -m vae_tf.train --flagfile=flags/mlp_conditional.flags`. Every flag is
listed by `--help`; rerunning a command resumes its run.
"""

from vae_tf import cli

cli.define_config_flags()


def main(argv):
    del argv  # cli.run rejects positional arguments
    config = cli.config_from_flags()
    from vae_tf import training

    result = training.train_and_evaluate(config)
    if result.metrics:
        last = result.metrics[-1]
        print(f"vae_tf: epoch {result.epochs}: test loss {last.get('val_loss', float('nan')):.2f} "
              f"nats; checkpoints, TensorBoard logs and metrics.csv are in {result.model_dir}")


def entry_point():
    """The `vae-tf-train` console command."""
    cli.run(main)


if __name__ == "__main__":
    entry_point()
