"""A trainable model: the run's VAE built and compiled with its Adam and its settings.

`build` is the one place that assembles what a run trains: the VAE of
`vae_tf.model.vae.build_vae`, Adam (`optimizers.make_adam`, averaging its weights
with `--ema_momentum`), and `compile` with the run's XLA and steps-per-execution
choices, which must be decided by then (`tuning.choose` when training starts,
`tuning.resolved` from the run's record afterwards). Checkpoints restore into
it (`checkpoints.restore_run`); `tuning` and `benchmarking` time it.
"""

from vae_tf.config import AUTO
from vae_tf.model.vae import VAE, build_vae
from vae_tf.run import optimizers


def build(config, spec) -> tuple:
    """(model, Adam) for `config` and the data's `spec`, the optimizer built.

    Restoring into unbuilt objects silently does nothing, so the optimizer's
    variables exist on return; the model's are made by `build_vae`. Under
    `--mixed_precision=float16`, `compile` wraps Adam in a LossScaleOptimizer
    (`model.optimizer`); checkpoints hold Adam itself, returned apart, so their
    layout does not depend on the precision.
    """
    if config.jit_compile == "auto" or config.steps_per_execution == AUTO:
        raise ValueError("decide --jit_compile and --steps_per_execution (vae_tf.run.tuning) "
                         "before building a trainable model")
    model: VAE = build_vae(config, spec.num_classes, spec.image_shape)
    adam = optimizers.make_adam(config.learning_rate, config.ema_momentum)
    model.compile(optimizer=adam, jit_compile=config.jit_compile == "true",
                  steps_per_execution=config.steps_per_execution)
    model.optimizer.build(model.trainable_variables)
    return model, adam
