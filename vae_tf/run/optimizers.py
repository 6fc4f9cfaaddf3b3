"""Adam whose per-variable update is TensorFlow's fused `ResourceApplyAdam` kernel.

Keras' Adam updates each variable with about ten separate element-wise ops, so
that a small model such as the MLP preset spends a sixth of its training step
in them. TensorFlow's kernel computes the same update in one pass:

    alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
    m += (g - m) * (1 - beta_1);  v += (g^2 - v) * (1 - beta_2)
    w -= alpha * m / (sqrt(v) + epsilon)

With `use_ema`, Keras keeps a moving average of the weights beside them
(Polyak averaging). Keras copies it into the weights at the end of every
`fit`; vae_tf trains a resumed run in more than one `fit` call and checkpoints
the raw weights, so `AveragedWeights` keeps them in place and `load_average`
is what puts the average into a trained model.

Its variables are Keras Adam's own, so checkpoints of either restore into the
other. Reading them uses Keras' private attributes (`compat.adam_slots`);
`make_adam` falls back to Keras' Adam where they are missing.
"""

import keras
import tensorflow as tf

from vae_tf import compat, log


class AveragedWeights:
    """Mixin for a Keras optimizer: `fit` leaves the raw weights; `load_average` loads the mean."""

    def finalize_variable_values(self, var_list):
        """Does nothing: Keras' would overwrite the raw weights with their average."""

    def load_average(self, var_list):
        """Overwrites `var_list` with their moving average (Keras' end-of-`fit` step)."""
        super().finalize_variable_values(var_list)


@keras.saving.register_keras_serializable(package="vae_tf")
class KerasAdam(AveragedWeights, keras.optimizers.Adam):
    """keras.optimizers.Adam whose `fit` keeps the raw weights (see `AveragedWeights`)."""


def load_average(model: keras.Model) -> bool:
    """Puts the optimizer's moving average of the weights into `model`, if it keeps one.

    Returns whether it did. After this, the model's weights are no longer the
    raw ones training continues from: use it on a model that is done training.
    """
    optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)
    if not getattr(optimizer, "use_ema", False):
        return False
    optimizer.load_average(model.trainable_variables)
    return True


@keras.saving.register_keras_serializable(package="vae_tf")
class FusedAdam(AveragedWeights, keras.optimizers.Adam):
    """keras.optimizers.Adam (without amsgrad), updating through `ResourceApplyAdam`."""

    def __init__(self, learning_rate=0.001, **kwargs):
        if kwargs.get("amsgrad"):
            raise ValueError("FusedAdam has no amsgrad variant; use keras.optimizers.Adam")
        super().__init__(learning_rate=learning_rate, **kwargs)

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        momentum, velocity = compat.adam_slots(self, variable)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=momentum.handle, v=velocity.handle,
            beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step),
            lr=tf.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
            epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype))


def make_adam(learning_rate: float, ema_momentum: float = 0.0) -> keras.optimizers.Adam:
    """FusedAdam where this Keras keeps Adam's slots as tested, else Keras' Adam, with a note.

    `ema_momentum` above 0 keeps a moving average of the weights (Keras' `use_ema`).
    """
    averaging = dict(use_ema=True, ema_momentum=ema_momentum) if ema_momentum else {}
    if compat.has_adam_slots():
        return FusedAdam(learning_rate, **averaging)
    log.info(f"keras {keras.__version__} keeps Adam's moments elsewhere than Keras "
             f"{compat.TESTED_WITH['keras']}; training with keras.optimizers.Adam (the same "
             f"updates, a little slower).")
    return KerasAdam(learning_rate, **averaging)
