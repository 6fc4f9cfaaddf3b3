"""Each workaround of `vae_tf.compat` is still needed, and still works.

A test here that fails on a new TensorFlow or Keras says which workaround to
remove (the library fixed its bug) or to mend (a private API moved).
"""

import glob
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from vae_tf import compat
from vae_tf.run import optimizers


def test_the_installed_versions_are_the_tested_ones():
    # setup.cfg pins these upper bounds; raise them only after this suite passes on the next.
    assert tf.__version__.startswith(compat.TESTED_WITH["tensorflow"] + ".")
    assert keras.__version__.startswith(compat.TESTED_WITH["keras"] + ".")


def test_keras_adam_keeps_the_private_slots_that_fused_adam_reads():
    assert compat.has_adam_slots(), "Keras moved Adam's moments: mend compat.adam_slots"
    optimizer = keras.optimizers.Adam()
    variable = keras.Variable(np.ones(3, np.float32))
    optimizer.build([variable])
    momentum, velocity = compat.adam_slots(optimizer, variable)
    assert momentum.shape == velocity.shape == (3,)
    assert isinstance(optimizers.make_adam(0.01), optimizers.FusedAdam)


def test_without_the_private_slots_training_falls_back_to_keras_adam(monkeypatch, capsys):
    monkeypatch.setattr(compat, "has_adam_slots", lambda: False)
    optimizer = optimizers.make_adam(0.01)
    # Keras' own update step; only the end of `fit` is vae_tf's (optimizers.AveragedWeights).
    assert type(optimizer).__mro__[1:] == (optimizers.AveragedWeights,
                                           *keras.optimizers.Adam.__mro__)
    assert type(optimizer).update_step is keras.optimizers.Adam.update_step
    assert float(optimizer.learning_rate.numpy()) == pytest.approx(0.01)
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "training with keras.optimizers.Adam" in out[0]


def test_the_profiler_trace_format_is_still_importable():
    assert hasattr(compat.xplane_pb2(), "XSpace")


def test_a_truncated_checkpoint_still_raises_index_error(tmp_path):
    # When TensorFlow raises an OpError here instead, IndexError can leave
    # compat.UNREADABLE_CHECKPOINT_ERRORS.
    prefix = tf.train.Checkpoint(v=tf.Variable(tf.zeros([1000, 100]))).save(
        str(tmp_path / "ckpt"))
    (data_file,) = glob.glob(prefix + ".data*")
    with open(data_file, "r+b") as stream:
        stream.truncate(os.path.getsize(data_file) // 2)
    with pytest.raises(IndexError):
        tf.train.Checkpoint(v=tf.Variable(tf.zeros([1000, 100]))).restore(prefix)
    assert IndexError in compat.UNREADABLE_CHECKPOINT_ERRORS


def test_step_logs_are_left_alone_outside_multi_worker():
    logs = {"loss": tf.constant(1.5)}
    assert compat.step_logs(logs) is logs
    assert compat.log_value(tf.reshape(logs["loss"], [1])) == 1.5


def test_the_tflite_converter_still_needs_frozen_weights(tmp_path):
    # When this fails, the converter folds Keras 3 weights itself: drop compat.frozen.
    dense = keras.layers.Dense(3)
    dense.build((None, 2))
    module = tf.Module()
    module.dense = dense
    module.call = tf.function(lambda x: dense(x), input_signature=[tf.TensorSpec([None, 2])])
    tf.saved_model.save(module, str(tmp_path), signatures={"call": module.call})
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path), signature_keys=["call"])
    interpreter = Interpreter(model_content=converter.convert())
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert "VAR_HANDLE" in ops
    frozen = compat.frozen(module.call.get_concrete_function())
    assert not [op for op in frozen.graph.get_operations() if op.type == "ReadVariableOp"]


def test_exchange_paths_swaps_two_folders_and_python_still_lacks_renameat2(tmp_path):
    """compat.exchange_paths exists because os has no renameat2; drop it once os has one."""
    import os

    assert not hasattr(os, "renameat2") and not hasattr(os, "RENAME_EXCHANGE")
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "which").write_text(name)
    compat.exchange_paths(str(tmp_path / "a"), str(tmp_path / "b"))
    assert (tmp_path / "a" / "which").read_text() == "b"
    assert (tmp_path / "b" / "which").read_text() == "a"
    assert sorted(os.listdir(tmp_path)) == ["a", "b"]


def _ten_functions_of(code):
    """Ten tf.functions of one Python function, each traced once."""
    for width in range(1, 11):
        tf.function(code)(tf.zeros([width]))


def _retracing(messages) -> list:
    return [message for message in messages if compat.RETRACING_WARNING in message]


def test_tensorflow_still_warns_of_retracing_for_functions_of_one_code_and_the_block_quiets_it(
        tensorflow_log):
    _ten_functions_of(lambda x: x * 2)
    assert _retracing(tensorflow_log), (
        "TensorFlow no longer counts traces per code object: drop compat.functions_of_one_code")
    tensorflow_log.clear()
    with compat.functions_of_one_code():
        _ten_functions_of(lambda x: x * 3)  # another code, which TensorFlow has not warned of
    assert not _retracing(tensorflow_log)
    assert not tf.get_logger().filters  # and the block leaves the logger as it was
