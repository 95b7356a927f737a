"""Random inputs and a timer for the speed measurements (step_speed, end_to_end, eval_speed)."""

from __future__ import annotations

from collections.abc import Callable
import time

import jax
import numpy as np


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


def time_calls(fn: Callable[[], object], n: int) -> list[float]:
  """Seconds of each of `n` calls of `fn`, each waited for (`jax.block_until_ready`)."""
  times = []
  for _ in range(n):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t)
  return times


def seconds_each(fn: Callable, items) -> float:
  """Mean seconds of `fn(*item)` over `items`, one after the other."""
  start = time.perf_counter()
  for item in items:
    fn(*item)
  return (time.perf_counter() - start) / len(items)
