"""The VAE: its networks, prior, posterior and likelihood composed, and trained together.

z is drawn with the reparameterisation trick, z = z_mean + exp(z_log_var / 2) * eps,
eps ~ N(0, I) (Kingma and Welling, 2014, arXiv:1312.6114), then, with a flow or a
second stochastic layer, mapped on; the VAE minimises the negative ELBO of
`vae_tf.model.losses` (or the importance-weighted bound, `iwae.training_terms`). The
networks are `vae_tf.model.networks`'; the priors `vae_tf.model.priors`'.
With an auxiliary classifier the model is conditional: the classifier's softmax is
concatenated to z before decoding, and generating class k feeds the one-hot vector
of k instead. docs/design.md shows how the parts fit.
"""

import dataclasses
import json
from typing import NamedTuple, Optional

import keras
import tensorflow as tf

from vae_tf import compat
from vae_tf.model import hierarchy, iwae, losses, priors
from vae_tf.model.flows import InverseAutoregressiveFlow
from vae_tf.model.inference import InferenceMethods
from vae_tf.model.networks import (
    Classifier,
    Decoder,
    Encoder,
    Sampling,
    conv_decoder,
    conv_encoder,
    mlp_decoder,
    mlp_encoder,
    reparameterize,
    require_choice,
)
from vae_tf.pixels import MNIST_IMAGE_SHAPE, as_float_images

# Keras dtype policies of --mixed_precision.
DTYPE_POLICIES = {"none": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


class VAEOutputs(NamedTuple):
    z_mean: tf.Tensor  # [B, Z] float32
    z_log_var: tf.Tensor  # [B, Z] float32, whatever the scale parameterisation
    z: tf.Tensor  # [B, Z] one reparameterised sample (after the flow, if any)
    logits: tf.Tensor  # [B, H, W, C] logits of p(x|z)
    class_logits: Optional[tf.Tensor]  # [B, C] for conditional models, else None
    # [B] log |det dz/dz_0| of the inverse autoregressive flow; None without one.
    flow_log_det: Optional[tf.Tensor] = None


def with_class_probabilities(z, class_logits):
    """The decoder input of a conditional model: z [B, Z] joined by softmax(class_logits)."""
    return tf.concat([z, tf.nn.softmax(class_logits)], axis=-1)


# --condition_on: what a conditional model's decoder reads beside z while it trains.
CONDITIONS = ("classifier", "label")


@keras.saving.register_keras_serializable(package="vae_tf")
class VAE(InferenceMethods, compat.SkipSymbolicBuildWhenBuilt, keras.Model):
    """The encoder, decoder and optional classifier, trained on the negative ELBO.

    With a classifier the model is conditional, and `decode` takes labels. With
    `condition_on="classifier"` (the tutorial's model) the decoder reads z joined
    by the classifier's class probabilities. With `condition_on="label"` it is
    the conditional VAE of Sohn et al. (2015): encoder and decoder both read the
    one-hot true label while training, so z has no reason to carry the class,
    and an image without a label is encoded with the classifier's prediction,
    as in Kingma et al. (2014)'s M2.

    With a `flow` (an inverse autoregressive flow, `vae_tf.model.flows`), z is the
    flow of the Gaussian draw, driven by the encoder's context head, and the KL
    term is estimated from that sample (`losses.flow_kl_divergence`).

    The `prior` is one of `priors.PRIORS` (N(0, I) when none is given). With a
    `ladder` (`vae_tf.model.hierarchy`) the model has two stochastic layers: the
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
        self.build_settings = None  # JSON, set by build_vae: what get_config returns
        require_choice("condition_on", condition_on, CONDITIONS)
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
        self.train_iw_samples = 1  # --train_iw_samples, set by build_vae
        self.trackers = [keras.metrics.Mean(name=name) for name in
                         ("loss", "reconstruction_loss", "kl_loss")]
        if self.classifier is not None:
            self.trackers.append(keras.metrics.Mean(name="classifier_loss"))
            self.accuracy = keras.metrics.SparseCategoricalAccuracy(name="classifier_accuracy")
            self.trackers.append(self.accuracy)

    def get_config(self) -> dict:
        """What `from_config` rebuilds the model from: the `Config`, classes and image shape
        that `build_vae` was given (saving to `.keras` needs it)."""
        if self.build_settings is None:
            raise NotImplementedError("only a VAE made by vae_tf.model.vae.build_vae (or "
                                      "vae_tf.train) saves to .keras; save the weights instead")
        return {**super().get_config(), "vae_tf": json.loads(self.build_settings)}

    def random_state_variables(self) -> list:
        """The state variables of the model's seed generators (latent noise, dropout).

        Keras does not count them as weights, so checkpoints, SavedModels and `.keras`
        files must be given them explicitly.
        """
        weight_ids = {id(variable) for variable in self.weights}
        return [variable for variable in self.variables if id(variable) not in weight_ids]

    def save_own_variables(self, store):
        """Keras' own variables, and the seed generators' states, so that a model loaded
        from `.keras` trains on with the noise the saved one would have drawn."""
        super().save_own_variables(store)
        for index, variable in enumerate(self.random_state_variables()):
            store[f"random_state_{index}"] = variable

    def load_own_variables(self, store):
        own = {key: store[key] for key in store.keys() if not key.startswith("random_state_")}
        super().load_own_variables(own)
        for index, variable in enumerate(self.random_state_variables()):
            if f"random_state_{index}" in store:
                variable.assign(store[f"random_state_{index}"])

    @classmethod
    def from_config(cls, config: dict) -> "VAE":
        from vae_tf.config import Config  # config imports models

        settings = config["vae_tf"]
        return build_vae(Config.from_dict(settings["config"]), settings["num_classes"],
                         tuple(settings["image_shape"]))

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
        layer's own, for draws that must be repeatable (`vae_tf.evaluation.elbo_iwae`)."""
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

    def posterior(self, images, training=False):
        """(z_mean, z_log_var, context) of the base Gaussian of q(z|x) for unlabelled
        images; context None without a flow or second layer. Draws of
        N(z_mean, exp(z_log_var)) go through `transform`."""
        condition = self.condition(images) if self.condition_on == "label" else None
        z_mean, z_log_var, context = self.encoder(images, training=training,
                                                  condition=condition, return_context=True)
        return (*self.base(z_mean, z_log_var), context)

    def _one_hot(self, labels, class_logits):
        """One-hot true labels, or of the classifier's prediction where there are none."""
        if labels is None:
            labels = tf.argmax(class_logits, axis=-1)
        return tf.one_hot(tf.cast(labels, tf.int32), self.num_classes)

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

    def _objective(self, images, labels, training):
        """(outputs, terms) of the training objective: the ELBO's, or with
        --train_iw_samples=K > 1 the importance-weighted bound's (no classifier; outputs None)."""
        if self.train_iw_samples > 1:
            return None, iwae.training_terms(self, images, self.train_iw_samples, training)
        outputs = self(images, training=training, labels=labels)
        return outputs, self.example_losses(images, labels, outputs)

    def train_step(self, data):
        images, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        images = as_float_images(images)  # the pipelines feed uint8
        with tf.GradientTape() as tape:
            outputs, terms = self._objective(images, labels, training=True)
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
        outputs, terms = self._objective(images, labels, training=False)
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
                           seed_channels=config.decoder_seed_channels, **conv)
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
    model.train_iw_samples = config.train_iw_samples
    model.build_settings = json.dumps({"config": dataclasses.asdict(config),
                                       "num_classes": num_classes,
                                       "image_shape": list(image_shape)})
    model(tf.zeros((1,) + tuple(image_shape)))
    return model
