"""The networks a VAE is built from: encoders, decoders and the auxiliary classifier.

The encoder maps images to the mean and log-variance of a diagonal Gaussian
(`SCALES` names how its scale head becomes a log-variance); the decoder maps z to
the logits of p(x|z). Two architectures reproduce the tutorials: `mlp` (dense
layers) and `conv` (three Conv2D with leaky ReLU and dropout; at 28x28x1 a decoder
of Dense(24) -> Dense(49) -> 7x7x1 -> three Conv2DTranspose -> Dense(784), as the
tutorial had; at any other image shape the transposed convs end in one of one
filter per channel, from a seed grid sized by the decoder's strides; with
`seed_channels`, a deep seed image and that ending at every shape, the ConvHVAE's
decoder). Both take images of any height, width and channel count. `Sampling` draws z from the
encoder's Gaussian with the reparameterisation trick.
"""

import math

import keras
import tensorflow as tf

from vae_tf.pixels import MNIST_IMAGE_SHAPE

SOFTPLUS_MIN_STD = 1e-6  # keeps log(std) finite when softplus underflows
# How the encoder's raw scale output becomes a log-variance, per --scale.
SCALES = {
    "log_var": lambda raw: raw,
    "log_std": lambda raw: 2.0 * raw,
    "softplus": lambda raw: 2.0 * tf.math.log(tf.nn.softplus(raw) + SOFTPLUS_MIN_STD),
}



def require_choice(kind: str, name: str, choices) -> None:
    if name not in choices:
        raise ValueError(f"unknown {kind} {name!r}; one of {', '.join(choices)}")


def log_variance(raw_scale, scale):
    """Converts the encoder's raw scale output to a log-variance (`SCALES`)."""
    require_choice("scale", scale, SCALES)
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
        require_choice("scale", scale, SCALES)
        self.scale = scale
        self.body = body
        # The heads stay float32 so the KL term is exact under mixed precision.
        self.mean_head = keras.layers.Dense(z_dim, dtype="float32", name="z_mean")
        self.scale_head = keras.layers.Dense(z_dim, dtype="float32", name="z_scale")
        # The context h of an inverse autoregressive flow (`vae_tf.model.flows`), if any.
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


def seed_grid(image_shape, strides, tutorial: bool = True) -> tuple:
    """(height, width) of the conv decoder's seed image.

    At 28x28x1 it is the tutorial's 7x7, whose transposed convs are flattened
    into a dense layer of 784 logits. At any other shape, or without the
    `tutorial` decoder, it is the image size divided by the product of the
    decoder's strides (rounded up), so that the transposed convs reach at least
    the image size, then cropped to it.
    """
    if tutorial and tuple(image_shape) == MNIST_IMAGE_SHAPE:
        return 7, 7
    upsampling = math.prod(strides)
    return -(-image_shape[0] // upsampling), -(-image_shape[1] // upsampling)


def conv_decoder(dense_units: int, filters, kernel_size: int, strides,
                 leaky_relu_slope: float, dropout: float, image_shape, seed: int = 0,
                 seed_channels: int = 0, **kwargs) -> Decoder:
    """The tutorial's decoder: Dense(dense_units) -> Dense(seed grid) -> Conv2DTranspose.

    Dropout follows every transposed conv but the last, as in the tutorial. At
    28x28x1 the output is the tutorial's Flatten -> Dense(784); at other shapes
    a Conv2DTranspose with one filter per channel, which keeps the weights of
    large and colour images in the conv kernels rather than in a dense layer of
    H*W*C outputs per feature. `seed_channels` C >= 1 makes the seed image C
    channels deep and ends in that Conv2DTranspose at every shape, 28x28x1
    included: the decoder of a ConvHVAE, whose z reaches the pixels through
    convolutions rather than through a 49-value seed and one dense layer.
    """
    leaky = keras.layers.LeakyReLU(negative_slope=leaky_relu_slope)
    tutorial = not seed_channels  # the tutorial's one-channel seed
    grid = seed_grid(image_shape, strides, tutorial=tutorial)
    channels = 1 if tutorial else seed_channels
    body = [keras.layers.Dense(dense_units, activation=leaky),
            keras.layers.Dense(grid[0] * grid[1] * channels, activation=leaky),
            keras.layers.Reshape(grid + (channels,))]
    body += conv_layers(keras.layers.Conv2DTranspose, filters, kernel_size, strides, "relu",
                        dropout, seed, dropout_after=range(len(filters) - 1))
    if tuple(image_shape) == MNIST_IMAGE_SHAPE and tutorial:
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


def reparameterize(z_mean, z_log_var, epsilon):
    """z = z_mean + exp(z_log_var / 2) * epsilon: a draw from q(z|x) given N(0, I) noise."""
    return z_mean + tf.exp(0.5 * z_log_var) * epsilon


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
        return reparameterize(z_mean, z_log_var, self.noise(tf.shape(z_mean)))

    def noise(self, shape):
        """N(0, I) noise of `shape` [..., B, Z], B this replica's part of the batch."""
        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync if context is not None else 1
        if replicas == 1:
            return keras.random.normal(shape, seed=self.seed_generator)
        batch = shape[-2]
        whole = keras.random.normal(tf.concat([shape[:-2], [batch * replicas], shape[-1:]], 0),
                                    seed=self.seed_generator)  # [..., R * B, Z]
        replica = tf.cast(context.replica_id_in_sync_group, tf.int32)
        return whole[..., replica * batch:(replica + 1) * batch, :]
