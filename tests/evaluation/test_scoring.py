"""The evaluation loop: pipelined device and host work, one canvas resize, originals kept."""

import cv2
import jax
import numpy as np
import pytest

from brppnet_jax.data import letterbox
from brppnet_jax.data import pipeline
from brppnet_jax.evaluation import faces
from brppnet_jax.evaluation import metrics
from brppnet_jax.evaluation import scoring
from brppnet_jax.runtime import sharding
from brppnet_jax.train import step_functions


def _device_part(batch):
  return {k: batch[k] for k in ("image", "geometry", "tokens")}


@jax.jit
def _fake_predict(state, batch):
  """Probabilities [B, 16, 16] that depend on the image (as the device sees it) and text."""
  del state
  image = step_functions.model_images(batch)[:, ::2, ::2, 0]
  shift = (batch["tokens"][:, 4:5, None] % 3).astype(np.float32) / 3
  return (image + shift) % 1.0


def test_score_row_equals_mapping_back_twice_from_the_float_input(record_config, record_source,
                                                                  record_vocab):
  batch = next(pipeline.create_eval_iterator(record_config, record_source, record_vocab))
  probs = np.asarray(_fake_predict(None, _device_part(batch)))
  for i in range(4):
    sums, prob_orig = scoring.score_row(batch, i, probs[i], record_config, faces.has_face)
    geometry, (h, w) = batch["geometry"][i], batch["orig_size"][i]
    nw, nh, dx, dy = geometry
    expected_orig = letterbox.unletterbox(probs[i], geometry, (h, w), 32)
    full = letterbox.canvas_to_float(batch["image"][i], geometry)
    crop = cv2.resize(probs[i], (32, 32), interpolation=cv2.INTER_LINEAR)[dy:dy + nh, dx:dx + nw]
    gt_small = cv2.resize((batch["gt_masks"][i] > 0).astype(np.uint8), (nw, nh),
                          interpolation=cv2.INTER_NEAREST)
    expected = metrics.score_expression(
        expected_orig, batch["gt_masks"][i], letterboxed_image=full[dy:dy + nh, dx:dx + nw],
        prob_letterbox=crop, gt_letterbox=gt_small.astype(bool), thresh=0.35,
        face_detector=faces.has_face)
    np.testing.assert_array_equal(prob_orig, expected_orig)
    np.testing.assert_array_equal(sums, expected.sums())


@pytest.mark.parametrize("num_devices", [1, 4])
def test_pipelined_evaluation_scores_every_expression_as_one_at_a_time(record_config,
                                                                       record_source, record_vocab,
                                                                       num_devices):
  mesh = sharding.make_mesh(jax.devices()[:num_devices])
  result, examples = scoring.evaluate_split(_fake_predict, None, record_config, mesh,
                                            record_source, record_vocab,
                                             num_examples=3)
  sums, sentences = np.zeros(len(metrics.SUM_SLOTS)), []
  for batch in pipeline.create_eval_iterator(record_config, record_source, record_vocab):
    probs = np.asarray(_fake_predict(None, _device_part(batch)))
    for i in np.flatnonzero(batch["valid"]):
      sums += scoring.score_row(batch, i, probs[i], record_config, faces.has_face)[0]
      sentences.append(batch["sentence"][i])
  assert result == metrics.finalize(sums) and result["num_expressions"] == 19
  assert [e.sentence for e in examples] == sentences[:3]
  for example in examples:  # Originals travel for the summaries' rows only.
    assert example.image.dtype == np.uint8 and example.image.shape[:2] == example.prob.shape
