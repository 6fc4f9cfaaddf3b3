"""vae_tf's presets: absl flagfiles, installed as the package `vae_tf.presets`.

`python -m vae_tf.train --preset=NAME` reads `NAME.flags` from here, in a checkout
or in an installed wheel alike; `--list_presets` lists them.
"""
