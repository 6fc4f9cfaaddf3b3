"""Encoder, decoder, classifier and the VAE that trains them together.

The encoder maps images to the mean and log-variance of a diagonal Gaussian
q(z|x); the decoder maps z to the logits of p(x|z), whose mean is
sigmoid(logits); z is drawn with the reparameterisation trick,
z = z_mean + exp(z_log_var / 2) * eps, eps ~ N(0, I) (Kingma and Welling, 2014,
arXiv:1312.6114). The VAE minimises the negative ELBO of `vae_tf.losses`.

Two architectures reproduce the tutorials: `mlp` (dense layers) and `conv`
(three Conv2D with leaky ReLU and dropout; at 28x28x1 a decoder of Dense(24) ->
Dense(49) -> 7x7x1 -> three Conv2DTranspose -> Dense(784), as the tutorial had;
at any other image shape the transposed convs end in one of one filter per
channel, from a seed grid sized by the decoder's strides). Both take images of
any height, width and channel count. With an auxiliary classifier the
model is conditional: the classifier's softmax is concatenated to z before
decoding, and generating class k feeds the one-hot vector of k instead.
"""

import math
from typing import NamedTuple, Optional

import keras
import tensorflow as tf

from vae_tf import compat, hierarchy, losses, priors
from vae_tf.data import MNIST_IMAGE_SHAPE, as_float_images
from vae_tf.flows import InverseAutoregressiveFlow

SOFTPLUS_MIN_STD = 1e-6  # keeps log(std) finite when softplus underflows
# Keras dtype policies of --mixed_precision.
DTYPE_POLICIES = {"none": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
# How the encoder's raw scale output becomes a log-variance, per --scale.
SCALES = {
    "log_var": lambda raw: raw,
    "log_std": lambda raw: 2.0 * raw,
    "softplus": lambda raw: 2.0 * tf.math.log(tf.nn.softplus(raw) + SOFTPLUS_MIN_STD),
}


class VAEOutputs(NamedTuple):
    z_mean: tf.Tensor  # [B, Z] float32
    z_log_var: tf.Tensor  # [B, Z] float32, whatever the scale parameterisation
    z: tf.Tensor  # [B, Z] one reparameterised sample (after the flow, if any)
    logits: tf.Tensor  # [B, H, W, C] logits of p(x|z)
    class_logits: Optional[tf.Tensor]  # [B, C] for conditional models, else None
    # [B] log |det dz/dz_0| of the inverse autoregressive flow; None without one.
    flow_log_det: Optional[tf.Tensor] = None


def reparameterize(z_mean, z_log_var, epsilon):
    """z = z_mean + exp(z_log_var / 2) * epsilon: a draw from q(z|x) given N(0, I) noise."""
    return z_mean + tf.exp(0.5 * z_log_var) * epsilon


def with_class_probabilities(z, class_logits):
    """The decoder input of a conditional model: z [B, Z] joined by softmax(class_logits)."""
    return tf.concat([z, tf.nn.softmax(class_logits)], axis=-1)


class Sampling(keras.layers.Layer):
    """Draws z ~ N(z_mean, exp(z_log_var)) with noise from its own SeedGenerator.

    Under a tf.distribute strategy with R replicas, each replica draws the noise
    of the whole global batch [R * B, Z] (the same on every replica, whose seed
    generators are mirrored) and keeps its own slice, so that a distributed step
    sees the noise that one device would have drawn for the same global batch.
    """

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, z_mean, z_log_var):
        shape = tf.shape(z_mean)  # [B, Z], this replica's part of the batch
        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync if context is not None else 1
        if replicas == 1:
            epsilon = keras.random.normal(shape, seed=self.seed_generator)
        else:
            whole = keras.random.normal(tf.stack([shape[0] * replicas, shape[1]]),
                                        seed=self.seed_generator)  # [R * B, Z]
            replica = tf.cast(context.replica_id_in_sync_group, tf.int32)
            epsilon = whole[replica * shape[0]:(replica + 1) * shape[0]]
        return reparameterize(z_mean, z_log_var, epsilon)


def _require_choice(kind: str, name: str, choices) -> None:
    if name not in choices:
        raise ValueError(f"unknown {kind} {name!r}; one of {', '.join(choices)}")


def log_variance(raw_scale, scale):
    """Converts the encoder's raw scale output to a log-variance (`SCALES`)."""
    _require_choice("scale", scale, SCALES)
    return SCALES[scale](raw_scale)


def dense_layers(units, activation, dropout: float = 0.0, seed: int = 0) -> list:
    """One Dense layer per entry of `units`, each with `activation`, then dropout if any.

    `activation="glu"` makes each a gated linear unit of `width` outputs,
    a * sigmoid(b) for the two halves of a Dense(2 * width) (Keras' `glu`): the
    gated dense layers of Tomczak and Welling's VampPrior VAEs (2018,
    arXiv:1705.07120) in one matrix product instead of two.
    """
    layers = []
    for index, width in enumerate(units):
        if activation == "glu":
            layers.append(keras.layers.Dense(2 * width, activation="glu"))
        else:
            layers.append(keras.layers.Dense(width, activation=activation))
        if dropout > 0:
            layers.append(keras.layers.Dropout(dropout, seed=seed + index))
    return layers


def conv_layers(layer_class, filters, kernel_size, strides, activation, dropout, seed,
                dropout_after) -> list:
    """Conv (or transposed conv) layers with "same" padding, some followed by dropout."""
    layers = []
    for index, (width, stride) in enumerate(zip(filters, strides)):
        layers.append(layer_class(width, kernel_size, strides=stride, padding="same",
                                  activation=activation))
        if dropout > 0 and index in dropout_after:
            layers.append(keras.layers.Dropout(dropout, seed=seed + index))
    return layers


class Encoder(keras.Model):
    """images [B, H, W, C] -> (z_mean, z_log_var), each [B, z_dim] float32.

    `body` is the list of layers before the two dense heads (see `mlp_encoder`
    and `conv_encoder`); `scale` names how the scale head becomes a log-variance.
    A `condition` [B, C] given to `call` (the one-hot label of a conditional VAE,
    Sohn et al., 2015) joins the image's features where they are flattened.
    """

    def __init__(self, body: list, z_dim: int, scale: str = "log_var", context_units: int = 0,
                 **kwargs):
        super().__init__(**kwargs)
        _require_choice("scale", scale, SCALES)
        self.scale = scale
        self.body = body
        # The heads stay float32 so the KL term is exact under mixed precision.
        self.mean_head = keras.layers.Dense(z_dim, dtype="float32", name="z_mean")
        self.scale_head = keras.layers.Dense(z_dim, dtype="float32", name="z_scale")
        # The context h of an inverse autoregressive flow (`vae_tf.flows`), if any.
        self.context_head = (keras.layers.Dense(context_units, activation="elu",
                                                dtype="float32", name="flow_context")
                             if context_units else None)

    def call(self, images, training=False, condition=None, return_context=False):
        """(z_mean, z_log_var), or with `return_context` (z_mean, z_log_var, context)."""
        hidden = images
        for layer in self.body:
            hidden = layer(hidden, training=training)
            if condition is not None and isinstance(layer, keras.layers.Flatten):
                hidden = tf.concat([hidden, tf.cast(condition, hidden.dtype)], axis=-1)
        z_mean = self.mean_head(hidden)
        z_log_var = log_variance(self.scale_head(hidden), self.scale)
        if not return_context:
            return z_mean, z_log_var
        context = self.context_head(hidden) if self.context_head is not None else None
        return z_mean, z_log_var, context


class Decoder(keras.Model):
    """z [B, z_dim (+ classes)] -> logits of p(x|z) [B, *image_shape].

    `body` is the list of layers before the output layer (see `mlp_decoder` and
    `conv_decoder`). The output layer is a Dense layer of one logit per pixel
    and channel, or with `output_layer` given (a conv layer of one filter per
    channel), that layer, its map cropped to the image's height and width.
    """

    def __init__(self, body: list, image_shape, output_layer=None, **kwargs):
        super().__init__(**kwargs)
        self.body = body
        self.image_shape = tuple(image_shape)
        self.dense_output = output_layer is None
        if self.dense_output:
            self.output_layer = keras.layers.Dense(math.prod(image_shape), dtype="float32",
                                                   name="logits")
            self.reshape = keras.layers.Reshape(self.image_shape, dtype="float32")
        else:
            self.output_layer = output_layer

    def call(self, z, training=False):
        hidden = z
        for layer in self.body:
            hidden = layer(hidden, training=training)
        if self.dense_output:
            return self.reshape(self.output_layer(hidden))
        height, width, _ = self.image_shape
        return self.output_layer(hidden)[:, :height, :width, :]


def mlp_encoder(z_dim: int, scale: str, hidden_units, activation: str, dropout: float = 0.0,
                seed: int = 0, context_units: int = 0, **kwargs) -> Encoder:
    """Flatten, then one Dense layer of `activation` per entry of `hidden_units`."""
    body = [keras.layers.Flatten()] + dense_layers(hidden_units, activation, dropout, seed)
    return Encoder(body, z_dim, scale, context_units, **kwargs)


def mlp_decoder(hidden_units, activation: str, image_shape, dropout: float = 0.0,
                seed: int = 0, **kwargs) -> Decoder:
    """One Dense layer of `activation` per entry of `hidden_units`."""
    return Decoder(dense_layers(hidden_units, activation, dropout, seed), image_shape,
                   **kwargs)


def conv_encoder(z_dim: int, scale: str, filters, kernel_size: int, strides,
                 leaky_relu_slope: float, dropout: float, seed: int = 0, context_units: int = 0,
                 **kwargs) -> Encoder:
    """Conv2D layers with leaky ReLU, each followed by dropout, then Flatten."""
    leaky = keras.layers.LeakyReLU(negative_slope=leaky_relu_slope)
    body = conv_layers(keras.layers.Conv2D, filters, kernel_size, strides, leaky, dropout,
                       seed, dropout_after=range(len(filters)))
    return Encoder(body + [keras.layers.Flatten()], z_dim, scale, context_units, **kwargs)


def seed_grid(image_shape, strides) -> tuple:
    """(height, width) of the conv decoder's seed image.

    At 28x28x1 it is the tutorial's 7x7, whose transposed convs are flattened
    into a dense layer of 784 logits. At any other shape it is the image size
    divided by the product of the decoder's strides (rounded up), so that the
    transposed convs reach at least the image size, then cropped to it.
    """
    if tuple(image_shape) == MNIST_IMAGE_SHAPE:
        return 7, 7
    upsampling = math.prod(strides)
    return -(-image_shape[0] // upsampling), -(-image_shape[1] // upsampling)


def conv_decoder(dense_units: int, filters, kernel_size: int, strides,
                 leaky_relu_slope: float, dropout: float, image_shape, seed: int = 0,
                 **kwargs) -> Decoder:
    """The tutorial's decoder: Dense(dense_units) -> Dense(seed grid) -> Conv2DTranspose.

    Dropout follows every transposed conv but the last, as in the tutorial. At
    28x28x1 the output is the tutorial's Flatten -> Dense(784); at other shapes
    a Conv2DTranspose with one filter per channel, which keeps the weights of
    large and colour images in the conv kernels rather than in a dense layer of
    H*W*C outputs per feature.
    """
    leaky = keras.layers.LeakyReLU(negative_slope=leaky_relu_slope)
    grid = seed_grid(image_shape, strides)
    body = [keras.layers.Dense(dense_units, activation=leaky),
            keras.layers.Dense(grid[0] * grid[1], activation=leaky),
            keras.layers.Reshape(grid + (1,))]
    body += conv_layers(keras.layers.Conv2DTranspose, filters, kernel_size, strides, "relu",
                        dropout, seed, dropout_after=range(len(filters) - 1))
    if tuple(image_shape) == MNIST_IMAGE_SHAPE:
        return Decoder(body + [keras.layers.Flatten()], image_shape, **kwargs)
    output_layer = keras.layers.Conv2DTranspose(image_shape[-1], kernel_size, padding="same",
                                                dtype="float32", name="logits")
    return Decoder(body, image_shape, output_layer=output_layer, **kwargs)


class Classifier(keras.Model):
    """images [B, H, W, C] -> class logits [B, num_classes], through Dense layers."""

    def __init__(self, hidden_units, activation: str, num_classes: int, **kwargs):
        super().__init__(**kwargs)
        self.body = [keras.layers.Flatten()] + dense_layers(hidden_units, activation)
        self.output_layer = keras.layers.Dense(num_classes, dtype="float32", name="class_logits")

    def call(self, images, training=False):
        hidden = images
        for layer in self.body:
            hidden = layer(hidden, training=training)
        return self.output_layer(hidden)


# --condition_on: what a conditional model's decoder reads beside z while it trains.
CONDITIONS = ("classifier", "label")


class VAE(compat.SkipSymbolicBuildWhenBuilt, keras.Model):
    """The encoder, decoder and optional classifier, trained on the negative ELBO.

    With a classifier the model is conditional, and `decode` takes labels. With
    `condition_on="classifier"` (the tutorial's model) the decoder reads z joined
    by the classifier's class probabilities. With `condition_on="label"` it is
    the conditional VAE of Sohn et al. (2015): encoder and decoder both read the
    one-hot true label while training, so z has no reason to carry the class,
    and an image without a label is encoded with the classifier's prediction,
    as in Kingma et al. (2014)'s M2.

    With a `flow` (an inverse autoregressive flow, `vae_tf.flows`), z is the
    flow of the Gaussian draw, driven by the encoder's context head, and the KL
    term is estimated from that sample (`losses.flow_kl_divergence`).

    The `prior` is one of `priors.PRIORS` (N(0, I) when none is given). With a
    `ladder` (`vae_tf.hierarchy`) the model has two stochastic layers: the
    encoder's Gaussian is q(z2|x), the ladder adds q(z1|x, z2) and p(z1|z2), z
    is [z1, z2], and the prior is p(z2) p(z1|z2) with `prior` as p(z2).
    Every KL term but the closed forms of a Gaussian (or flow) posterior under
    N(0, I) is estimated from the posterior's draw.
    """

    def __init__(self, encoder: Encoder, decoder: Decoder, likelihood: str,
                 classifier: Optional[Classifier] = None, num_classes: int = 10,
                 decoder_std: float = 1.0, classifier_weight: float = 0.0, beta: float = 1.0,
                 sampling_seed: Optional[int] = None, condition_on: str = "classifier",
                 flow: Optional[InverseAutoregressiveFlow] = None,
                 prior=None, ladder: Optional[hierarchy.TwoLayerLatents] = None, **kwargs):
        super().__init__(**kwargs)
        prior = priors.StandardNormal() if prior is None else prior
        if isinstance(prior, priors.VampPrior) and (flow is not None or classifier is not None):
            raise ValueError("a VampPrior is the mixture of Gaussian posteriors of unlabelled "
                             "pseudo-inputs: it takes neither a flow nor a classifier")
        if ladder is not None and (flow is not None or classifier is not None):
            raise ValueError("a second stochastic layer takes neither a flow nor a classifier")
        if ladder is not None and encoder.context_head is None:
            raise ValueError("a second stochastic layer needs an encoder with a context head")
        self.prior = prior
        self.ladder = ladder
        _require_choice("condition_on", condition_on, CONDITIONS)
        if condition_on == "label" and classifier is None:
            raise ValueError("condition_on='label' needs a classifier, to label images "
                             "that come without one")
        if ladder is None and (flow is None) != (encoder.context_head is None):
            raise ValueError("a flow needs an encoder with a context head, and only a flow "
                             "reads one")
        self.flow = flow
        self.condition_on = condition_on
        losses.likelihood_named(likelihood)  # refuses an unknown name now, not at the first step
        self.likelihood = likelihood
        self.decoder_std = decoder_std
        self.classifier_weight = classifier_weight
        self.num_classes = num_classes
        self.z_dim = encoder.mean_head.units * (1 if ladder is None else 2)
        self.encoder = encoder
        self.decoder = decoder
        self.classifier = classifier
        # float32, so that z keeps full precision under mixed precision.
        self.sampling = Sampling(seed=sampling_seed, name="sampling", dtype="float32")
        # Set each epoch by the KL warm-up callback; a variable, so compiled steps see it.
        self.kl_weight = keras.Variable(beta, trainable=False, dtype="float32",
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
    def image_shape(self) -> tuple:
        """(H, W, C) of the images the model reads and draws."""
        return self.decoder.image_shape

    @property
    def metrics(self):
        return self.trackers

    def call(self, images, training=False, labels=None, noise=None) -> VAEOutputs:
        """One pass: q(z|x)'s draw, decoded. `noise` [B, Z] (N(0, I)) replaces the sampling
        layer's own, for draws that must be repeatable (`vae_tf.evaluation`)."""
        if self.condition_on == "label":
            class_logits = self.classifier(images, training=training)
            condition = self._one_hot(labels, class_logits)
            z_mean, z_log_var, context = self.encoder(
                images, training=training, condition=condition, return_context=True)
            z, log_det = self.transform(self.draw(z_mean, z_log_var, noise), context)
            logits = self.decoder(tf.concat([z, condition], axis=-1), training=training)
            return VAEOutputs(z_mean, z_log_var, z, logits, class_logits, log_det)
        z_mean, z_log_var, context = self.encoder(images, training=training,
                                                  return_context=True)
        z_mean, z_log_var = self.base(z_mean, z_log_var)
        z, log_det = self.transform(self.draw(z_mean, z_log_var, noise), context)
        class_logits = None
        decoder_input = z
        if self.classifier is not None:
            class_logits = self.classifier(images, training=training)
            decoder_input = with_class_probabilities(z, class_logits)
        logits = self.decoder(decoder_input, training=training)
        return VAEOutputs(z_mean, z_log_var, z, logits, class_logits, log_det)

    def draw(self, z_mean, z_log_var, noise=None):
        """A draw of the base Gaussian: with the sampling layer's noise, or `noise`."""
        if noise is None:
            return self.sampling(z_mean, z_log_var)
        return reparameterize(z_mean, z_log_var, tf.cast(noise, z_mean.dtype))

    @property
    def standard_normal_prior(self) -> bool:
        """Whether p(z) is N(0, I) (one stochastic layer and that prior)."""
        return isinstance(self.prior, priors.StandardNormal) and self.ladder is None

    def _encode_top(self, images):
        """(mean, log-variance) of the encoder's Gaussian: q(z|x), or q(z2|x) with a ladder."""
        return self.encoder(images, training=False)

    def log_prior(self, z):
        """log p(z) of the model's prior. [..., Z] -> [...]."""
        if self.ladder is None:
            return self.prior.log_prob(z, self._encode_top)
        top = self.prior.log_prob(self.ladder.split(z)[1], self._encode_top)
        return top + self.ladder.log_prob_bottom(z)

    def sample_prior(self, num, seed):
        """`num` draws of z from the model's prior [num, Z], repeatable for an int64 `seed`."""
        seed = tf.cast(seed, tf.int64)
        top = self.prior.sample(num, self.encoder.mean_head.units, seed, self._encode_top)
        return top if self.ladder is None else self.ladder.sample_bottom(top, seed)

    def base(self, z_mean, z_log_var):
        """The base Gaussian's (mean, log-variance) [B, Z] from the encoder's."""
        return (z_mean, z_log_var) if self.ladder is None else self.ladder.base(z_mean, z_log_var)

    def transform(self, z, context):
        """(z, log |det|) of base draws z [..., B, Z] through the flow or the second
        stochastic layer; (z, None) without either."""
        if self.flow is not None:
            return self.flow(z, context)
        if self.ladder is not None:
            return self.ladder(z, context)
        return z, None

    @property
    def transforms(self) -> bool:
        """Whether base draws go through `transform` (a flow or a second layer)."""
        return self.flow is not None or self.ladder is not None

    def posterior(self, images):
        """(z_mean, z_log_var, context) of the base Gaussian of q(z|x) for unlabelled
        images; context None without a flow or second layer. Draws of
        N(z_mean, exp(z_log_var)) go through `transform`."""
        condition = self.condition(images) if self.condition_on == "label" else None
        z_mean, z_log_var, context = self.encoder(images, training=False, condition=condition,
                                                  return_context=True)
        return (*self.base(z_mean, z_log_var), context)

    def _one_hot(self, labels, class_logits):
        """One-hot true labels, or of the classifier's prediction where there are none."""
        if labels is None:
            labels = tf.argmax(class_logits, axis=-1)
        return tf.one_hot(tf.cast(labels, tf.int32), self.num_classes)

    def condition(self, images):
        """What the decoder reads beside z for unlabelled `images` [B, C], or None."""
        if self.classifier is None:
            return None
        class_logits = self.classifier(images, training=False)
        if self.condition_on == "label":
            return self._one_hot(None, class_logits)
        return tf.nn.softmax(class_logits)

    def encode(self, images):
        """(z_mean, z_log_var) of unlabelled images, each [B, z_dim].

        With a flow, z_mean is the flow of the Gaussian's mean (the latent that a
        deterministic reconstruction decodes) and z_log_var the Gaussian's. With two
        stochastic layers, z_mean is [mean of q(z1|x, z2), mean of q(z2|x)] at z2 =
        q(z2|x)'s mean, and z_log_var their log-variances.
        """
        z_mean, z_log_var, context = self.posterior(images)
        if self.ladder is not None:
            top_mean, top_log_var = self.ladder.split(z_mean)[1], self.ladder.split(z_log_var)[1]
            mean, log_var = self.ladder.posterior_moments(top_mean, context)
            return tf.concat([mean, top_mean], -1), tf.concat([log_var, top_log_var], -1)
        return self.transform(z_mean, context)[0], z_log_var

    def decode(self, z, labels=None):
        """Mean of p(x|z) in [0, 1], [B, H, W, C]; conditional models need int labels [B]."""
        if self.classifier is not None:
            if labels is None:
                raise ValueError("a conditional model needs labels to decode")
            z = tf.concat([z, tf.one_hot(labels, self.num_classes, dtype=z.dtype)], axis=-1)
        return self.mean_image(self.decoder(z, training=False))

    def reconstruct(self, images):
        """Deterministic reconstructions: the decoded latent mean. [B, H, W, C] in [0, 1]."""
        z_mean, _ = self.encode(images)
        condition = self.condition(images)
        decoder_input = z_mean if condition is None else tf.concat([z_mean, condition], -1)
        return self.mean_image(self.decoder(decoder_input, training=False))

    def mean_image(self, logits):
        """The mean of p(x|z) in [0, 1] of decoder outputs, as the likelihood defines it."""
        return losses.likelihood_named(self.likelihood).mean(logits)

    def log_likelihood(self, images, z):
        """log p(x|z) of unlabelled images [B, H, W, C] at z [C, B, Z] -> [C, B], normalised.

        The conditioning (the classifier's class probabilities, or its predicted label) is
        computed once per image, not once per sample.
        """
        count, batch = tf.shape(z)[0], tf.shape(z)[1]
        z = tf.reshape(z, [-1, z.shape[-1]])  # [C*B, Z], sample-major
        condition = self.condition(images)
        if condition is not None:
            z = tf.concat([z, tf.tile(condition, [count, 1])], axis=-1)
        logits = self.decoder(z, training=False)
        tiled = tf.tile(images, [count, 1, 1, 1])
        return tf.reshape(losses.log_likelihood(self.likelihood, tiled, logits,
                                                self.decoder_std), [count, batch])

    def example_losses(self, images, labels, outputs: VAEOutputs) -> dict:
        """Each term of the objective, one value per example ([B] each)."""
        terms = {
            "reconstruction_loss": losses.reconstruction_loss(
                self.likelihood, images, outputs.logits, self.decoder_std),
            "kl_loss": self.kl_divergence(outputs),
        }
        terms["loss"] = terms["reconstruction_loss"] + self.kl_weight * terms["kl_loss"]
        if self.classifier is not None:
            terms["classifier_loss"] = losses.classifier_cross_entropy(
                labels, outputs.class_logits)
            terms["loss"] += self.classifier_weight * terms["classifier_loss"]
        return terms

    def kl_divergence(self, outputs: VAEOutputs):
        """KL(q(z|x) || p(z)) [B]: closed form for N(0, I) and a Gaussian posterior (and
        the flow's, exact in all but its log-det), else estimated from the draw outputs.z."""
        if self.standard_normal_prior:
            if outputs.flow_log_det is None:
                return losses.kl_divergence(outputs.z_mean, outputs.z_log_var)
            return losses.flow_kl_divergence(outputs.z, outputs.z_log_var, outputs.flow_log_det)
        kl = losses.sampled_kl_divergence(outputs.z_log_var, self.log_prior(outputs.z))
        return kl if outputs.flow_log_det is None else kl - outputs.flow_log_det

    def _update_metrics(self, terms, labels, outputs):
        for tracker in self.trackers:
            if tracker.name in terms:
                tracker.update_state(terms[tracker.name])
        if self.classifier is not None:
            self.accuracy.update_state(labels, outputs.class_logits)
        return compat.step_logs({tracker.name: tracker.result() for tracker in self.trackers})

    def train_step(self, data):
        images, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        images = as_float_images(images)  # the pipelines feed uint8
        with tf.GradientTape() as tape:
            outputs = self(images, training=True, labels=labels)
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
        outputs = self(images, training=False, labels=labels)
        terms = self.example_losses(images, labels, outputs)
        return self._update_metrics(terms, labels, outputs)


def _context_units(config) -> int:
    """Width of the encoder's context head: for the flow, or for q(z1|x, z2); else 0."""
    if config.flow_steps:
        return config.flow_units
    return config.latent_layer_units if config.latent_layers == 2 else 0


def _mlp_parts(config, image_shape):
    encoder = mlp_encoder(config.z_dim, config.scale, config.encoder_layers, config.activation,
                          dropout=config.dense_dropout, seed=config.seed + 1,
                          context_units=_context_units(config), name="encoder")
    decoder = mlp_decoder(config.decoder_layers, config.activation, image_shape,
                          dropout=config.dense_dropout, seed=config.seed + 101,
                          name="decoder")
    return encoder, decoder


def _conv_parts(config, image_shape):
    conv = dict(filters=config.conv_filters, kernel_size=config.conv_kernel_size,
                leaky_relu_slope=config.leaky_relu_slope, dropout=config.dropout)
    encoder = conv_encoder(config.z_dim, config.scale, strides=config.encoder_strides,
                           seed=config.seed + 1, name="encoder",
                           context_units=_context_units(config), **conv)
    decoder = conv_decoder(config.decoder_dense_units, strides=config.decoder_strides,
                           image_shape=image_shape, seed=config.seed + 101, name="decoder",
                           **conv)
    return encoder, decoder


# --arch: the encoder and decoder that each architecture builds from a Config.
ARCHITECTURES = {"mlp": _mlp_parts, "conv": _conv_parts}


def build_vae(config, num_classes: int, image_shape=MNIST_IMAGE_SHAPE) -> VAE:
    """The VAE that a Config describes, built (its variables created) on a dummy batch.

    Its layers compute in the dtype policy of --mixed_precision, which is set
    only while they are made, so other models in the process are unaffected.
    """
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(DTYPE_POLICIES[config.mixed_precision])
    try:
        encoder, decoder = ARCHITECTURES[config.arch](config, image_shape)
        classifier = (Classifier(config.classifier_layers, config.activation, num_classes,
                                 name="classifier") if config.conditional else None)
        flow = (InverseAutoregressiveFlow(config.z_dim, config.flow_steps, config.flow_units,
                                          dtype="float32", name="flow")
                if config.flow_steps else None)
        prior = priors.PRIORS[config.prior](config.prior_components, image_shape,
                                            config.seed + 2001)
        ladder = (hierarchy.TwoLayerLatents(config.z_dim, config.latent_layer_units,
                                            config.activation, dtype="float32", name="ladder")
                  if config.latent_layers == 2 else None)
        model = VAE(encoder, decoder, config.likelihood, classifier, num_classes,
                    decoder_std=config.decoder_std, classifier_weight=config.classifier_weight,
                    beta=config.beta, sampling_seed=config.seed + 1001,
                    condition_on=config.condition_on, flow=flow, prior=prior, ladder=ladder,
                    name="vae")
    finally:
        keras.config.set_dtype_policy(previous)
    model(tf.zeros((1,) + tuple(image_shape)))
    return model
