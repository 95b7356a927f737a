"""The host's share of evaluating one expression, stage by stage, and what it makes of a split.

The library of `python -m brppnet_jax.measure.eval_speed` (see there): rows whose prediction
is the letterboxed ground truth (the host's work does not depend on the network), the
seconds of each stage on one thread, `scoring.score_row` through a thread pool, a whole
`scoring.evaluate_split`, and the estimate for a full test split on a number of cores.
"""

from __future__ import annotations

import concurrent.futures
import time

import cv2
import numpy as np

from brppnet_jax.data import letterbox
from brppnet_jax.data import pipeline as pipeline_lib
from brppnet_jax.data import transforms
from brppnet_jax.evaluation import faces
from brppnet_jax.evaluation import metrics
from brppnet_jax.evaluation import scoring
from brppnet_jax.measure import timing
from brppnet_jax.runtime import sharding
from brppnet_jax.train import step_functions
from brppnet_jax.train import train_state


def rows(config, source, vocab) -> list[tuple[dict, int, np.ndarray]]:
  """(batch, row, prediction) of every expression; the prediction is the ground truth."""
  out = []
  for batch in pipeline_lib.create_eval_iterator(config, source, vocab, include_images=False):
    for i in np.flatnonzero(batch["valid"]):
      out.append((batch, int(i), batch["mask"][i, ..., 0]))
  return out


def _uint8(image: np.ndarray) -> np.ndarray:
  """A [0, 1] float picture as the face test gets it."""
  return np.rint(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def stage_seconds(config, source, vocab, expression_rows) -> dict:
  """Seconds per expression of each host stage, on one thread (the config reads the text)."""
  size, thresh = config.dataset.input_size, config.segment_thresh
  pre = transforms.Preprocessor(vocab, size, config.model.seg_out_stride,
                                config.dataset.word_len)
  pairs = pipeline_lib.expression_index(source, len(expression_rows))
  read = lambda r, j: pre.arrays(*pre.decode(source[r]), transforms.sentences_of(source[r])[j])

  def inputs(batch, i, prob):
    geometry, (h, w) = batch["geometry"][i], batch["orig_size"][i]
    picture = letterbox.picture_probabilities(prob, geometry, size)
    nw, nh, dx, dy = (int(v) for v in geometry)
    gt = cv2.resize((batch["gt_masks"][i] > 0).astype(np.uint8), (nw, nh),
                    interpolation=cv2.INTER_NEAREST).astype(bool)
    image = np.divide(batch["image"][i][dy:dy + nh, dx:dx + nw], np.float32(255),
                      dtype=np.float32)
    return picture, letterbox.picture_to_original(picture, (int(h), int(w))), gt, image

  mapped = [(b, i, p, *inputs(b, i, p)) for b, i, p in expression_rows]
  persons = [_uint8(image * gt[..., None]) for *_, gt, image in mapped]
  return {
      "read_and_letterbox": timing.seconds_each(read, pairs),
      "map_back": timing.seconds_each(lambda b, i, p: inputs(b, i, p), expression_rows),
      "iou": timing.seconds_each(lambda b, i, p, pic, orig, gt, im: metrics.score_expression(
          orig, b["gt_masks"][i], thresh=thresh), mapped),
      "privacy_metrics": timing.seconds_each(
          lambda b, i, p, pic, orig, gt, im: metrics.score_expression(
              orig, b["gt_masks"][i], letterboxed_image=im, prob_letterbox=pic,
              gt_letterbox=gt, thresh=thresh), mapped),
      "face_test_once": timing.seconds_each(faces.has_face, [(p,) for p in persons]),
  }


def pool_rate(config, expression_rows, threads: int) -> float:
  """Expressions per second of scoring.score_row (every metric) through `threads` threads."""
  start = time.perf_counter()
  with concurrent.futures.ThreadPoolExecutor(threads) as pool:
    futures = [pool.submit(scoring.score_row, b, i, p, config, faces.has_face)
               for b, i, p in expression_rows]
    for future in futures:
      future.result()
  return len(expression_rows) / (time.perf_counter() - start)


def whole_evaluation(config, source, vocab) -> dict:
  """Wall time of scoring.evaluate_split (pipelined) with an untrained network."""
  mesh = sharding.make_mesh()
  config.model.vocab_size = len(vocab)
  model, tx, _, predict_fn = step_functions.make_steps(config, steps_per_epoch=1)
  state, shardings = train_state.create_replicated_state(model, config, tx, mesh,
                                                         train_state.prng_key(0))
  p_predict = step_functions.jit_predict(predict_fn, mesh, shardings)
  scoring.evaluate_split(p_predict, state, config, mesh, source, vocab,
                         num_examples=0)  # Compiles and warms up.
  start = time.perf_counter()
  result, _ = scoring.evaluate_split(p_predict, state, config, mesh, source, vocab,
                                     num_examples=0)
  seconds = time.perf_counter() - start
  return {"expressions": result["num_expressions"], "seconds": seconds,
          "expressions_per_s": result["num_expressions"] / seconds}


def estimate(stages: dict, expressions: int, cores: int) -> dict:
  """Seconds for `expressions` on `cores` cores if host work spreads over them evenly."""
  # privacy_metrics includes the IoU (score_expression computes both).
  once = (stages["read_and_letterbox"] + stages["map_back"] + stages["privacy_metrics"]
          + stages["face_test_once"])
  return {"expressions": expressions, "cores": cores,
          "host_seconds_per_expression_no_face": once,
          "host_seconds_per_expression_face": once + stages["face_test_once"],
          "seconds_if_no_original_face": expressions * once / cores,
          "seconds_if_every_original_face": expressions * (once + stages["face_test_once"]) / cores}
