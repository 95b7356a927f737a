"""Exported models against the JAX predictor they came from, on every expression of a split.

One pass of the evaluation pipeline: each batch goes through `Predictor.p_predict` and
through every `LitePredictor`; each row's probabilities are mapped back to its image as
evaluation maps them and scored by `evaluation.metrics.score_expression` (the IoU metrics;
the privacy ones are left out, they cost most of the time), and the masks at the original
image size are compared, at the protect threshold (prob >= 0.5) and at the evaluation's
(prob > segment_thresh).
"""

from __future__ import annotations

import numpy as np

from brppnet_jax.data import letterbox
from brppnet_jax.data import pipeline as pipeline_lib
from brppnet_jax.evaluation import metrics
from brppnet_jax.protect import model_file
from brppnet_jax.runtime import sharding

_NETWORK_KEYS = ("image", "geometry", "tokens")


class _Tally:
  """Summed metrics and differences from the JAX predictor of one model."""

  def __init__(self):
    self.sums = np.zeros(len(metrics.SUM_SLOTS), np.float64)
    self.max_abs_diff = 0.0  # Network output (over the canvas), valid rows.
    self.max_abs_diff_image = 0.0  # At the original image size.
    # Per threshold: expressions whose masks differ, pixels that differ, and the largest
    # distance from the threshold of the JAX probability of such a pixel.
    self.masks = {key: {"expressions_differing": 0, "pixels_differing": 0, "pixels": 0,
                        "largest_margin_differing": 0.0} for key in ("protect", "evaluation")}

  def add(self, sums, probs, prob_image, ref_probs, ref_image, segment_thresh):
    self.sums += sums
    self.max_abs_diff = max(self.max_abs_diff, float(np.abs(probs - ref_probs).max()))
    self.max_abs_diff_image = max(self.max_abs_diff_image,
                                  float(np.abs(prob_image - ref_image).max()))
    for key, threshold, above in (("protect", model_file.DEFAULT_THRESHOLD, np.greater_equal),
                                  ("evaluation", segment_thresh, np.greater)):
      differ = above(prob_image, threshold) != above(ref_image, threshold)
      tally, count = self.masks[key], int(np.count_nonzero(differ))
      tally["pixels"] += differ.size
      if count:
        tally["expressions_differing"] += 1
        tally["pixels_differing"] += count
        tally["largest_margin_differing"] = max(
            tally["largest_margin_differing"], float(np.abs(ref_image[differ] - threshold).max()))

  def result(self) -> dict:
    return {"metrics": metrics.finalize(self.sums), "max_abs_diff": self.max_abs_diff,
            "max_abs_diff_image": self.max_abs_diff_image, "masks": self.masks}


def _score_row(batch: dict, i: int, prob: np.ndarray, config) -> tuple[np.ndarray, np.ndarray]:
  """(summed-metric vector, probabilities at the original size) of row i."""
  geometry, (h, w) = batch["geometry"][i], batch["orig_size"][i]
  prob_image = letterbox.unletterbox(prob, geometry, (int(h), int(w)),
                                     config.dataset.input_size)
  scores = metrics.score_expression(prob_image, batch["gt_masks"][i],
                                    thresh=config.segment_thresh)
  return scores.sums(), prob_image


def compare_on_split(predictor, lites: dict, config, source, *, max_examples: int = 0) -> dict:
  """{"jax": {...}, name: {...} for each of `lites`}: metrics of each, and for the exported
  ones their largest probability difference and how many expressions' masks differ.

  `config` gives the evaluation settings (data, segment_thresh); max_examples > 0 keeps the
  first that many expressions. "num_expressions" is in every "metrics".
  """
  eval_config = predictor.eval_config(config)
  eval_config.eval_max_examples = max(0, int(max_examples))
  devices = predictor.mesh.size
  eval_config.eval_batch_size = -(-config.eval_batch_size // devices) * devices
  thresh = float(eval_config.segment_thresh)
  jax_sums = np.zeros(len(metrics.SUM_SLOTS), np.float64)
  tallies = {name: _Tally() for name in lites}
  batches = pipeline_lib.create_eval_iterator(eval_config, source, predictor.vocab,
                                              include_images=False)
  for batch in batches:
    network_batch = {k: batch[k] for k in _NETWORK_KEYS}
    ref = sharding.local_rows(predictor.p_predict(
        predictor.state, sharding.global_batch(network_batch, predictor.mesh)))
    rows = np.flatnonzero(batch["valid"])
    ref_rows = {}
    for i in rows:
      sums, ref_rows[i] = _score_row(batch, i, ref[i], eval_config)
      jax_sums += sums
    for name, lite in lites.items():
      probs = lite.predict_letterboxed(*(network_batch[k] for k in _NETWORK_KEYS))
      for i in rows:
        sums, prob_image = _score_row(batch, i, probs[i], eval_config)
        tallies[name].add(sums, probs[i], prob_image, ref[i], ref_rows[i], thresh)
  return {"jax": {"metrics": metrics.finalize(jax_sums)},
          **{name: tally.result() for name, tally in tallies.items()}}
