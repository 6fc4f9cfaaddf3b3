"""Config validation, flag generation and the flagfile round trip."""

import dataclasses
import os

import pytest
from absl import flags

from vae_tf import cli, preset_flags
from vae_tf.config import Config
from vae_tf.errors import ConfigError

from conftest import FLAGFILES, REPO_ROOT, parse_config


def test_defaults_are_valid():
    assert Config().validate() == Config()


@pytest.mark.parametrize("overrides, message", [
    ({"image_size": [0]}, "--image_size=0 must be HEIGHT,WIDTH or SIZE"),
    ({"test_fraction": 1.0}, "--test_fraction=1.0 must be between 0 and 1"),
    ({"arch": "resnet"}, "--arch=resnet is not one of mlp, conv"),
    ({"likelihood": "poisson"}, "--likelihood=poisson is not one of"),
    ({"scale": "exp"}, "--scale=exp is not one of"),
    ({"z_dim": 0}, "--z_dim=0 must be at least 1"),
    ({"batch_size": 0}, "--batch_size=0 must be at least 1"),
    ({"epochs": 0}, "--epochs=0 must be at least 1"),
    ({"learning_rate": -0.1}, "--learning_rate=-0.1 must be positive"),
    ({"beta": -1.0}, "--beta=-1.0 must be 0 or more"),
    ({"decoder_std": 0.0}, "--decoder_std=0.0 must be positive"),
    ({"dropout": 1.0}, r"--dropout=1.0 must be in \[0, 1\)"),
    ({"dense_dropout": -0.1}, r"--dense_dropout=-0.1 must be in \[0, 1\)"),
    ({"ema_momentum": 1.0}, r"--ema_momentum=1.0 must be in \[0, 1\)"),
    ({"flow_steps": -1}, "--flow_steps=-1 must be 0 \\(no flow\\) or more"),
    ({"flow_units": 0}, "--flow_units=0 must be at least 1"),
    ({"classifier_weight": -2.0}, "--classifier_weight=-2.0 must be 0"),
    ({"encoder_layers": []}, "--encoder_layers= needs one or more positive integers"),
    ({"conv_filters": [64, 0, 64]}, "--conv_filters=64,0,64 needs one or more positive"),
    ({"encoder_strides": [2, 2]}, "--encoder_strides has 2 entries but --conv_filters has 3"),
    ({"intra_op_threads": -1}, "--intra_op_threads=-1 must be 0"),
    ({"mixed_precision": "float8"}, "--mixed_precision=float8 is not one of none, bfloat16"),
    ({"train_iw_samples": 0}, "--train_iw_samples=0 must be at least 1"),
    ({"train_iw_samples": 5, "classifier_weight": 1.0},
     "--train_iw_samples=5 weighs draws of z alone: use it with --classifier_weight=0"),
])
def test_each_impossible_value_names_its_flag(overrides, message):
    with pytest.raises(ConfigError, match=message) as error:
        Config(**overrides).validate()
    assert "\n" not in str(error.value)


def test_every_field_becomes_a_flag_with_its_default_and_help():
    flag_values = flags.FlagValues()
    cli.define_config_flags(flag_values)
    for field in dataclasses.fields(Config):
        flag = flag_values[field.name]
        assert flag.help.startswith(field.metadata["help"])
    assert flag_values["arch"].help.endswith("One of: mlp, conv.")
    assert parse_config() == Config()


def test_list_flags_must_be_integers():
    with pytest.raises(ConfigError, match="--encoder_layers=a,b must be comma-separated"):
        parse_config("--encoder_layers=a,b")


def test_resolved_flag_lines_reproduce_the_config(tmp_path):
    config = parse_config("--arch=mlp", "--z_dim=3", "--encoder_layers=64,32", "--beta=0.5",
                          "--nojit_compile", "--classifier_weight=2")
    flagfile = tmp_path / "flags.txt"
    flagfile.write_text("\n".join(config.to_flag_lines()) + "\n")
    assert parse_config(f"--flagfile={flagfile}") == config


@pytest.mark.parametrize("flagfile", FLAGFILES, ids=lambda path: path.rsplit("/", 1)[-1])
def test_presets_parse_and_differ_from_the_defaults(flagfile):
    config = parse_config(f"--flagfile={flagfile}")
    assert config != Config()


def test_every_preset_has_a_row_in_the_readme_presets_table():
    """A user finds the presets in README's table: a new flagfile without a row fails."""
    readme = open(os.path.join(REPO_ROOT, "README.md")).read()
    table = readme.split("## The presets", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("`")[1] for line in table.splitlines() if line.startswith("| `")}
    presets = set(preset_flags.names())
    assert presets - rows == set(), "presets without a row in README's presets table"
    assert rows - presets == set(), "README rows naming no preset in flags/"


def test_presets_reproduce_the_tutorial_hyper_parameters():
    by_name = {path.rsplit("/", 1)[-1]: parse_config(f"--flagfile={path}") for path in FLAGFILES}
    mlp = by_name["mlp_conditional.flags"]
    assert (mlp.dataset, mlp.arch, mlp.encoder_layers, mlp.activation, mlp.likelihood,
            mlp.decoder_std, mlp.z_dim, mlp.classifier_weight, mlp.epochs, mlp.batch_size,
            mlp.learning_rate) == ("mnist", "mlp", [128], "sigmoid", "gaussian", 0.5, 10, 10.0,
                                   20, 100, 1e-3)
    conv = by_name["conv_squared_error.flags"]
    assert (conv.dataset, conv.z_dim, conv.likelihood, conv.scale, conv.learning_rate,
            conv.batch_size, conv.epochs * conv.steps_per_epoch) == (
        "mnist", 8, "squared_error", "log_std", 5e-4, 64, 30000)
    bernoulli = by_name["conv_bernoulli.flags"]
    assert (bernoulli.dataset, bernoulli.scale, bernoulli.likelihood, bernoulli.z_dim) == (
        "fashion_mnist", "softplus", "bernoulli", 2)


def test_identity_covers_model_shape_but_not_training_length():
    base = Config()
    assert base.identity() != Config(arch="mlp").identity()
    assert base.identity() != Config(z_dim=3).identity()
    # The seed draws the test split of a folder and the data order: another seed is another run.
    assert base.identity() != Config(seed=1).identity()
    assert base.identity() == Config(epochs=50, learning_rate=0.1, batch_size=7).identity()


def test_default_model_dir_names_the_configuration():
    assert Config(dataset="mnist", arch="mlp", z_dim=10, likelihood="gaussian",
                  classifier_weight=10.0).resolved_model_dir() == \
        "runs/mnist-mlp-gaussian-z10-conditional"
    assert Config(model_dir="/tmp/x").resolved_model_dir() == "/tmp/x"
