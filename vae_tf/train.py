"""Trains a VAE: `python -m vae_tf.train --dataset=fashion_mnist --z_dim=2`.

Presets reproducing the three tutorials are flagfiles:
`python -m vae_tf.train --flagfile=flags/mlp_conditional.flags`. Every flag is
listed by `--help`; rerunning a command resumes its run.
"""

import sys
import types

from vae_tf import cli

cli.define_config_flags()


def main(argv):
    del argv  # cli.run rejects positional arguments
    config = cli.config_from_flags()
    from vae_tf.run import training

    result = training.train_and_evaluate(config)
    if result.metrics:
        last = result.metrics[-1]
        bound = (f" (the {config.train_iw_samples}-sample importance-weighted bound)"
                 if config.train_iw_samples > 1 else "")
        print(f"vae_tf: epoch {result.epochs}: test loss {last.get('val_loss', float('nan')):.2f} "
              f"nats{bound}; checkpoints, TensorBoard logs and metrics.csv are in "
              f"{result.model_dir}")


def entry_point():
    """The `vae-tf-train` console command."""
    cli.run(main)


class _CallableModule(types.ModuleType):
    """This module, callable as `vae_tf.train(config)`.

    Importing `vae_tf.train` (as `python -m vae_tf.train` and `vae-tf-train` do) makes the
    package's `train` attribute this module in place of the API's function, so the
    module forwards calls to it.
    """

    def __call__(self, config):
        from vae_tf import api

        return api.train(config)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    entry_point()
