"""The VAE and its parts: networks, prior, posterior, likelihood.

- `vae`: the Keras model that composes the parts (`build_vae`, `VAE`).
- `networks`: encoders, decoders, the auxiliary classifier.
- `priors` (`PRIORS`): add a prior there; `flows` and `hierarchy`: richer
  posteriors (an inverse autoregressive flow; a second stochastic layer).
- `losses` (`LIKELIHOODS`): the terms of the objective; add a likelihood there.
- `iwae`: the importance-weighted estimate of log p(x).
- `inference`: the trained model's NumPy methods (encode, decode, generate...).

Nothing here reads data sets or run folders.
"""
