"""A training run and its folder.

- `training`: the run itself (`train_and_evaluate`); `trainable`: the model
  it trains, compiled with its optimizer and settings; `callbacks`: what runs
  each epoch; `optimizers` and `schedules`: Adam and the learning rate;
  `distribution`: the `tf.distribute` strategy; `tuning`: settings chosen
  by measurement (`auto`); `stop_signals`: the SIGINT and SIGTERM a command received.
- `layout`: every name under the model directory; `run_dir`: the model
  directory and its small text files; `run_lock`: one
  run per folder; `checkpoints`: what a checkpoint holds, saving and restoring
  (change what a checkpoint holds there); `exporting`: the SavedModel and TFLite.
"""
