"""The figures of a run, written to `<model_dir>/figures/` and to TensorBoard.

After an epoch, `write_epoch` computes the arrays behind the figures of
`vae_tf.figures.catalogue` that training draws, keeps them in
`figures/history/epoch_NNN.npz` so that figures spanning epochs survive a resumed
run, and draws them. At the end of training `write_animations` turns the
per-epoch history into GIFs, and `write_projector` lays out the TensorBoard
projector of the test set's latent means. Epochs are numbered from 1 in every
file name and title. This module is the one that writes figures' PNGs
(`write_png`), GIFs and TensorBoard images.
"""

import dataclasses
import glob
import io
import os

import numpy as np
import tensorflow as tf
from PIL import Image

from vae_tf.figures import catalogue, inspection, plots
from vae_tf.figures.catalogue import ACROSS_EPOCHS, EPOCH, PlotOptions
from vae_tf.files import write_atomically
from vae_tf.run.layout import FIGURES_DIR, HISTORY_DIR

FRAME_DPI = 80
SPRITE_MAX_PIXELS = 8192  # the projector's largest sprite sheet, per side
MAX_TEST_BYTES = 200 * 2**20  # of test images held for the scatter and the projector


@dataclasses.dataclass
class FixedInputs:
    """Inputs chosen once per run so that every epoch's figures show the same things."""

    examples: np.ndarray  # [N, H, W, C] float32: one test image per class
    test_images: np.ndarray  # [M, H, W, C] float32: for the latent scatter
    test_labels: np.ndarray  # [M] int
    class_names: tuple
    seed: int

    @classmethod
    def from_split(cls, split, class_names, seed, max_test=10000):
        # At most MAX_TEST_BYTES of float32 test images, which large colour images reach
        # well before 10,000 of them (64x64x3: 4,266).
        per_image = 4 * int(np.prod(split.image_shape))
        max_test = min(max_test, max(1000, MAX_TEST_BYTES // per_image))
        images = split.float_images(max_test)
        labels = split.labels[:max_test]
        chosen = inspection.one_per_class(labels, len(class_names))
        return cls(images[chosen], images, labels, tuple(class_names), seed)


def epoch_arrays(model, fixed: FixedInputs) -> dict:
    """Every array the figures of one epoch need (those of `catalogue.of_training`)."""
    arrays, options = {}, PlotOptions(seed=fixed.seed)
    for figure in catalogue.of_training(model).values():
        arrays.update(figure.compute(model, fixed, options))
    return arrays


def load_history(model_dir: str) -> dict:
    """{epoch: arrays} of every epoch whose figures were written."""
    history = {}
    for path in sorted(glob.glob(os.path.join(model_dir, HISTORY_DIR, "epoch_*.npz"))):
        epoch = int(os.path.basename(path)[len("epoch_"):-len(".npz")])
        with np.load(path) as stored:
            history[epoch] = {key: stored[key] for key in stored.files}
    return history


def write_png(figure, path: str) -> str:
    """Saves a matplotlib Figure as a PNG; returns the path."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def _file_name(name: str, figure, epoch: int) -> str:
    """An EPOCH figure's PNG is one per epoch; an ACROSS_EPOCHS one is redrawn in place."""
    return f"{name}_epoch_{epoch:03d}.png" if figure.when == EPOCH else f"{name}.png"


def epoch_figures(epoch: int, arrays: dict, history: dict, fixed: FixedInputs,
                  metrics: list) -> dict:
    """{file name: Figure} of the figures to write after `epoch` (1-based)."""
    options, figures = PlotOptions(seed=fixed.seed), {}
    for name, figure in catalogue.drawable(arrays).items():
        drawn = (figure.draw(epoch, arrays, fixed, options) if figure.when == EPOCH
                 else figure.draw(history, fixed, metrics))
        if drawn is not None:
            figures[_file_name(name, figure, epoch)] = drawn
    return figures


def write_epoch(model, fixed: FixedInputs, epoch: int, model_dir: str, metrics: list,
                history: dict, writer=None) -> list:
    """Writes the figures of `epoch` (1-based) and returns their paths.

    `history` ({epoch: arrays}, as from `load_history`) gains this epoch's
    arrays, in memory and on disk; figures spanning epochs draw from it. With
    a TensorBoard `writer`, also logs the reconstruction, sample and
    conditional images and histograms of z_mean and exp(z_log_var).
    """
    arrays = record_epoch(model, fixed, epoch, model_dir, history)
    return draw_epoch(epoch, arrays, dict(history), fixed, metrics, model_dir, writer)


def record_epoch(model, fixed: FixedInputs, epoch: int, model_dir: str, history: dict) -> dict:
    """Computes the arrays of `epoch`'s figures, keeps them on disk and in `history`.

    This half needs the model as it is at the epoch's end; `draw_epoch`, which
    needs only the arrays, can then run while training goes on.
    """
    os.makedirs(os.path.join(model_dir, HISTORY_DIR), exist_ok=True)
    arrays = epoch_arrays(model, fixed)
    write_atomically(os.path.join(model_dir, HISTORY_DIR, f"epoch_{epoch:03d}.npz"),
                     lambda path: np.savez_compressed(path, **arrays), suffix=".tmp.npz")
    history[epoch] = arrays
    # Epochs after this one can only be left over from a run stopped before its checkpoint.
    for stale in [e for e in history if e > epoch]:
        del history[stale]
    return arrays


def draw_epoch(epoch: int, arrays: dict, history: dict, fixed: FixedInputs, metrics: list,
               model_dir: str, writer=None) -> list:
    """Draws and saves the figures of `epoch` from its arrays; returns their paths."""
    figures = epoch_figures(epoch, arrays, history, fixed, metrics)
    paths = [write_png(figure, os.path.join(model_dir, FIGURES_DIR, name))
             for name, figure in figures.items()]
    if writer is not None:
        with writer.as_default():
            for name, figure in catalogue.drawable(arrays).items():
                key = _file_name(name, figure, epoch)
                if figure.tensorboard and key in figures:
                    png = plots.to_png(figures[key], dpi=FRAME_DPI)
                    tf.summary.image(figure.tensorboard, tf.image.decode_png(png)[tf.newaxis],
                                     step=epoch)
            tf.summary.histogram("z_mean", arrays["z_mean"], step=epoch)
            tf.summary.histogram("z_variance", np.exp(arrays["z_log_var"]), step=epoch)
        writer.flush()
    return paths


def _limits(points: list) -> tuple:
    """Axis limits covering the central 99.8% of every frame's points."""
    stacked = np.concatenate(points)
    low, high = np.percentile(stacked, [0.1, 99.9], axis=0)
    margin = 0.05 * (high - low)
    return (low[0] - margin[0], high[0] + margin[0]), (low[1] - margin[1], high[1] + margin[1])


def _gif(figures: list, path: str) -> str:
    frames = [Image.open(io.BytesIO(plots.to_png(f, dpi=FRAME_DPI))).convert("RGB")
              for f in figures]
    return write_atomically(path, lambda temporary: frames[0].save(
        temporary, save_all=True, append_images=frames[1:], duration=700, loop=0),
        suffix=".tmp.gif")


def write_animations(model_dir: str, fixed: FixedInputs, history: dict) -> list:
    """GIFs across the epochs of `history` of the catalogue's figures that have one."""
    if not history:
        return []
    epochs = sorted(history)
    options = PlotOptions(seed=fixed.seed,
                          limits=_limits([plots.plane(history[e]["z_mean"]) for e in epochs]))
    paths = []
    for figure in catalogue.drawable(history[epochs[0]]).values():
        if not figure.gif:
            continue
        frames = [figure.draw(e, history[e], fixed, options) if figure.when != ACROSS_EPOCHS
                  else figure.draw({e: history[e]}, fixed, []) for e in epochs]
        paths.append(_gif(frames, os.path.join(model_dir, FIGURES_DIR, figure.gif)))
    return paths


def sprite(images: np.ndarray) -> np.ndarray:
    """[N, H, W] or [N, H, W, 3] images in [0, 1] -> one square uint8 sprite sheet, row-major."""
    side = int(np.ceil(np.sqrt(len(images))))
    height, width = images.shape[1:3]
    colour = images.shape[3:]
    sheet = np.zeros((side * side, height, width) + colour, np.float32)
    sheet[:len(images)] = images
    sheet = sheet.reshape((side, side, height, width) + colour).swapaxes(1, 2).reshape(
        (side * height, side * width) + colour)
    return (sheet * 255).round().astype(np.uint8)


def write_projector(folder: str, z_mean: np.ndarray, fixed: FixedInputs) -> str:
    """Writes a TensorBoard projector of the test set's latent means into `folder`.

    TensorBoard's projector only looks in run folders, those holding event
    files, so `folder` should be one (vae_tf uses tensorboard/figures).
    """
    from tensorboard.plugins import projector

    os.makedirs(folder, exist_ok=True)
    # TensorBoard's projector takes sprites of at most 8192x8192 pixels, so a set of large
    # images shows as many of its test images as fit.
    count = min(len(z_mean), (SPRITE_MAX_PIXELS // max(fixed.test_images.shape[1:3])) ** 2)
    z_mean = z_mean[:count]
    with open(os.path.join(folder, "metadata.tsv"), "w") as stream:
        stream.write("label\tclass\n")
        for label in fixed.test_labels[:count]:
            name = fixed.class_names[label] if fixed.class_names else "unlabelled"
            stream.write(f"{label}\t{name}\n")
    Image.fromarray(sprite(inspection.displayable(fixed.test_images[:count]))).save(
        os.path.join(folder, "sprite.png"))
    embedding = tf.Variable(z_mean.astype(np.float32), name="latent_means")
    # save() also writes the `checkpoint` file through which the projector finds it.
    tf.train.Checkpoint(embedding=embedding).save(os.path.join(folder, "embedding.ckpt"))
    config = projector.ProjectorConfig()
    entry = config.embeddings.add()
    entry.tensor_name = "embedding/.ATTRIBUTES/VARIABLE_VALUE"
    entry.metadata_path = "metadata.tsv"
    entry.sprite.image_path = "sprite.png"
    entry.sprite.single_image_dim.extend(fixed.test_images.shape[1:3])
    projector.visualize_embeddings(folder, config)
    return folder
