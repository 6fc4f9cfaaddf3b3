"""The data a VAE is trained on: finding, reading and streaming images.

- `sources`: the data sets of a run (MNIST and Fashion-MNIST offline first,
  tensorflow-datasets, folders, .npz), chosen by `load_dataset`; add a data
  source there.
- `datatypes`: what a data set is (splits, shape, class names).
- `idx`, `image_files`, `npz_files`: the file formats; `downloads`: whether
  tensorflow-datasets can download from here.
- `pipelines`: the `tf.data` pipelines and the binarisation.
"""
