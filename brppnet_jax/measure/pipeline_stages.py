"""Synthetic COCO-like records and the pre-processing and input-pipeline times measured on them.

The library of `python -m brppnet_jax.measure.pipeline_speed` (see there): 640x480 JPEGs
(about 120 KB each, like COCO's) with person-like PNG masks and 11-word expressions, made in
memory; the milliseconds of each pre-processing stage on one core; examples per second out
of the training iterator.
"""

from __future__ import annotations

from collections.abc import Callable
import time

import cv2
import numpy as np
from PIL import Image

from brppnet_jax.data import letterbox
from brppnet_jax.data import pipeline as pipeline_lib
from brppnet_jax.data import transforms
from brppnet_jax.data import vocab as vocab_lib
from configs import default

WIDTH, HEIGHT = 640, 480
WORDS = "man woman left right blue red shirt holding umbrella standing near us in the".split()


def synthetic_record(index: int) -> dict:
  """A record with a textured 640x480 JPEG, an elliptic 0/255 PNG mask and 3 expressions."""
  rng = np.random.default_rng(index)
  coarse = rng.integers(0, 256, (HEIGHT // 32, WIDTH // 32, 3), np.uint8)
  rgb = cv2.resize(coarse, (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC).astype(np.float32)
  rgb = np.clip(rgb + rng.normal(0, 12, rgb.shape), 0, 255).astype(np.uint8)
  mask = np.zeros((HEIGHT, WIDTH), np.uint8)
  centre = (int(rng.integers(100, WIDTH - 100)), int(rng.integers(100, HEIGHT - 100)))
  cv2.ellipse(mask, centre, (int(rng.integers(30, 100)), int(rng.integers(60, 200))), 0, 0, 360,
              255, -1)
  sentences = [("protect privacy of " + " ".join(rng.choice(WORDS, 8))).encode()
               for _ in range(3)]
  return {
      "image": cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes(),
      "mask": cv2.imencode(".png", mask)[1].tobytes(),
      "sentences": sentences, "ref_id": np.int64(index),
      "image_name": f"synthetic_{index}.jpg".encode(), "bbox": np.zeros((4,), np.int32),
  }


def _ms_per_item(fn: Callable, items: list) -> float:
  for item in items[:3]:  # Warm up.
    fn(item)
  start = time.perf_counter()
  for item in items:
    fn(item)
  return (time.perf_counter() - start) / len(items) * 1e3


def stage_times(records: list[dict], size: int, stride: int, word_len: int) -> dict[str, float]:
  """Milliseconds per example of each pre-processing stage, on one core."""
  cv2.setNumThreads(1)
  vocab = vocab_lib.Vocabulary.build(transforms.as_text(s) for r in records
                                     for s in r["sentences"])
  rgbs = [transforms.decode_rgb(r["image"], "bench") for r in records]
  masks = [transforms.decode_mask(r["mask"], "bench") for r in records]
  texts = [transforms.as_text(r["sentences"][0]) for r in records]
  geometry = letterbox.letterbox_geometry(WIDTH, HEIGHT, size)
  pre = transforms.Preprocessor(vocab, size, stride, word_len)
  return {
      "decode_jpeg": _ms_per_item(lambda r: transforms.decode_rgb(r["image"], "bench"), records),
      "decode_png": _ms_per_item(lambda r: transforms.decode_mask(r["mask"], "bench"), records),
      # As the pipeline does it: uint8 canvas and geometry (the step divides by 255).
      "letterbox_image": _ms_per_item(lambda x: letterbox.letterbox_uint8(x, size), rgbs),
      "letterbox_mask": _ms_per_item(lambda x: letterbox.letterbox_mask(x, size, stride), masks),
      "tokenize": _ms_per_item(lambda t: vocab.encode(t, word_len), texts),
      "example_total": _ms_per_item(
          lambda r: pre.arrays(*pre.decode(r), transforms.as_text(r["sentences"][0])), records),
      "float32_letterbox_reference": _ms_per_item(  # The host-side /255 of before 11-27.
          lambda x: letterbox.letterbox_image(x, size), rgbs),
      "pil_bicubic_resize_reference": _ms_per_item(
          lambda x: Image.fromarray(x).resize(geometry[:2], Image.BICUBIC), rgbs),
  }


def pipeline_rate(records: list[dict], size: int, stride: int, word_len: int, workers: int,
                  batch: int) -> float:
  """Examples per second out of the training iterator, after a warm-up of 5 s."""
  config = default.get_config()
  config.dataset.input_size = size
  config.model.seg_out_stride = stride
  config.dataset.word_len = word_len
  config.dataset.num_workers = workers
  config.dataset.prefetch = 2 if workers else 0
  config.batch_size = batch
  vocab = vocab_lib.Vocabulary.build(transforms.as_text(s) for r in records
                                     for s in r["sentences"])
  iterator = pipeline_lib.create_train_iterator(config, records, vocab, seed=0)
  warm_up = time.perf_counter() + 5.0  # Until every worker has started and filled its buffer.
  while time.perf_counter() < warm_up:
    next(iterator)
  num_batches = 3 * len(records) // batch
  start = time.perf_counter()
  for _ in range(num_batches):
    next(iterator)
  elapsed = time.perf_counter() - start
  iterator.close()
  return num_batches * batch / elapsed
