"""The notebook's analyses: per-expression results, sweep, worst cases, breakdowns, confusions."""

import itertools

import cv2
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from brppnet_jax.data import letterbox
from brppnet_jax.data import pipeline
from brppnet_jax.data import synthetic_scene
from brppnet_jax.data import synthetic_text
from brppnet_jax.data import transforms
from brppnet_jax.data import vocab as vocab_lib
from brppnet_jax.evaluation import analysis
from brppnet_jax.evaluation import checkpoint
from brppnet_jax.evaluation import request_aspects
from brppnet_jax.runtime import sharding
from configs import default


def _result(iou_counts, *, index=0, image="a.jpg", person=4, covered=(1.0, 0.0), iou=None,
            sentence="protect privacy of man", people=1):
  """An ExpressionResult with the same (protected, on person) counts at every threshold."""
  protected, hit = iou_counts
  n = len(analysis.SWEEP_THRESHOLDS)
  return analysis.ExpressionResult(
      index=index, ref_id=index, image_name=image, sentence=sentence, num_people=people,
      paper_iou=0.0 if iou is None else iou, iou=0.0 if iou is None else iou,
      person_pixels=person, protected=(protected,) * n, protected_on_person=(hit,) * n,
      person_covered=covered[0], other_covered=covered[1])


def test_measure_expression_counts_every_threshold_and_each_person():
  prob = np.array([[0.9, 0.6, 0.3, 0.0],
                   [0.9, 0.6, 0.3, 0.0],
                   [0.4, 0.4, 0.8, 0.8]], np.float32)
  person = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]], np.uint8) * 255
  other = np.array([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 1]], np.uint8)
  result = analysis.measure_expression(prob, person, [other], index=3, ref_id=7,
                                       image_name="x.jpg", sentence="s")
  assert (result.index, result.ref_id, result.num_people) == (3, 7, 2)
  # prob > 0.35: 8 pixels, 4 on the person; >= 0.5: the person's 4 and the other's 2.
  assert result.paper_iou == pytest.approx(4 / 8)
  assert result.iou == pytest.approx(4 / 6)
  assert result.person_pixels == 4
  thresholds = np.asarray(analysis.SWEEP_THRESHOLDS, np.float32)
  assert result.protected == tuple(int((prob >= t).sum()) for t in thresholds)
  assert result.protected_on_person == tuple(int((prob[:2, :2] >= t).sum()) for t in thresholds)
  assert result.protected[analysis.SWEEP_THRESHOLDS.index(0.5)] == 6
  assert (result.person_covered, result.other_covered) == (1.0, 1.0)
  assert not result.on_other_person  # A tie: the referred person is covered as much.


def test_protection_that_covers_someone_else_more_lands_on_another_person():
  prob = np.zeros((2, 6), np.float32)
  prob[:, 2:6] = 0.7  # Half of the referred person, all of the other.
  person = np.zeros((2, 6), np.uint8)
  person[:, 0:4] = 1
  other = np.zeros((2, 6), np.uint8)
  other[:, 4:6] = 1
  result = analysis.measure_expression(prob, person, [other, np.zeros_like(other)], index=0,
                                       ref_id=0, image_name="x", sentence="s")
  assert (result.person_covered, result.other_covered, result.num_people) == (0.5, 1.0, 3)
  assert result.on_other_person
  alone = analysis.measure_expression(prob, person, [], index=0, ref_id=0, image_name="x",
                                      sentence="s")
  assert alone.other_covered == 0.0 and not alone.on_other_person


def test_threshold_sweep_averages_iou_precision_and_recall_with_the_empty_rules():
  results = [_result((6, 3), person=4),  # IoU 3/7, precision 1/2, recall 3/4.
             _result((0, 0), person=4),  # Nothing protected of a person: 0, 0, 0.
             _result((0, 0), person=0)]  # Nothing to find, nothing found: 1, 1, 1.
  rows = analysis.threshold_sweep(results)
  assert [r["threshold"] for r in rows] == list(analysis.SWEEP_THRESHOLDS)
  assert rows[0]["miou"] == pytest.approx((3 / 7 + 0 + 1) / 3)
  assert rows[0]["precision"] == pytest.approx((1 / 2 + 0 + 1) / 3)
  assert rows[0]["recall"] == pytest.approx((3 / 4 + 0 + 1) / 3)
  with pytest.raises(ValueError, match="no expressions"):
    analysis.threshold_sweep([])


def test_worst_expressions_are_the_lowest_iou_of_distinct_images():
  results = [_result((1, 1), index=i, image=image, iou=iou) for i, (image, iou) in enumerate(
      [("a", 0.9), ("a", 0.1), ("b", 0.2), ("a", 0.05), ("c", 0.5), ("d", 0.2)])]
  worst = analysis.worst_expressions(results, 3)
  assert [(r.image_name, r.index) for r in worst] == [("a", 3), ("b", 2), ("d", 5)]
  assert len(analysis.worst_expressions(results, 10)) == 4  # One per image.


def test_iou_histogram_counts_each_expression_once():
  results = [_result((1, 1), iou=v) for v in (0.0, 0.05, 0.55, 0.999, 1.0)]
  counts, edges = analysis.iou_histogram(results, bins=10)
  assert counts.tolist() == [2, 0, 0, 0, 0, 1, 0, 0, 0, 2]
  np.testing.assert_allclose(edges, np.linspace(0, 1, 11))


def test_breakdown_groups_by_what_the_request_names_and_counts_confusions():
  texts = ["protect privacy of man in red shirt", "protect privacy of leftmost woman",
           "protect privacy of the tallest guy in the blue shirt",
           "protect privacy of red shirt lady"]
  covered = [(1.0, 0.0), (0.2, 0.9), (1.0, 0.5), (0.0, 0.3)]
  results = [_result((1, 1), index=i, sentence=t, iou=iou, covered=c, people=1 + i % 2)
             for i, (t, iou, c) in enumerate(zip(texts, (0.8, 0.0, 0.6, 0.1), covered))]
  rows = analysis.breakdown(results, request_aspects.for_dataset("rpcoco/synthetic"))
  table = {(r["aspect"], r["value"]): (r["expressions"], r["miou"], r["other_person"])
           for r in rows}
  assert table[("colour", "red")] == (2, pytest.approx(0.45), 0.5)
  assert table[("colour", "none")] == (1, 0.0, 1.0)
  assert table[("position", "left")] == (1, 0.0, 1.0)
  assert table[("size", "tallest")] == (1, 0.6, 0.0)
  assert table[("people", "2")] == (2, pytest.approx(0.05), 1.0)
  assert [r["aspect"] for r in rows][:3] == ["colour"] * 3
  assert analysis.other_person_share(results) == 0.5
  text = analysis.format_rows(rows)
  assert text.splitlines()[0].split() == ["aspect", "value", "expressions", "miou",
                                          "paper_miou", "other_person"]
  assert ["colour", "red", "2", "0.450", "0.450", "0.500"] in [
      line.split() for line in text.splitlines()]


def test_synthetic_aspects_read_every_template_of_the_generator():
  rng = np.random.default_rng(0)
  superlatives = ["left", "right", "tallest", "shortest", "front", "back", "middle", None]
  for colour, superlative in itertools.product([None, *synthetic_scene.SHIRT_COLOURS],
                                               superlatives):
    if colour is None and superlative is None:
      continue
    for _ in range(20):  # Enough draws to meet every wording.
      text = synthetic_text.phrase(synthetic_text.Description(colour, superlative), rng)
      aspects = request_aspects.synthetic(text, 3)
      size = superlative if superlative in ("tallest", "shortest") else "none"
      position = "none" if superlative in ("tallest", "shortest", None) else superlative
      assert aspects == {"colour": colour or "none", "position": position, "size": size,
                         "people": "3"}, text


@pytest.mark.parametrize("text, expected", [
    ("protect privacy of man on left in red shirt holding a bat",
     {"length": "7-9", "location": "yes", "colour": "yes", "action": "yes"}),
    ("protect privacy of guy wearing a hat", {"length": "4-6", "location": "no",
                                               "colour": "no", "action": "no"}),
    ("protect privacy of woman", {"length": "1-3", "location": "no", "colour": "no",
                                  "action": "no"}),
    ("Protect privacy of the skier in the back who sits near the big building on the hill",
     {"length": "10+", "location": "yes", "colour": "no", "action": "yes"}),
    ("blonde girl", {"length": "1-3", "location": "no", "colour": "yes", "action": "no"}),
])
def test_rpcoco_aspects(text, expected):
  assert request_aspects.rpcoco(text) == expected


# A fake network on fake refs: two images, one with two referred people.
def _record(ref_id: int, image: str, columns: slice, sentences) -> dict:
  rng = np.random.default_rng(ref_id if image != "pair.jpg" else 0)
  rgb = rng.integers(0, 256, (30, 40, 3), np.uint8)
  mask = np.zeros((30, 40), np.uint8)
  mask[5:25, columns] = 255
  return {"image": cv2.imencode(".png", rgb[..., ::-1])[1].tobytes(),
          "mask": cv2.imencode(".png", mask)[1].tobytes(),
          "sentences": np.array([s.encode() for s in sentences], dtype=object),
          "ref_id": np.int64(ref_id), "image_name": image.encode(),
          "bbox": np.zeros((4,), np.int32)}


SOURCE = [
    _record(10, "pair.jpg", slice(2, 18), ["protect privacy of left one", "protect privacy of a"]),
    _record(11, "alone.jpg", slice(10, 30), ["protect privacy of only one"]),
    _record(12, "pair.jpg", slice(22, 38), ["protect privacy of right one"]),
]


@jax.jit
def _fake_predict(state, batch):
  """Probabilities [B, 16, 16] from the image's red channel and the request's first word."""
  del state
  red = batch["image"][:, ::2, ::2, 0].astype(jnp.float32) / 255
  return (red + (batch["tokens"][:, 3:4, None] % 4).astype(jnp.float32) / 4) % 1.0


class _FakePredictor:
  """What the analyses use of a `Predictor`."""

  def __init__(self):
    self.vocab = vocab_lib.Vocabulary.build(
        transforms.as_text(s) for r in SOURCE for s in r["sentences"])
    self.mesh = sharding.make_mesh(jax.devices()[:1])
    self.state = None
    self.p_predict = _fake_predict

  def eval_config(self, config):
    return ml_collections.ConfigDict(config.to_dict())


@pytest.fixture
def config():
  config = default.get_config()
  config.dataset.input_size, config.dataset.word_len = 32, 8
  config.model.seg_out_stride = 2
  config.eval_batch_size, config.dataset.num_workers = 4, 0
  return config


def test_analyse_predictor_scores_each_expression_against_its_image_people(config):
  predictor = _FakePredictor()
  results = analysis.analyse_predictor(predictor, config, SOURCE)
  assert [(r.index, r.ref_id, r.image_name, r.num_people) for r in results] == [
      (0, 10, "pair.jpg", 2), (1, 10, "pair.jpg", 2), (2, 11, "alone.jpg", 1),
      (3, 12, "pair.jpg", 2)]
  assert results[2].other_covered == 0.0
  # The paper's IoU is the evaluation's: the same mIoU as `--mode=eval` reports.
  metrics, _ = checkpoint.evaluate_predictor(predictor, config, SOURCE, num_examples=0)
  assert np.mean([r.paper_iou for r in results]) == pytest.approx(metrics["miou"], abs=1e-12)
  # Each result is measure_expression of the row's probabilities and the image's other refs.
  batch = next(pipeline.create_eval_iterator(config, SOURCE, predictor.vocab))
  probs = np.asarray(_fake_predict(None, {k: batch[k] for k in ("image", "geometry", "tokens")}))
  masks = {int(r["ref_id"]): transforms.decode_mask(r["mask"], "") for r in SOURCE}
  for i, result in enumerate(results):
    prob = letterbox.unletterbox(probs[i], batch["geometry"][i], batch["orig_size"][i], 32)
    others = [m for ref, m in masks.items() if ref != result.ref_id
              and (ref == 11) == (result.ref_id == 11)]
    assert result == analysis.measure_expression(
        prob, masks[result.ref_id], others, index=i, ref_id=result.ref_id,
        image_name=result.image_name, sentence=batch["sentence"][i])
  assert len(analysis.analyse_predictor(predictor, config, SOURCE, max_expressions=2)) == 2


def test_gallery_examples_predict_the_chosen_expressions_again_with_images(config):
  predictor = _FakePredictor()
  results = analysis.analyse_predictor(predictor, config, SOURCE)
  chosen = [results[3], results[1]]
  examples = analysis.gallery_examples(predictor, config, SOURCE, chosen)
  assert [e.sentence for e in examples] == [r.sentence for r in chosen]
  for example, result in zip(examples, chosen):
    assert example.image.shape == (30, 40, 3) and example.prob.shape == (30, 40)
    again = analysis.measure_expression(example.prob, example.gt_mask, [], index=0, ref_id=0,
                                        image_name="", sentence="")
    assert again.iou == result.iou
