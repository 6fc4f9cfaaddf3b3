"""Encoder, decoder, classifier and the VAE that trains them together.

The encoder maps images to the mean and log-variance of a diagonal Gaussian
q(z|x); the decoder maps z to the logits of p(x|z), whose mean is
sigmoid(logits); z is drawn with the reparameterisation trick,
z = z_mean + exp(z_log_var / 2) * eps, eps ~ N(0, I) (Kingma and Welling, 2014,
arXiv:1312.6114). The VAE minimises the negative ELBO of `vae_tf.losses`.

Two architectures reproduce the tutorials: `mlp` (dense layers) and `conv`
(three Conv2D with leaky ReLU and dropout; a decoder of Dense(24) -> Dense(49) ->
7x7x1 -> three Conv2DTranspose -> Dense(784)). With an auxiliary classifier the
model is conditional: the classifier's softmax is concatenated to z before
decoding, and generating class k feeds the one-hot vector of k instead.
"""

from typing import NamedTuple, Optional

import keras
import tensorflow as tf

from vae_tf import losses
from vae_tf.data import IMAGE_SHAPE, as_float_images

NUM_PIXELS = IMAGE_SHAPE[0] * IMAGE_SHAPE[1] * IMAGE_SHAPE[2]
SOFTPLUS_MIN_STD = 1e-6  # keeps log(std) finite when softplus underflows
# Keras dtype policies of --mixed_precision.
DTYPE_POLICIES = {"none": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


class VAEOutputs(NamedTuple):
    z_mean: tf.Tensor  # [B, Z] float32
    z_log_var: tf.Tensor  # [B, Z] float32, whatever the scale parameterisation
    z: tf.Tensor  # [B, Z] one reparameterised sample
    logits: tf.Tensor  # [B, 28, 28, 1] logits of p(x|z)
    class_logits: Optional[tf.Tensor]  # [B, C] for conditional models, else None


class Sampling(keras.layers.Layer):
    """Draws z ~ N(z_mean, exp(z_log_var)) with noise from its own SeedGenerator."""

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, z_mean, z_log_var):
        epsilon = keras.random.normal(tf.shape(z_mean), seed=self.seed_generator)
        return z_mean + tf.exp(0.5 * z_log_var) * epsilon


def log_variance(raw_scale, scale):
    """Converts the encoder's raw scale output to a log-variance."""
    if scale == "log_var":
        return raw_scale
    if scale == "log_std":
        return 2.0 * raw_scale
    if scale == "softplus":
        return 2.0 * tf.math.log(tf.nn.softplus(raw_scale) + SOFTPLUS_MIN_STD)
    raise ValueError(f"unknown scale {scale!r}")


def _conv_stack(config, layer_class, strides, activation, seed, dropout_after):
    """Conv (or transposed conv) layers, each followed by an activation and dropout."""
    layers = []
    for index, (filters, stride) in enumerate(zip(config.conv_filters, strides)):
        layers.append(layer_class(filters, config.conv_kernel_size, strides=stride,
                                  padding="same", activation=activation))
        if config.dropout > 0 and index in dropout_after:
            layers.append(keras.layers.Dropout(config.dropout, seed=seed + index))
    return layers


class Encoder(keras.Model):
    """images [B, 28, 28, 1] -> (z_mean, z_log_var), each [B, z_dim] float32."""

    def __init__(self, config, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.scale = config.scale
        if config.arch == "mlp":
            self.body = [keras.layers.Flatten()] + [
                keras.layers.Dense(units, activation=config.activation)
                for units in config.encoder_layers]
        else:
            leaky = keras.layers.LeakyReLU(negative_slope=config.leaky_relu_slope)
            self.body = _conv_stack(config, keras.layers.Conv2D, config.encoder_strides,
                                    leaky, seed, dropout_after=range(len(config.conv_filters)))
            self.body.append(keras.layers.Flatten())
        # The heads stay float32 so the KL term is exact under mixed precision.
        self.mean_head = keras.layers.Dense(config.z_dim, dtype="float32", name="z_mean")
        self.scale_head = keras.layers.Dense(config.z_dim, dtype="float32", name="z_scale")

    def call(self, images, training=False):
        hidden = images
        for layer in self.body:
            hidden = layer(hidden, training=training)
        z_mean = self.mean_head(hidden)
        z_log_var = log_variance(self.scale_head(hidden), self.scale)
        return z_mean, z_log_var


class Decoder(keras.Model):
    """z [B, z_dim (+ classes)] -> logits of p(x|z) [B, 28, 28, 1]."""

    def __init__(self, config, seed=0, **kwargs):
        super().__init__(**kwargs)
        if config.arch == "mlp":
            self.body = [keras.layers.Dense(units, activation=config.activation)
                         for units in config.decoder_layers]
        else:
            leaky = keras.layers.LeakyReLU(negative_slope=config.leaky_relu_slope)
            grid = IMAGE_SHAPE[0] // 4  # the tutorials' 7x7x1 seed image
            self.body = [keras.layers.Dense(config.decoder_dense_units, activation=leaky),
                         keras.layers.Dense(grid * grid, activation=leaky),
                         keras.layers.Reshape((grid, grid, 1))]
            # As in the tutorial, dropout follows every transposed conv but the last.
            self.body += _conv_stack(config, keras.layers.Conv2DTranspose,
                                     config.decoder_strides, "relu", seed,
                                     dropout_after=range(len(config.conv_filters) - 1))
            self.body.append(keras.layers.Flatten())
        self.output_layer = keras.layers.Dense(NUM_PIXELS, dtype="float32", name="logits")
        self.reshape = keras.layers.Reshape(IMAGE_SHAPE, dtype="float32")

    def call(self, z, training=False):
        hidden = z
        for layer in self.body:
            hidden = layer(hidden, training=training)
        return self.reshape(self.output_layer(hidden))


class Classifier(keras.Model):
    """images [B, 28, 28, 1] -> class logits [B, num_classes]."""

    def __init__(self, config, num_classes, **kwargs):
        super().__init__(**kwargs)
        self.body = [keras.layers.Flatten()] + [
            keras.layers.Dense(units, activation=config.activation)
            for units in config.classifier_layers]
        self.output_layer = keras.layers.Dense(num_classes, dtype="float32", name="class_logits")

    def call(self, images, training=False):
        hidden = images
        for layer in self.body:
            hidden = layer(hidden, training=training)
        return self.output_layer(hidden)


class VAE(keras.Model):
    """The encoder, decoder and optional classifier, trained on the negative ELBO."""

    def __init__(self, config, num_classes, **kwargs):
        super().__init__(**kwargs)
        self.likelihood = config.likelihood
        self.decoder_std = config.decoder_std
        self.classifier_weight = config.classifier_weight
        self.num_classes = num_classes
        self.z_dim = config.z_dim
        self.encoder = Encoder(config, seed=config.seed + 1, name="encoder")
        self.decoder = Decoder(config, seed=config.seed + 101, name="decoder")
        self.classifier = (Classifier(config, num_classes, name="classifier")
                           if config.conditional else None)
        # float32, so that z keeps full precision under mixed precision.
        self.sampling = Sampling(seed=config.seed + 1001, name="sampling", dtype="float32")
        # Set each epoch by the KL warm-up callback; a variable, so compiled steps see it.
        self.kl_weight = keras.Variable(config.beta, trainable=False, dtype="float32",
                                        name="kl_weight")
        self.trackers = [keras.metrics.Mean(name=name) for name in
                         ("loss", "reconstruction_loss", "kl_loss")]
        if self.classifier is not None:
            self.trackers.append(keras.metrics.Mean(name="classifier_loss"))
            self.accuracy = keras.metrics.SparseCategoricalAccuracy(name="classifier_accuracy")
            self.trackers.append(self.accuracy)

    @property
    def conditional(self) -> bool:
        return self.classifier is not None

    @property
    def metrics(self):
        return self.trackers

    def call(self, images, training=False) -> VAEOutputs:
        z_mean, z_log_var = self.encoder(images, training=training)
        z = self.sampling(z_mean, z_log_var)
        class_logits = None
        decoder_input = z
        if self.classifier is not None:
            class_logits = self.classifier(images, training=training)
            decoder_input = tf.concat([z, tf.nn.softmax(class_logits)], axis=-1)
        logits = self.decoder(decoder_input, training=training)
        return VAEOutputs(z_mean, z_log_var, z, logits, class_logits)

    def decode(self, z, labels=None):
        """Mean of p(x|z) in [0, 1], [B, 28, 28, 1]; conditional models need int labels [B]."""
        if self.classifier is not None:
            if labels is None:
                raise ValueError("a conditional model needs labels to decode")
            z = tf.concat([z, tf.one_hot(labels, self.num_classes, dtype=z.dtype)], axis=-1)
        return tf.sigmoid(self.decoder(z, training=False))

    def reconstruct(self, images):
        """Deterministic reconstructions: the decoded latent mean. [B, 28, 28, 1] in [0, 1]."""
        z_mean, _ = self.encoder(images, training=False)
        if self.classifier is not None:
            probabilities = tf.nn.softmax(self.classifier(images, training=False))
            z_mean = tf.concat([z_mean, probabilities], axis=-1)
        return tf.sigmoid(self.decoder(z_mean, training=False))

    def example_losses(self, images, labels, outputs: VAEOutputs) -> dict:
        """Each term of the objective, one value per example ([B] each)."""
        terms = {
            "reconstruction_loss": losses.reconstruction_loss(
                self.likelihood, images, outputs.logits, self.decoder_std),
            "kl_loss": losses.kl_divergence(outputs.z_mean, outputs.z_log_var),
        }
        terms["loss"] = terms["reconstruction_loss"] + self.kl_weight * terms["kl_loss"]
        if self.classifier is not None:
            terms["classifier_loss"] = losses.classifier_cross_entropy(
                labels, outputs.class_logits)
            terms["loss"] += self.classifier_weight * terms["classifier_loss"]
        return terms

    def _update_metrics(self, terms, labels, outputs):
        for tracker in self.trackers:
            if tracker.name in terms:
                tracker.update_state(terms[tracker.name])
        if self.classifier is not None:
            self.accuracy.update_state(labels, outputs.class_logits)
        logs = {tracker.name: tracker.result() for tracker in self.trackers}
        if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
            # Keras 3 averages each worker's step logs along axis 0, which scalars lack
            # (keras-team/keras#20585); the epoch's logs are read from the metrics anyway.
            logs = {name: tf.reshape(value, [1]) for name, value in logs.items()}
        return logs

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Under a tf.distribute strategy, Keras 3's fit first averages one batch across the
        # replicas to build the model symbolically, which fails under
        # MultiWorkerMirroredStrategy (keras-team/keras#20585). build_vae has already built
        # the model, and restore_run the optimizer, so there is nothing left to build.
        if self.built and self.optimizer is not None and self.optimizer.built:
            return
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def train_step(self, data):
        images, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        images = as_float_images(images)  # the pipelines feed uint8
        with tf.GradientTape() as tape:
            outputs = self(images, training=True)
            terms = self.example_losses(images, labels, outputs)
            # Summed over this replica's examples and divided by the global batch size
            # (this replica's times the replicas), so that the gradients tf.distribute
            # sums across replicas are those of the global batch's mean loss.
            loss = tf.nn.compute_average_loss(terms["loss"])
            # Under float16 the optimizer scales the loss so that small gradients do not
            # underflow, and unscales the gradients; otherwise this returns the loss as is.
            loss = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
        return self._update_metrics(terms, labels, outputs)

    def test_step(self, data):
        images, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        images = as_float_images(images)
        outputs = self(images, training=False)
        terms = self.example_losses(images, labels, outputs)
        return self._update_metrics(terms, labels, outputs)


def random_states(model: keras.Model) -> list:
    """The state variables of the model's seed generators (latent noise, dropout).

    Keras does not count them as weights, so checkpoints and SavedModels must
    be given them explicitly.
    """
    weight_ids = {id(variable) for variable in model.weights}
    return [variable for variable in model.variables if id(variable) not in weight_ids]


def build_vae(config, num_classes: int) -> VAE:
    """A VAE for `config`, built (its variables created) on a dummy batch.

    Its layers compute in the dtype policy of --mixed_precision, which is set
    only while they are made, so other models in the process are unaffected.
    """
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(DTYPE_POLICIES[config.mixed_precision])
    try:
        model = VAE(config, num_classes, name="vae")
    finally:
        keras.config.set_dtype_policy(previous)
    model(tf.zeros((1,) + IMAGE_SHAPE))
    return model
