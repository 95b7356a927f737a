"""Evaluation over every expression of a split (spec section 6), on any number of processes.

The device predicts mask probabilities; the host maps each back to its original image
and scores it (`metrics.score_expression`) in a thread pool (OpenCV releases the GIL).
Per-process sums are added over processes before the metrics are finalised.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json

import cv2
import jax
from jax.experimental import multihost_utils
import numpy as np

from brppnet_jax import metrics
from brppnet_jax import parallel
from brppnet_jax import paths
from brppnet_jax import privacy
from brppnet_jax.data import input_pipeline
from brppnet_jax.data import letterbox


EVAL_METRICS_FILE = "eval_metrics.jsonl"

@dataclasses.dataclass
class Example:
  """One evaluated expression kept for image summaries."""
  image: np.ndarray  # uint8 [h, w, 3], original.
  gt_mask: np.ndarray  # uint8 [h, w].
  prob: np.ndarray  # float32 [h, w].
  sentence: str


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
  face_detector = privacy.has_face if config.compute_tdir else None
  batches = input_pipeline.create_eval_iterator(
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
        examples.append(Example(batch["orig_images"][i], batch["gt_masks"][i], prob_orig,
                                batch["sentence"][i]))

  def submit(batch, device_probs):
    probs = parallel.local_rows(device_probs)  # Waits for this batch's prediction only.
    rows = [i for i in range(len(probs)) if batch["valid"][i]]
    return batch, rows, [pool.submit(score_row, batch, i, probs[i], config, face_detector)
                         for i in rows]

  workers = max(1, input_pipeline.available_cpus())
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    predicted, scoring = None, None  # Batch k - 1 on the device; batch k - 2 being scored.
    for batch in batches:
      device_probs = p_predict(state, parallel.global_batch(
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


def _panel(image: np.ndarray, size: int) -> np.ndarray:
  """An image letterboxed into a size x size uint8 tile."""
  return letterbox.letterbox_uint8(np.ascontiguousarray(image, np.uint8), size)[0]


def example_grid(examples: list[Example], size: int) -> np.ndarray:
  """[N, size, 4 * size, 3] uint8 rows: image | ground truth | prediction | protected image."""
  rows = []
  for ex in examples:
    gray = lambda m: np.repeat(np.asarray(m, np.uint8)[..., None], 3, axis=-1)
    protected = privacy.protect(ex.image, ex.prob >= 0.5)
    tiles = [ex.image, gray((ex.gt_mask > 0) * 255), gray(np.round(ex.prob * 255)), protected]
    rows.append(np.concatenate([_panel(t, size) for t in tiles], axis=1))
  return np.stack(rows)


def format_table(result: dict) -> str:
  """The metrics as an aligned two-column text table."""
  width = max(len(k) for k in result)
  lines = []
  for key, value in result.items():
    text = "n/a" if value is None else (f"{value:.4f}" if isinstance(value, float) else value)
    lines.append(f"{key:<{width}}  {text}")
  return "\n".join(lines)


def evaluate_predictor(predictor, config, source, *, max_examples: int = 0,
                       num_examples: int | None = None):
  """Metrics of a restored `inference.Predictor` on `source`, and a few examples.

  The network and input geometry come from the predictor's checkpoint; evaluation settings
  (segment_thresh, compute_tdir, eval_batch_size) from `config`. max_examples > 0 scores only
  the first that many expressions; num_examples (default config.num_image_summaries) are kept.
  """
  eval_config = predictor.eval_config(config)
  eval_config.eval_max_examples = max(0, int(max_examples))
  devices = predictor.mesh.size
  eval_config.eval_batch_size = -(-config.eval_batch_size // devices) * devices
  return evaluate_split(predictor.p_predict, predictor.state, eval_config, predictor.mesh,
                        source, predictor.vocab, num_examples=num_examples)


def append_metrics(workdir: str, record: dict) -> None:
  """Adds one JSON line to WORKDIR/eval_metrics.jsonl (WORKDIR local or a URL)."""
  paths.append_text(paths.join(workdir, EVAL_METRICS_FILE), json.dumps(record) + "\n")


def evaluate_checkpoint(config, workdir: str, step: int | None = None) -> dict:
  """Evaluates the best (or given) checkpoint of `workdir` on `config.dataset.eval_split`.

  The network comes from the configuration stored with the checkpoint; data and evaluation
  settings from `config`. The result is appended to WORKDIR/eval_metrics.jsonl.
  """
  from brppnet_jax import inference  # pylint: disable=g-import-not-at-top  (avoids a cycle)
  predictor = inference.Predictor.from_workdir(workdir, step=step)
  source = input_pipeline.open_source(config, config.dataset.eval_split)
  result, _ = evaluate_predictor(predictor, config, source,
                                 max_examples=config.eval_max_examples, num_examples=0)
  result = {"step": predictor.step, "split": config.dataset.eval_split, **result}
  if jax.process_index() == 0:
    append_metrics(workdir, result)
  return result
