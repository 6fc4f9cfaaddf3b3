"""Test-set likelihoods of a trained VAE: the ELBO and the importance-weighted bound.

For each test image x, with z_k ~ q(z|x) for k = 1..K,

    log p(x) >= log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x)      (Burda et al., 2016,
                                                                 arXiv:1509.00519)

which tightens to log p(x) as K grows; K = 1 is the ELBO in expectation.
`importance_weighted_log_likelihood` works for any encoder and decoder
log-likelihood, which is how it is tested against a linear-Gaussian model whose
marginal likelihood is known exactly. The K samples are drawn in chunks and
folded with a running log-sum-exp, so memory stays bounded for K = 5000.
Every likelihood includes its normalising constant (see `losses.log_likelihood`).
"""

import json
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf

from vae_tf import compat, files, log
from vae_tf.config import AUTO
from vae_tf.data import pipelines, sources
from vae_tf.evaluation import part_done
from vae_tf.figures import inspection
from vae_tf.files import write_text_atomically
from vae_tf.model import losses
from vae_tf.model.iwae import importance_weighted_log_likelihood
from vae_tf.run import checkpoints, layout, stop_signals, tuning


def model_functions(model, config):
    """encode_fn, log_likelihood_fn and transform_fn of a vae_tf model, for the estimator
    above (transform_fn None without a flow or second stochastic layer)."""
    return model.iwae_functions()[:3]


def iwae_function(model, config, num_samples: int, chunk_size: int, jit_compile: bool):
    """The compiled estimate: (images [B, ...], seed) -> log p(x) estimates [B].

    With `jit_compile`, XLA compiles the encoder and the decoder's log-likelihood,
    where the time goes, but not the random draws: XLA's stateless generators
    derive other numbers from a seed given at run time, and the samples must not
    depend on whether XLA is on.
    """
    encode_fn, log_likelihood_fn, transform_fn = model_functions(model, config)
    log_prior_fn = model.iwae_functions()[3]
    if jit_compile:
        encode_fn = tf.function(encode_fn, jit_compile=True)
        log_likelihood_fn = tf.function(log_likelihood_fn, jit_compile=True)
        if transform_fn is not None:
            transform_fn = tf.function(transform_fn, jit_compile=True)
    return tf.function(lambda x, s: importance_weighted_log_likelihood(
        encode_fn, log_likelihood_fn, x, num_samples, chunk_size, s, transform_fn,
        log_prior_fn))


# --batch_size, --chunk_size and --jit_compile of the IWAE estimate, when `auto`: the
# (images per batch, samples per chunk) shapes timed, with and without XLA. A call
# decodes batch * chunk samples; large calls run out of cache on a CPU (a conv decoder
# measured 870 samples/s at 100 x 500 and 1,280 at 20 x 250 on a 2-core AVX2 CPU).
IWAE_SHAPES = ((100, 500), (100, 50), (50, 100), (20, 250), (20, 100))
IWAE_TRIAL_SECONDS = 0.5
IWAE_MAX_CALL_SECONDS = 5.0  # shapes whose one call would take longer are not timed


def _samples_per_second(model, config, images, batch: int, chunk: int, jit: bool) -> float:
    """Importance samples per second of one-chunk calls on `batch` images, after a warm-up."""
    estimate = iwae_function(model, config, chunk, chunk, jit)
    inputs = tf.constant(images[:batch], tf.float32)
    estimate(inputs, tf.constant(0)).numpy()  # trace and compile
    calls, start = 0, time.perf_counter()
    while calls < 1 or time.perf_counter() - start < IWAE_TRIAL_SECONDS:
        estimate(inputs, tf.constant(calls)).numpy()
        calls += 1
    return batch * chunk * calls / (time.perf_counter() - start)


def iwae_settings(model, config, spec, images: np.ndarray, num_samples: int,
                  batch_size: int = AUTO, chunk_size: int = AUTO,
                  jit_compile: str = "auto") -> dict:
    """{"batch_size", "chunk_size", "jit_compile", "how"} for the IWAE estimate.

    Settings given (not AUTO / "auto") are kept; the others are the fastest of the
    IWAE_SHAPES and of XLA on or off, timed on the first test images (cached per
    machine and model like `vae_tf.run.tuning`). The shapes and XLA change the random
    draws' grouping or the rounding, not the estimator.
    """
    given = {"batch_size": batch_size, "chunk_size": chunk_size, "jit_compile": jit_compile}
    if batch_size != AUTO and chunk_size != AUTO and jit_compile != "auto":
        return dict(given, how="as given")
    shapes = sorted({(min(b if batch_size == AUTO else batch_size, len(images)),
                      min(c if chunk_size == AUTO else chunk_size, num_samples))
                     for b, c in IWAE_SHAPES}, key=lambda shape: shape[0] * shape[1])
    jits = ("false", "true") if jit_compile == "auto" else (jit_compile,)
    key = tuning.cache_key(config, spec) + "-iwae-" + "-".join(
        map(str, [*shapes[0], *shapes[-1], *jits]))
    record = tuning.cached(key)
    if record is None:
        log.info("IWAE: timing " + ", ".join(f"{b}x{c}" for b, c in shapes)
                 + " (images x samples per call)" + (" with and without XLA"
                                                     if len(jits) > 1 else "") + "...")
        with compat.functions_of_one_code():  # one estimate function per shape timed
            probe = _samples_per_second(model, config, images, *shapes[0], jits[0] == "true")
            affordable = [shape for shape in shapes if shape == shapes[0]
                          or shape[0] * shape[1] / probe < IWAE_MAX_CALL_SECONDS]
            trials = [{"batch_size": b, "chunk_size": c, "jit_compile": jit,
                       "samples_per_s": probe if ((b, c), jit) == (shapes[0], jits[0]) else
                       _samples_per_second(model, config, images, b, c, jit == "true")}
                      for jit in jits for b, c in affordable]
        best = max(trials, key=lambda trial: trial["samples_per_s"])
        record = dict(best, trials=trials, how="measured " + ", ".join(
            f"{t['batch_size']}x{t['chunk_size']}{' XLA' if t['jit_compile'] == 'true' else ''}"
            f" {t['samples_per_s']:.0f}" for t in trials) + " samples/s")
        tuning.store(key, record)
    return {name: record[name] for name in given} | {"how": record["how"]}


def evaluate_model(model, config, images: np.ndarray, labels: np.ndarray, num_samples: int,
                   batch_size: int = 100, chunk_size: int = 500, seed: int = 0,
                   progress: bool = True, jit_compile: bool = False, resume: dict = None,
                   saver=None) -> dict:
    """The test ELBO and IWAE bound of `images` [N, H, W, C] float32 in [0, 1].

    Bits per dimension divide the negative log-likelihood by H*W*C*log(2). `resume`
    ({"start", "totals"} of `vae_tf.evaluation.part_done`) carries on from a stopped
    evaluation; `saver` (a `part_done.Saver`) is given the sums after each batch, and
    the last sums however the loop ends.
    """
    estimate = iwae_function(model, config, num_samples, chunk_size, jit_compile)
    done = resume["start"] if resume else 0
    totals = dict(resume["totals"]) if resume else {"reconstruction": 0.0, "kl": 0.0,
                                                     "log_px": 0.0}
    bar = keras.utils.Progbar(len(images) - done, unit_name="image") \
        if progress and done < len(images) else None
    try:
        for start in range(done, len(images), batch_size):
            stop_signals.stop_if_received()
            batch = tf.constant(images[start:start + batch_size], tf.float32)
            # The ELBO of the training loss, from one seeded draw per image, unlabelled.
            epsilon = inspection.prior_z(len(batch), model.z_dim, seed + 1 + start)
            outputs = model(batch, training=False, noise=epsilon)
            terms = {  # the batch's sums, added to the totals together
                "reconstruction": -float(tf.reduce_sum(losses.log_likelihood(
                    model.likelihood, batch, outputs.logits, model.decoder_std))),
                "kl": float(tf.reduce_sum(model.kl_divergence(outputs))),
                "log_px": float(tf.reduce_sum(estimate(batch, tf.constant(seed + start))))}
            totals = {name: totals[name] + terms[name] for name in totals}
            done = start + len(batch)
            if saver is not None:
                saver.save(done, totals)
            if bar is not None:
                bar.add(len(batch))
    finally:
        if saver is not None:
            saver.save(done, totals, force=True)
    count = len(images)
    num_pixels = int(np.prod(images.shape[1:]))
    nll = -totals["log_px"] / count
    result = {
        "num_examples": count, "likelihood": config.likelihood, "binarize": config.binarize,
        "iw_samples": num_samples,
        "elbo_nats": -(totals["reconstruction"] + totals["kl"]) / count,
        "reconstruction_nats": totals["reconstruction"] / count,
        "kl_nats": totals["kl"] / count,
        "nll_iwae_nats": nll, "bits_per_dim": nll / (num_pixels * math.log(2.0)),
    }
    if model.conditional:
        result.update(_classifier_metrics(model, images, labels, seed))
    return result


def _classifier_metrics(model, images, labels, seed, per_class: int = 100) -> dict:
    """The model's own classifier: its test accuracy, and how often it assigns generated
    images to their class (self_class_agreement, which flatters the model: the classifier
    trained with the decoder; `vae_tf.evaluation.judge` grades from the outside)."""
    predictions = np.concatenate([
        np.argmax(model.classifier(tf.constant(images[s:s + 1000]), training=False), axis=-1)
        for s in range(0, len(images), 1000)])
    classes = np.repeat(np.arange(model.num_classes), per_class)
    generated = model.decode(tf.constant(inspection.prior_z(len(classes), model.z_dim, seed)),
                             tf.constant(classes, tf.int32))
    assigned = np.argmax(model.classifier(generated, training=False), axis=-1)
    return {"classifier_accuracy": float(np.mean(predictions == labels)),
            "self_class_agreement": float(np.mean(assigned == classes))}


# The numbers that also go to TensorBoard's evaluation folder.
_SUMMARISED = ("elbo_nats", "nll_iwae_nats", "bits_per_dim", "classifier_accuracy",
               "self_class_agreement", "judged_class_agreement", "frechet_distance",
               "frechet_distance_train_floor", "judge_test_accuracy")


def record(model_dir: str, result: dict) -> str:
    """Keeps an evaluation: a file of its own under evaluations/, evaluation.json the newest.

    No evaluation is lost to a later one (a K = 5000 estimate of hours under a
    quick K = 4 check, say): each is kept as `evaluations/<time>-K<k>.json`, and
    an evaluation.json written before that folder existed is first kept there
    too. The part-done sums it was resumed from, if any, are then removed
    (`vae_tf.evaluation.part_done`). A folder that cannot be written (read-only, full)
    is one line.
    Returns the new file's path.
    """
    folder = os.path.join(model_dir, layout.EVALUATIONS_DIR)
    newest = os.path.join(model_dir, layout.EVALUATION_FILE)
    text = json.dumps(result, indent=2, sort_keys=True)
    with files.reporting_unwritable(model_dir, "the evaluation printed above"):
        os.makedirs(folder, exist_ok=True)
        finished = [name for name in os.listdir(folder) if name.endswith(".json")]
        if os.path.isfile(newest) and not finished:
            with open(newest) as stream:
                earlier = json.load(stream)
            stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(os.path.getmtime(newest)))
            write_text_atomically(_unused_path(folder, stamp, earlier),
                                  json.dumps(earlier, indent=2, sort_keys=True))
        path = _unused_path(folder, time.strftime("%Y%m%d-%H%M%S"), result)
        write_text_atomically(path, text)
        write_text_atomically(newest, text)
        writer = tf.summary.create_file_writer(
            os.path.join(model_dir, layout.TENSORBOARD_EVALUATION_DIR))
        with writer.as_default():
            for key in _SUMMARISED:
                if key in result:
                    tf.summary.scalar(key, result[key], step=result.get("epoch", 0))
        writer.close()
        if "iw_samples" in result and "num_examples" in result:
            part_done.discard(model_dir, result["iw_samples"], result["num_examples"])
    return path


def _unused_path(folder: str, stamp: str, result: dict) -> str:
    """evaluations/<stamp>-K<k>.json, with -2, -3... if two land in the same second."""
    base = f"{stamp}-K{result.get('iw_samples', 'unknown')}"
    name, count = base, 1
    while os.path.exists(os.path.join(folder, name + ".json")):
        count += 1
        name = f"{base}-{count}"
    return os.path.join(folder, name + ".json")


def evaluate_run(model_dir: str, num_examples: int = 0, num_samples: int = 5000,
                 batch_size: int = AUTO, chunk_size: int = AUTO, data_dir: str = "",
                 progress: bool = True, judged: bool = True, jit_compile: str = "auto",
                 write: bool = True) -> dict:
    """Evaluates the latest checkpoint on the test split; with `write`, `record`s the result.

    `batch_size`, `chunk_size` and `jit_compile` of the IWAE estimate left at
    AUTO / "auto" are measured (`iwae_settings`). With `judged`, `vae_tf.evaluation.judge`
    also grades samples from the prior with a classifier trained apart from the
    VAE (trained once per data set, then cached). A stopped evaluation of the same
    weights, images and K resumes where it stopped (`vae_tf.evaluation.part_done`).
    """
    config, state = checkpoints.restore_trained(model_dir)
    dataset = sources.load_for(config, data_dir)
    test = pipelines.prepare_test_split(dataset.test, config.binarize)
    count = num_examples or len(test)
    images = test.float_images(count)
    ident = part_done.identity(state.model, images, num_samples, config.seed)
    kept = part_done.load(model_dir, ident)
    if kept:  # the stopped evaluation's call shape, where no other is asked for
        batch_size, chunk_size, jit_compile = (
            kept[name] if given in (AUTO, "auto") else given for name, given in
            zip(part_done.SETTINGS, (batch_size, chunk_size, jit_compile)))
    settings = iwae_settings(state.model, config, dataset.spec, images, num_samples,
                             batch_size, chunk_size, jit_compile)
    if kept and any(kept[name] != settings[name] for name in part_done.SETTINGS):
        log.info("IWAE: another call shape than the stopped evaluation's was asked for; "
                 "starting afresh.")
        kept = None
    if settings["how"] != "as given":
        log.info(f"IWAE: {settings['batch_size']} images x {settings['chunk_size']} samples "
                 f"per call, XLA {'on' if settings['jit_compile'] == 'true' else 'off'} "
                 f"({settings['how']}).")
    if kept:
        log.info(f"IWAE: resuming a stopped evaluation at image {kept['start']:,} of "
                 f"{count:,} ({part_done.path(model_dir, num_samples, count)}).")
    start = time.perf_counter()
    result = evaluate_model(state.model, config, images, test.labels[:count], num_samples,
                            settings["batch_size"], settings["chunk_size"], config.seed,
                            progress, settings["jit_compile"] == "true", resume=kept,
                            saver=part_done.Saver(model_dir, ident, settings))
    result.update(evaluation_seconds=time.perf_counter() - start,
                  resumed_at_image=kept["start"] if kept else 0,
                  **{f"iwae_{name}": value for name, value in settings.items()})
    result.update(epoch=state.completed_epochs, dataset=config.dataset,
                  decoder_std=config.decoder_std if config.likelihood == "gaussian" else None)
    if judged and not dataset.labelled:
        log.info(f"judge: skipped, since {config.dataset} has no labels to train it on.")
    elif judged:
        from vae_tf.evaluation import judge

        grader = judge.load_or_train(dataset.train, dataset.test, config.dataset,
                                     len(dataset.class_names))
        result.update(judge.grade(state.model, grader, dataset.test.float_images(),
                                  judge.floor_images(dataset.train, seed=config.seed),
                                  seed=config.seed))
    if write:
        record(model_dir, result)
    return result
