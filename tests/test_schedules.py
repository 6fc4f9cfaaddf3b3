"""--learning_rate_drops: parsing, refusal of bad values, and the rate of each epoch."""

import pytest

from vae_tf.errors import ConfigError
from vae_tf.run import schedules

from conftest import parse_config


def test_each_epoch_gets_the_rate_of_the_last_drop_before_it():
    drops = schedules.parse_drops("120:0.0003, 180:1e-4")
    assert drops == [(120, 0.0003), (180, 0.0001)]
    epochs = (0, 119, 120, 179, 180, 500)
    rates = [schedules.learning_rate_at(epoch, 0.001, drops) for epoch in epochs]
    assert rates == [0.001, 0.001, 0.0003, 0.0003, 0.0001, 0.0001]
    assert schedules.learning_rate_at(7, 0.002, schedules.parse_drops("")) == 0.002


@pytest.mark.parametrize("text, message", [
    ("120", "'120' is not EPOCH:RATE"),
    ("a:0.1", "'a:0.1' is not EPOCH:RATE"),
    ("120:fast", "is not EPOCH:RATE"),
    ("180:0.0001,120:0.0003", "increasing"),
    ("120:0", "rates positive"),
    ("0:0.0001", "epochs must be positive"),
])
def test_bad_drops_are_refused_naming_the_flag(text, message):
    with pytest.raises(ConfigError, match=message) as caught:
        parse_config(f"--learning_rate_drops={text}")
    assert str(caught.value).startswith(f"--learning_rate_drops={text}:")
    assert "\n" not in str(caught.value)
