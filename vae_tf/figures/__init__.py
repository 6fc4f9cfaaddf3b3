"""Figures of a VAE, and the latent explorer.

- `catalogue`: every figure in one table (`CATALOGUE`): add a figure there.
- `inspection`: what a figure shows, computed from the model as NumPy arrays.
- `plots`: drawing those arrays as matplotlib Figures.
- `per_epoch`: the figures written after each epoch (PNG, TensorBoard, GIFs).
- `visualization`: figures of a trained run, for `vae_tf.visualize`.
- `explorer` (with `explorer.html`): the latent space in a web page.
"""
