"""Evaluation over every expression of a split (spec section 6), on any number of processes.

The device predicts mask probabilities; the host maps each back to its original image
and scores it (`metrics.score_expression`) in a thread pool (OpenCV releases the GIL).
Per-process sums are added over processes before the metrics are finalised.
"""

from __future__ import annotations

import concurrent.futures
import json

import cv2
import jax
from jax.experimental import multihost_utils
import numpy as np

from brppnet_jax.data import letterbox
from brppnet_jax.data import pipeline as pipeline_lib
from brppnet_jax.evaluation import faces
from brppnet_jax.evaluation import metrics
from brppnet_jax.evaluation import summaries
from brppnet_jax.runtime import paths
from brppnet_jax.runtime import sharding

EVAL_METRICS_FILE = "eval_metrics.jsonl"

def score_row(batch: dict, i: int, prob: np.ndarray, config, face_detector):
  """Scores row i of an evaluation batch; returns the summed-metric vector and the mapped prob.

  The probabilities are resized to the canvas once: their picture crop serves the privacy
  metrics and, resized again, the original-size IoU.
  """
  size = config.dataset.input_size
  geometry, (h, w) = batch["geometry"][i], batch["orig_size"][i]
  prob_picture = letterbox.picture_probabilities(prob, geometry, size)
  prob_orig = letterbox.picture_to_original(prob_picture, (int(h), int(w)))
  gt = batch["gt_masks"][i]
  nw, nh, dx, dy = (int(v) for v in geometry)
  gt_small = cv2.resize((gt > 0).astype(np.uint8), (nw, nh), interpolation=cv2.INTER_NEAREST)
  picture = np.divide(batch["image"][i][dy:dy + nh, dx:dx + nw], np.float32(255),
                      dtype=np.float32)  # The model's input there (letterbox.canvas_to_float).
  scores = metrics.score_expression(
      prob_orig, gt, letterboxed_image=picture, prob_letterbox=prob_picture,
      gt_letterbox=gt_small.astype(bool),
      thresh=config.segment_thresh, face_detector=face_detector)
  return scores.sums(), prob_orig


_DEVICE_KEYS = ("image", "geometry", "tokens")


def evaluate_split(p_predict, state, config, mesh, source, vocab, *,
                   num_examples: int | None = None):
  """Metrics over every expression of `source`, and a few examples for summaries.

  A pipeline: while the device predicts batch k, the thread pool scores batches k - 1 and
  k - 2; only the first `num_examples` rows read their original image (for the summaries).
  """
  num_examples = config.num_image_summaries if num_examples is None else num_examples
  face_detector = faces.DETECTORS if config.compute_tdir else None  # TDIR per family.
  batches = pipeline_lib.create_eval_iterator(
      config, source, vocab, process_index=jax.process_index(),
      process_count=jax.process_count(), include_images=num_examples > 0,
      max_images=num_examples)
  sums = np.zeros(len(metrics.SUM_SLOTS), np.float64)
  examples = []

  def collect(batch, rows, futures):
    nonlocal sums
    for i, future in zip(rows, futures):
      row_sums, prob_orig = future.result()
      sums += row_sums
      if len(examples) < num_examples:
        examples.append(summaries.Example(batch["orig_images"][i], batch["gt_masks"][i], prob_orig,
                                batch["sentence"][i]))

  def submit(batch, device_probs):
    probs = sharding.local_rows(device_probs)  # Waits for this batch's prediction only.
    rows = [i for i in range(len(probs)) if batch["valid"][i]]
    return batch, rows, [pool.submit(score_row, batch, i, probs[i], config, face_detector)
                         for i in rows]

  workers = max(1, pipeline_lib.available_cpus())
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    predicted, scoring = None, None  # Batch k - 1 on the device; batch k - 2 being scored.
    for batch in batches:
      device_probs = p_predict(state, sharding.global_batch(
          {k: batch[k] for k in _DEVICE_KEYS}, mesh))  # Returns before the device is done.
      if predicted is not None:
        submitted = submit(*predicted)
        if scoring is not None:
          collect(*scoring)
        scoring = submitted
      predicted = (batch, device_probs)
    for pending in (scoring, submit(*predicted) if predicted is not None else None):
      if pending is not None:
        collect(*pending)
  if jax.process_count() > 1:
    sums = np.asarray(multihost_utils.process_allgather(sums)).sum(axis=0)
  return metrics.finalize(sums), examples


def append_metrics(workdir: str, record: dict, file_name: str = EVAL_METRICS_FILE) -> None:
  """Adds one JSON line to WORKDIR/file_name (eval_metrics.jsonl: training's evaluations;
  WORKDIR local or a URL)."""
  paths.append_text(paths.join(workdir, file_name), json.dumps(record) + "\n")
