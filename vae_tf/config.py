"""The configuration of one vae_tf run: every setting, its default and its help.

`Config` is the single source of truth. The command-line flags are generated
from its fields (defaults, help strings and allowed values included), the
resolved values are written to `<model_dir>/flags.txt` and `config.json`, and
library code receives a `Config`, never absl FLAGS. Fields marked
``identity=True`` define the model and its data; a model directory holding a
run whose identity differs from the requested one is refused.
"""

import dataclasses
import json
import os
from typing import Any

from vae_tf.data import pipelines
from vae_tf.errors import ConfigError
from vae_tf.model import losses, networks, priors, vae
from vae_tf.run import distribution, schedules

# The allowed values of each choice come from the table that implements it.
ARCHS = tuple(vae.ARCHITECTURES)
SCALES = tuple(networks.SCALES)
LIKELIHOODS = tuple(losses.LIKELIHOODS)
BINARIZATIONS = pipelines.BINARIZATIONS
STRATEGIES = tuple(distribution.STRATEGIES)
PRECISIONS = tuple(vae.DTYPE_POLICIES)
CONDITIONS = vae.CONDITIONS
ACTIVATIONS = ("sigmoid", "relu", "leaky_relu", "tanh", "elu", "softplus", "glu")

# The values of a setting that a measurement may decide (`vae_tf.run.tuning`); as a flag,
# `--name` and `--noname` still mean true and false.
AUTO_BOOL = ("auto", "true", "false")
# An integer setting a measurement may decide: `auto` is stored as AUTO (0).
AUTO = 0
AUTO_INT = ("auto", "a positive integer")


def _field(default, help, choices=None, identity=False):
    """A dataclass field that carries its flag help and allowed values."""
    metadata = {"help": help, "choices": choices, "identity": identity}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass
class Config:
    """All settings of a training run; see each field's help."""

    # Data.
    dataset: str = _field(
        "fashion_mnist", "Data set to train on: mnist or fashion_mnist (found offline, see "
        "--data_dir); the name of any image data set of tensorflow-datasets (kmnist, "
        "emnist/digits, cifar10...), downloaded when there is a network; a folder of PNG or "
        "JPEG images (one sub-folder per class gives labels; train/ and test/ sub-folders "
        "give the splits); or an .npz file with x_train, x_test and optionally y_train, "
        "y_test.", identity=True)
    data_dir: str = _field(
        "", "Folder holding the four IDX .gz files of --dataset=mnist or fashion_mnist (or a "
        "<dataset>/ sub-folder with them); when given, no other place is searched. Empty: "
        "look in $VAE_TF_DATA_DIR/<dataset>/, then the Debian package's folder, then ask "
        "tensorflow-datasets.")
    image_size: list = _field(
        [], "Resize every image to HEIGHT,WIDTH (or SIZE for square images) on load; needed "
        "when a folder's images differ in size. Empty: keep the images' own size.",
        identity=True)
    test_fraction: float = _field(
        0.1, "Share of a folder's images (or of a tensorflow-datasets set without a test "
        "split) held out as the test split, chosen with --seed, when there is no test/ "
        "sub-folder.", identity=True)
    memory_budget_mb: int = _field(
        0, "A data set whose images take more than this many MB streams from disk through "
        "tf.data instead of being held in memory. 0: a quarter of this machine's memory.")
    model_dir: str = _field(
        "", "Folder for checkpoints, TensorBoard logs, metrics.csv and flags.txt. Empty: "
        "runs/<dataset>-<arch>-<likelihood>-z<z_dim>. Rerunning into the same folder resumes.")
    overwrite: bool = _field(
        False, "Start a new run even if --model_dir holds one (of any configuration); the old "
        "run is moved aside to <model_dir>.replaced-<time>, not deleted.")

    binarize: str = _field(
        "none", "Binarise pixels as x ~ Bernoulli(grey value): 'dynamic' draws afresh for "
        "every training batch (Burda et al., 2016), 'static' once; test images are binarised "
        "once with a fixed seed, so that runs compare. 'none' keeps grey values.",
        BINARIZATIONS, identity=True)

    # Model.
    arch: str = _field("conv", "Encoder and decoder architecture.", ARCHS, identity=True)
    z_dim: int = _field(8, "Number of latent dimensions (2 gives latent-plane plots).",
                        identity=True)
    encoder_layers: list = _field([128], "Hidden units of the MLP encoder (--arch=mlp).",
                                  identity=True)
    decoder_layers: list = _field([128], "Hidden units of the MLP decoder (--arch=mlp).",
                                  identity=True)
    activation: str = _field("sigmoid", "Hidden activation of the MLP encoder, decoder and "
                             "classifier (--arch=mlp); glu: gated linear units, "
                             "a * sigmoid(b).", ACTIVATIONS, identity=True)
    conv_filters: list = _field([64, 64, 64], "Filters of the conv encoder's Conv2D layers "
                                "and of the decoder's Conv2DTranspose layers (--arch=conv).",
                                identity=True)
    conv_kernel_size: int = _field(4, "Kernel size of every conv layer (--arch=conv).",
                                   identity=True)
    encoder_strides: list = _field([2, 2, 1], "Strides of the encoder's Conv2D layers; one "
                                   "per --conv_filters entry (--arch=conv).", identity=True)
    decoder_strides: list = _field([2, 1, 1], "Strides of the decoder's Conv2DTranspose "
                                   "layers; one per --conv_filters entry (--arch=conv).",
                                   identity=True)
    decoder_dense_units: int = _field(24, "Width of the conv decoder's first Dense layer, "
                                      "before Dense(49) and the 7x7x1 reshape (--arch=conv).",
                                      identity=True)
    decoder_seed_channels: int = _field(
        0, "Channels of the conv decoder's seed image, which also picks its output layer: 0, "
        "the tutorial's one channel (at 28x28x1 flattened into Dense(784)); C, a seed of C "
        "channels and a transposed-conv output at every image size (--arch=conv).",
        identity=True)
    leaky_relu_slope: float = _field(0.3, "Negative slope of the conv layers' leaky ReLU.")
    dropout: float = _field(0.2, "Dropout rate after each conv layer during training "
                            "(--arch=conv); 0 turns it off.")
    dense_dropout: float = _field(0.0, "Dropout rate after each hidden Dense layer of the "
                                  "MLP encoder and decoder during training (--arch=mlp); "
                                  "0 turns it off.")
    scale: str = _field("softplus", "How the encoder parameterises the scale of q(z|x): "
                        "log-variance, log-standard-deviation, or softplus standard deviation.",
                        SCALES, identity=True)
    flow_steps: int = _field(
        0, "Steps of an inverse autoregressive flow on the encoder's Gaussian (Kingma et al., "
        "2016): a richer q(z|x) with the same N(0, I) prior and one stochastic layer. 0: "
        "the plain diagonal Gaussian.", identity=True)
    prior: str = _field(
        "standard_normal", "The prior p(z): standard_normal, N(0, I); or vamp, the VampPrior "
        "(Tomczak and Welling, 2018), a mixture of the encoder's posteriors at "
        "--prior_components learned pseudo-inputs (unconditional models without a flow).",
        tuple(priors.PRIORS), identity=True)
    prior_components: int = _field(500, "Pseudo-inputs of --prior=vamp (K).", identity=True)
    flow_units: int = _field(320, "Hidden units of each flow step's autoregressive network, "
                             "and of the encoder's context for it (--flow_steps > 0).",
                             identity=True)
    latent_layers: int = _field(
        1, "Stochastic layers: 1, or 2 for the hierarchical VAE of Tomczak and Welling (2018), "
        "q(z2|x) q(z1|x,z2) and p(z2) p(z1|z2) p(x|z1,z2), each latent --z_dim wide, "
        "--prior as p(z2) (unconditional models without a flow).", identity=True)
    latent_layer_units: int = _field(
        512, "Width of the hidden layers of q(z1|x,z2) and p(z1|z2), and of the encoder's "
        "context for them (--latent_layers=2).", identity=True)
    likelihood: str = _field("bernoulli", "Decoder likelihood p(x|z): Gaussian with fixed "
                             "--decoder_std, plain summed squared error, or Bernoulli "
                             "(binary cross-entropy).", LIKELIHOODS, identity=True)
    decoder_std: float = _field(0.5, "Fixed standard deviation of the Gaussian likelihood "
                                "(--likelihood=gaussian only).", identity=True)
    classifier_weight: float = _field(
        0.0, "Weight of the auxiliary classifier's cross-entropy. Above 0 the model is "
        "conditional: the classifier's softmax is concatenated to z before decoding, so a "
        "chosen class can be generated.", identity=True)
    condition_on: str = _field(
        "classifier", "What the decoder of a conditional model (--classifier_weight > 0) reads "
        "beside z while training: 'classifier', the classifier's class probabilities (the "
        "tutorial's model, in which z still carries the class); 'label', the one-hot true "
        "label, which the encoder reads too (Sohn et al., 2015's conditional VAE; images "
        "without a label are encoded with the classifier's prediction).", CONDITIONS,
        identity=True)
    classifier_layers: list = _field([128], "Hidden units of the auxiliary classifier "
                                     "(--classifier_weight > 0).", identity=True)
    beta: float = _field(1.0, "Weight of the KL term; 0 trains a plain autoencoder.")
    kl_warmup_epochs: int = _field(0, "Ramp the KL weight linearly from beta/N to beta over "
                                   "the first N epochs; 0 uses beta from the start.")

    # Training.
    epochs: int = _field(10, "Number of epochs to train for (in total, across resumes).")
    steps_per_epoch: int = _field(0, "Training steps per epoch; 0 means one pass over the "
                                  "training split.")
    batch_size: int = _field(100, "Training batch size; at most the training split's size.")
    eval_batch_size: int = _field(1000, "Batch size for the test split's evaluation.")
    learning_rate: float = _field(1e-3, "Adam learning rate.")
    ema_momentum: float = _field(
        0.0, "Polyak averaging: keep an exponential moving average of the weights, updated "
        "every step with this momentum (0.9995 averages about the last 2,000 steps). The "
        "test loss of every epoch, vae_tf.evaluate, vae_tf.export and the figures made from "
        "a finished run use the average; training goes on from the raw weights. 0: off.",
        identity=True)
    learning_rate_drops: str = _field(
        "", "Lower the learning rate after chosen epochs: EPOCH:RATE pairs, comma-separated; "
        "120:0.0003,180:0.0001 trains epochs 1-120 at --learning_rate, 121-180 at 0.0003 and "
        "the rest at 0.0001. Empty: --learning_rate throughout.")
    train_iw_samples: int = _field(
        1, "Train on the importance-weighted bound with K draws of z per image (Burda et al., "
        "2016) instead of the ELBO (K = 1); each step decodes K times as much. It may change "
        "on resume, to fine-tune an ELBO-trained run. metrics.csv's training loss is then the "
        "negative bound, its test loss still the negative ELBO.")
    seed: int = _field(0, "Seed of the weights, the test split drawn by --test_fraction, the "
                       "data order, dropout and the latent noise; the same seed gives the same "
                       "run. Part of the run: a rerun with another seed is refused.",
                       identity=True)
    strategy: str = _field(
        "default", "tf.distribute strategy: 'default' (one device), 'mirrored' (every local "
        "GPU, or logical CPU device), or 'multi_worker' (several machines, configured by "
        "TF_CONFIG; only the chief writes into --model_dir). --batch_size is the global batch, "
        "split across replicas.", STRATEGIES)
    deterministic: bool = _field(
        False, "Make TensorFlow's ops deterministic (tf.config.experimental."
        "enable_op_determinism). With a fixed --seed, a run stopped at any moment and resumed "
        "then ends with bitwise the same weights as a run never stopped.")
    jit_compile: str = _field(
        "auto", "Compile the training and test steps with XLA: true (--jit_compile), false "
        "(--nojit_compile), or auto, which times a few training steps of this run's model with "
        "and without XLA when training starts and keeps the faster (XLA was 1.4x faster for "
        "the conv preset on an AVX2 CPU and slower on an AVX-512 one). The choice is cached "
        "per machine and model in ~/.cache/vae_tf/tuning/ and recorded in "
        "<model_dir>/tuning.json, which a resumed run keeps.", AUTO_BOOL)
    intra_op_threads: int = _field(
        0, "Threads TensorFlow may use inside one op; 0 leaves TensorFlow's default (one per "
        "core). 1 speeds up small models such as the MLP preset, whose ops are too small to "
        "split between cores; independent ops still run side by side.")
    inter_op_threads: int = _field(
        0, "Threads TensorFlow may use to run independent ops side by side; 0 leaves "
        "TensorFlow's default.")
    mixed_precision: str = _field(
        "none", "Compute the hidden layers in bfloat16 or float16 (Keras mixed precision); "
        "weights, z_mean, z_log_var, the decoder's logits and every loss stay float32. "
        "float16 scales the loss against underflow.", PRECISIONS)
    steps_per_execution: int = _field(
        AUTO, "Training steps run per call into TensorFlow's compiled step; more cut the "
        "per-step Python overhead of small models. Callbacks then see every N-th step. auto "
        "times 1, 10 and 50 (those whose call would take under a second) when training starts "
        "and keeps the fastest, recorded and cached as --jit_compile=auto is.", AUTO_INT)
    figures_every: int = _field(1, "Write figures (reconstructions, samples, latent plots) "
                                "into <model_dir>/figures and TensorBoard every N epochs; "
                                "0 turns them off.")
    figures_budget: float = _field(
        0.1, "The largest share of the run's time that drawing figures may take: after each "
        "drawing (timed in its background thread), the next figures wait until the training "
        "since then is at least drawing time / budget, on top of --figures_every; the last "
        "epoch always gets its figures. Fast models then draw less often (said in one line). "
        "0: every --figures_every epochs, however long drawing takes.")
    export: bool = _field(True, "At the end of training, export the model as a SavedModel "
                          "into <model_dir>/saved_model/<epoch>/, which saved_model/ then "
                          "points at.")
    checkpoint_every_steps: int = _field(
        0, "Also save a checkpoint inside the epoch every N training steps (rounded up to a "
        "whole --steps_per_execution), with the position in the data stream, so that a rerun "
        "resumes at that step. 0: one every 10 minutes of training, which never falls inside "
        "the MLP presets' short epochs; under --strategy=multi_worker, 0 saves at epoch ends "
        "only, since the workers must save at the same step.")
    keep_checkpoints: int = _field(3, "How many of the newest per-epoch checkpoints to keep "
                                   "(a conv model's checkpoint is about 120 MB).")
    progress_bar: bool = _field(True, "Show Keras' progress bar during training.")

    @property
    def conditional(self) -> bool:
        """Whether the decoder also takes class probabilities."""
        return self.classifier_weight > 0

    def resolved_model_dir(self) -> str:
        """The model directory, derived from the configuration when not given."""
        if self.model_dir:
            return self.model_dir
        dataset = os.path.splitext(os.path.basename(os.path.normpath(self.dataset)))[0]
        name = f"{dataset.replace('/', '_')}-{self.arch}-{self.likelihood}-z{self.z_dim}"
        if self.conditional:
            name += "-conditional"
        return os.path.join("runs", name)

    def identity(self) -> dict:
        """The settings that define the model and its data, as a dict."""
        return {f.name: getattr(self, f.name)
                for f in dataclasses.fields(self) if f.metadata["identity"]}

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_preset(cls, name: str, **settings) -> "Config":
        """The validated Config of preset `name` (`flags/<name>.flags`), with keyword
        settings in place of its own: ``Config.from_preset("mlp_cvae", epochs=5)``."""
        from vae_tf import cli  # cli imports this module

        names = {f.name for f in dataclasses.fields(cls)}
        for key in settings:
            if key not in names:
                raise ConfigError(f"Config has no setting {key!r}; help(vae_tf.Config) "
                                  f"lists them.")
        return dataclasses.replace(cli.config_from_args([f"--preset={name}"]),
                                   **settings).validate()

    @classmethod
    def from_dict(cls, values: dict) -> "Config":
        """A Config from a dict, ignoring keys this version does not know.

        Settings that were booleans before they could be `auto` read as true or false.
        """
        auto = {f.name for f in dataclasses.fields(cls) if f.metadata["choices"] == AUTO_BOOL}
        known = {}
        for field in dataclasses.fields(cls):
            if field.name in values:
                value = values[field.name]
                if field.name in auto and isinstance(value, bool):
                    value = "true" if value else "false"
                known[field.name] = value
        return cls(**known)

    def to_flag_lines(self) -> list:
        """The configuration as absl flagfile lines (`--name=value`)."""
        lines = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool):
                lines.append(f"--{f.name}" if value else f"--no{f.name}")
            elif isinstance(value, list):
                lines.append(f"--{f.name}={','.join(str(v) for v in value)}")
            elif f.metadata["choices"] == AUTO_INT and value == AUTO:
                lines.append(f"--{f.name}=auto")
            else:
                lines.append(f"--{f.name}={value}")
        return lines

    def validate(self) -> "Config":
        """Raises ConfigError naming the flag for any value that cannot work."""
        for f in dataclasses.fields(self):
            choices = f.metadata["choices"]
            value = getattr(self, f.name)
            if choices and choices != AUTO_INT and value not in choices:
                raise ConfigError(f"--{f.name}={value} is not one of {', '.join(choices)}.")
        for name in ("z_dim", "epochs", "batch_size", "eval_batch_size", "flow_units",
                     "prior_components", "latent_layer_units", "keep_checkpoints",
                     "conv_kernel_size", "decoder_dense_units", "train_iw_samples"):
            _require(getattr(self, name) >= 1, name, getattr(self, name), "must be at least 1")
        for name, zero in _AT_LEAST_ZERO.items():
            _require(getattr(self, name) >= 0, name, getattr(self, name),
                     f"must be {zero} or more")
        if self.train_iw_samples > 1 and self.conditional:
            raise ConfigError(f"--train_iw_samples={self.train_iw_samples} weighs draws of z "
                              f"alone: use it with --classifier_weight=0.")
        schedules.parse_drops(self.learning_rate_drops)  # raises ConfigError naming the flag
        _require(self.learning_rate > 0, "learning_rate", self.learning_rate,
                 "must be positive")
        _require(self.decoder_std > 0, "decoder_std", self.decoder_std, "must be positive")
        _require(0 <= self.dropout < 1, "dropout", self.dropout, "must be in [0, 1)")
        _require(0 <= self.dense_dropout < 1, "dense_dropout", self.dense_dropout,
                 "must be in [0, 1)")
        if self.prior == "vamp" and (self.flow_steps or self.conditional):
            raise ConfigError("--prior=vamp mixes the Gaussian posteriors of unlabelled "
                              "pseudo-inputs: use it with --flow_steps=0 and "
                              "--classifier_weight=0.")
        _require(self.latent_layers in (1, 2), "latent_layers", self.latent_layers,
                 "must be 1 or 2")
        if self.latent_layers == 2 and (self.flow_steps or self.conditional):
            raise ConfigError("--latent_layers=2 takes neither a flow nor a classifier: use it "
                              "with --flow_steps=0 and --classifier_weight=0.")
        _require(0 <= self.ema_momentum < 1, "ema_momentum", self.ema_momentum,
                 "must be in [0, 1) (0: no averaging)")
        _require(self.steps_per_execution >= 0, "steps_per_execution",
                 self.steps_per_execution, "must be auto or at least 1")
        _require(0 < self.test_fraction < 1, "test_fraction", self.test_fraction,
                 "must be between 0 and 1")
        _require(0 <= self.figures_budget <= 1, "figures_budget", self.figures_budget,
                 "must be between 0 (no limit) and 1")
        _require(len(self.image_size) <= 2 and all(v >= 1 for v in self.image_size),
                 "image_size", ",".join(map(str, self.image_size)),
                 "must be HEIGHT,WIDTH or SIZE, in pixels")
        _require(bool(self.dataset), "dataset", self.dataset, "must name a data set")
        for name in ("encoder_layers", "decoder_layers", "classifier_layers", "conv_filters",
                     "encoder_strides", "decoder_strides"):
            values = getattr(self, name)
            _require(bool(values) and all(v >= 1 for v in values), name,
                     ",".join(map(str, values)), "needs one or more positive integers")
        if self.condition_on == "label" and not self.conditional:
            raise ConfigError("--condition_on=label needs --classifier_weight above 0: the "
                              "classifier labels the images that come without a label.")
        if self.binarize != "none" and self.likelihood != "bernoulli":
            raise ConfigError(
                f"--binarize={self.binarize} needs --likelihood=bernoulli: binary pixels under "
                f"a {self.likelihood} likelihood give neither sharper images nor comparable "
                f"likelihoods; use --binarize=none, or --likelihood=bernoulli.")
        for name in ("encoder_strides", "decoder_strides"):
            if len(getattr(self, name)) != len(self.conv_filters):
                raise ConfigError(
                    f"--{name} has {len(getattr(self, name))} entries but --conv_filters has "
                    f"{len(self.conv_filters)}; give one stride per conv layer.")
        return self


# The settings that may be 0, with what 0 means.
_AT_LEAST_ZERO = {
    "steps_per_epoch": "0 (one pass over the data)", "beta": "0", "kl_warmup_epochs": "0",
    "classifier_weight": "0 (no classifier)", "flow_steps": "0 (no flow)",
    "leaky_relu_slope": "0", "intra_op_threads": "0 (TensorFlow's default)",
    "inter_op_threads": "0 (TensorFlow's default)", "figures_every": "0 (no figures)",
    "checkpoint_every_steps": "0 (every 10 minutes)",
    "memory_budget_mb": "0 (a quarter of the memory)",
    "decoder_seed_channels": "0 (the tutorial's decoder)"}


def _require(condition: bool, flag: str, value: Any, requirement: str) -> None:
    if not condition:
        raise ConfigError(f"--{flag}={value} {requirement}.")
