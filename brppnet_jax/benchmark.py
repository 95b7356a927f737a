"""Times the model's forward pass and one training step on random inputs.

    python -m brppnet_jax.benchmark --size 416 --batch 32 --dtype bfloat16 --json bench.json
    python -m brppnet_jax.benchmark --config configs/synthetic.py --size 128 --batch 8
    python -m brppnet_jax.benchmark --end_to_end ...   # the real loop: benchmark_end_to_end.py

Prints a table (images per second, milliseconds per step, compile time, peak memory) and
writes the same numbers as JSON. Needs jax, flax, optax and ml_collections only.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import sys
import time

import jax
import numpy as np

from brppnet_jax import parallel
from brppnet_jax import steps

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(path: str):
  """Loads `get_config()` from a config file (configs/*.py import configs.default)."""
  sys.path.insert(0, _REPO)
  spec = importlib.util.spec_from_file_location("benchmark_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def random_batch(config, batch: int, size: int, vocab_size: int, seed: int = 0) -> dict:
  """Random rows as the input pipeline makes them: uint8 4:3 pictures letterboxed to size."""
  rng = np.random.default_rng(seed)
  out = size // config.model.seg_out_stride
  picture_h = size * 3 // 4
  return {
      "image": rng.integers(0, 256, (batch, size, size, 3), np.uint8),
      "geometry": np.tile(np.int32([size, picture_h, 0, (size - picture_h) // 2]), (batch, 1)),
      "tokens": rng.integers(1, vocab_size, (batch, config.dataset.word_len), np.int32),
      "mask": (rng.random((batch, out, out, 1)) > 0.8).astype(np.float32),
  }


def _time(fn, n: int) -> list[float]:
  times = []
  for _ in range(n):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t)
  return times


def peak_memory_gb() -> float:
  stats = jax.local_devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    return stats["peak_bytes_in_use"] / 2**30
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # CPU: process RSS.


def run(config, batch: int, num_steps: int, warmup: int) -> dict:
  """Compiles and times predict and train steps; returns a dict of results."""
  size = config.dataset.input_size
  mesh = parallel.make_mesh()
  parallel.check_batch_size(batch, mesh, "batch")
  model, tx, train_fn, predict_fn = steps.make_steps(config, steps_per_epoch=1000)
  state, shardings = steps.create_replicated_state(model, config, tx, mesh, steps.prng_key(0))
  data = jax.device_put(random_batch(config, batch, size, config.model.vocab_size),
                        parallel.batch_sharding(mesh))
  p_predict = steps.jit_predict(predict_fn, mesh, shardings)
  p_train = steps.jit_train(train_fn, mesh, shardings)
  t0 = time.perf_counter()
  c_train = p_train.lower(state, data).compile()
  inputs = {k: data[k] for k in ("image", "geometry", "tokens")}
  c_predict = p_predict.lower(state, inputs).compile()
  compile_s = time.perf_counter() - t0
  fwd = _time(lambda: c_predict(state, inputs), warmup + num_steps)
  holder = [state]

  def one_step():
    holder[0], metrics = c_train(holder[0], data)
    return metrics["loss"]

  train = _time(one_step, warmup + num_steps)
  fwd_med, train_med = np.median(fwd[warmup:]), np.median(train[warmup:])
  return {
      "device": jax.devices()[0].device_kind, "num_devices": len(jax.devices()),
      "jax": jax.__version__, "dtype": config.model.dtype, "size": size, "batch": batch,
      "width": config.model.width, "freeze_backbone": bool(config.model.freeze_backbone),
      "forward_img_per_s": batch / fwd_med, "forward_ms": 1e3 * fwd_med,
      "train_img_per_s": batch / train_med, "train_ms": 1e3 * train_med,
      "compile_s": compile_s, "peak_memory_gb": peak_memory_gb(),
      "final_loss": float(jax.device_get(one_step())),
  }


def format_table(result: dict) -> str:
  rows = [(k, f"{v:.4g}" if isinstance(v, float) else str(v)) for k, v in result.items()]
  width = max(len(k) for k, _ in rows)
  return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main(argv=None) -> dict:
  argv = sys.argv[1:] if argv is None else list(argv)
  if "--end_to_end" in argv:  # The real loop on a built dataset: benchmark_end_to_end.py.
    from brppnet_jax import benchmark_end_to_end  # pylint: disable=g-import-not-at-top
    return benchmark_end_to_end.main(argv)
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", default=os.path.join(_REPO, "configs", "default.py"))
  parser.add_argument("--size", type=int, default=None, help="input size (default: config's)")
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--dtype", default=None, choices=["float32", "bfloat16"])
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--vocab_size", type=int, default=10000)
  parser.add_argument("--unfreeze", action="store_true", help="train the backbone too")
  parser.add_argument("--json", default=None, help="write the result here")
  args = parser.parse_args(argv)
  config = load_config(args.config)
  config.model.vocab_size = args.vocab_size
  if args.size:
    config.dataset.input_size = args.size
  if args.dtype:
    config.model.dtype = args.dtype
  if args.unfreeze:
    config.model.freeze_backbone = False
  result = {"config": os.path.relpath(args.config, _REPO),
            **run(config, args.batch, args.steps, args.warmup)}
  print(format_table(result))
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(result, f, indent=2)
  return result


if __name__ == "__main__":
  main()

