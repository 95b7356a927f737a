r"""Times the model's forward pass and one training step on random inputs.

    python -m brppnet_jax.measure.step_speed --size 416 --batch 32 --dtype bfloat16 \
        --json bench.json
    python -m brppnet_jax.measure.step_speed --config configs/synthetic.py --size 128 --batch 8

Prints a table (images per second, milliseconds per step, compile time, peak memory) and
writes the same numbers as JSON. Needs jax, flax, optax and ml_collections only; the real
loop on a built dataset is `python -m brppnet_jax.measure.end_to_end`.
"""

from __future__ import annotations

import time

from absl import app
from absl import flags
import jax
import numpy as np

from brppnet_jax.measure import records
from brppnet_jax.measure import timing
from brppnet_jax.runtime import cli
from brppnet_jax.runtime import config_files
from brppnet_jax.runtime import devices
from brppnet_jax.runtime import sharding
from brppnet_jax.train import step_functions
from brppnet_jax.train import train_state

FLAGS = flags.FLAGS
flags.DEFINE_string("config", config_files.repo_path("configs", "default.py"),
                    "Config file whose network is timed.")
flags.DEFINE_integer("size", None, "Input size (default: the config's).")
flags.DEFINE_integer("batch", 8, "Global batch size.")
flags.DEFINE_enum("dtype", None, ["float32", "bfloat16"],
                  "Compute dtype (default: the config's).")
flags.DEFINE_integer("steps", 10, "Timed calls of each step.")
flags.DEFINE_integer("warmup", 2, "Untimed calls before them.")
flags.DEFINE_integer("vocab_size", 10000, "Vocabulary size of the text encoder.")
flags.DEFINE_bool("unfreeze", False, "Train the backbone too.")
flags.DEFINE_string("json", None, "Write the result here (default: print only).")


def run(config, batch: int, num_steps: int, warmup: int) -> dict:
  """Compiles and times predict and train steps; returns a dict of results."""
  size = config.dataset.input_size
  mesh = sharding.make_mesh()
  sharding.check_batch_size(batch, mesh, "batch")
  model, tx, train_fn, predict_fn = step_functions.make_steps(config, steps_per_epoch=1000)
  state, shardings = train_state.create_replicated_state(model, config, tx, mesh,
                                                         train_state.prng_key(0))
  data = jax.device_put(timing.random_batch(config, batch, size, config.model.vocab_size),
                        sharding.batch_sharding(mesh))
  p_predict = step_functions.jit_predict(predict_fn, mesh, shardings)
  p_train = step_functions.jit_train(train_fn, mesh, shardings)
  t0 = time.perf_counter()
  c_train = p_train.lower(state, data).compile()
  inputs = {k: data[k] for k in ("image", "geometry", "tokens")}
  c_predict = p_predict.lower(state, inputs).compile()
  compile_s = time.perf_counter() - t0
  fwd = timing.time_calls(lambda: c_predict(state, inputs), warmup + num_steps)
  holder = [state]

  def one_step():
    holder[0], metrics = c_train(holder[0], data)
    return metrics["loss"]

  train = timing.time_calls(one_step, warmup + num_steps)
  fwd_med, train_med = np.median(fwd[warmup:]), np.median(train[warmup:])
  return {
      "device": jax.devices()[0].device_kind, "num_devices": len(jax.devices()),
      "jax": jax.__version__, "dtype": config.model.dtype, "size": size, "batch": batch,
      "width": config.model.width, "freeze_backbone": bool(config.model.freeze_backbone),
      "forward_img_per_s": batch / fwd_med, "forward_ms": 1e3 * fwd_med,
      "train_img_per_s": batch / train_med, "train_ms": 1e3 * train_med,
      "compile_s": compile_s, "peak_memory_gb": devices.peak_memory_gb(),
      "final_loss": float(jax.device_get(one_step())),
  }


def format_table(result: dict) -> str:
  """One `key  value` line per result, floats to four significant digits."""
  rows = [(k, f"{v:.4g}" if isinstance(v, float) else str(v)) for k, v in result.items()]
  width = max(len(k) for k, _ in rows)
  return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main(argv) -> None:
  cli.no_arguments(argv)
  with cli.one_line_errors():
    config = config_files.load_config(FLAGS.config)
    config.model.vocab_size = FLAGS.vocab_size
    if FLAGS.size:
      config.dataset.input_size = FLAGS.size
    if FLAGS.dtype:
      config.model.dtype = FLAGS.dtype
    if FLAGS.unfreeze:
      config.model.freeze_backbone = False
    result = {"config": config_files.relative_to_repo(FLAGS.config),
              **run(config, FLAGS.batch, FLAGS.steps, FLAGS.warmup)}
    print(format_table(result))
    if FLAGS.json:
      command = records.command("brppnet_jax.measure.step_speed")
      records.write_json(FLAGS.json, {**result, "command": command})


if __name__ == "__main__":
  app.run(main)
