"""The learning rate of each epoch: --learning_rate, lowered at chosen epochs.

`--learning_rate_drops=120:0.0003,180:0.0001` trains epochs 1-120 at
--learning_rate, epochs 121-180 at 0.0003 and every later one at 0.0001: what
rerunning `vae_tf.train` with a higher --epochs and a lower --learning_rate does,
in one command. Keras' `LearningRateScheduler` applies it at each epoch's start,
so a resumed run, even one resumed inside an epoch, trains at the right rate.
"""

import keras

from vae_tf.errors import ConfigError

EXAMPLE = "120:0.0003,180:0.0001"


def parse_drops(text: str) -> list:
    """[(epoch, rate), ...] of a --learning_rate_drops value; [] for an empty one.

    Each epoch is the number of epochs trained before the rate changes; they
    must increase, and every rate must be positive.
    """
    drops = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        epoch, colon, rate = item.partition(":")
        try:
            drop = (int(epoch), float(rate))
        except ValueError:
            drop = None
        if not colon or drop is None:
            raise ConfigError(f"--learning_rate_drops={text}: {item!r} is not EPOCH:RATE; "
                              f"write for example --learning_rate_drops={EXAMPLE}.")
        if drop[0] < 1 or drop[1] <= 0 or (drops and drop[0] <= drops[-1][0]):
            raise ConfigError(f"--learning_rate_drops={text}: epochs must be positive and "
                              f"increasing and rates positive, as in {EXAMPLE}.")
        drops.append(drop)
    return drops


def learning_rate_at(epoch: int, base: float, drops: list) -> float:
    """The rate of 0-based `epoch`: that of the last drop at or before it, else `base`."""
    rate = base
    for first_epoch, dropped in drops:
        if epoch >= first_epoch:
            rate = dropped
    return rate


def scheduler(base: float, drops: list) -> keras.callbacks.LearningRateScheduler:
    """The Keras callback that sets the optimizer's rate at every epoch's start."""
    return keras.callbacks.LearningRateScheduler(
        lambda epoch, _rate: learning_rate_at(epoch, base, drops))
