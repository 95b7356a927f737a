"""Where a checkpoint fails, expression by expression (what the evaluation notebook shows).

`analyse_predictor` runs a split once and keeps, per expression, a small `ExpressionResult`
(no images): the paper's IoU, pixel counts at every threshold of `SWEEP_THRESHOLDS`, and how
much of each person of the image the product's mask covers. The other functions summarise a
list of them: `iou_histogram`, `threshold_sweep`, `worst_expressions` (then `gallery_examples`
predicts those again with their images), `breakdown` by the aspects of
`request_aspects` and `other_person_share`.

Decisions:
- The protected region is prob >= threshold, what `hiding.protect` hides; the paper's IoU is
  `metrics.score_expression`'s (prob > segment_thresh, 0.35). Precision and recall are the
  pixel precision and recall of the protected region, averaged over expressions, with the
  0/0 rules of `metrics.pixel_scores`.
- The other people of an expression are the other refs of its image in the split. On the
  synthetic twin every person is a ref; RPCOCO refers to only some people of a photo, so
  there the share counts confusions between referred people only.
- The protection lands on another person when some other person has a larger share of their
  pixels protected than the referred person has.
- One process: the pass reads every expression itself (a notebook's job, not a pod's).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
import dataclasses

import numpy as np

from brppnet_jax.data import letterbox
from brppnet_jax.data import pipeline
from brppnet_jax.data import transforms
from brppnet_jax.evaluation import metrics
from brppnet_jax.evaluation import summaries
from brppnet_jax.protect import hiding
from brppnet_jax.runtime import sharding

SWEEP_THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(1, 20))  # 0.05, 0.10, ..., 0.95.
_DEVICE_KEYS = ("image", "geometry", "tokens")


@dataclasses.dataclass(frozen=True)
class ExpressionResult:
  """What the analyses need of one evaluated expression."""
  index: int  # Position in the split's expression order (`pipeline.expression_index`).
  ref_id: int
  image_name: str
  sentence: str
  num_people: int  # Refs of this image in the split (the referred person included).
  paper_iou: float  # prob > metrics.PAPER_THRESHOLD, as the paper reports it.
  iou: float  # Of the protected region, prob >= mask_threshold.
  person_pixels: int
  protected: tuple[int, ...]  # Pixels with prob >= t, for t in SWEEP_THRESHOLDS.
  protected_on_person: tuple[int, ...]  # Those of them on the referred person.
  person_covered: float  # Share of the referred person protected (at mask_threshold).
  other_covered: float  # Largest share of another person protected; 0 when alone.

  @property
  def on_other_person(self) -> bool:
    """The person the protection covers most is someone else."""
    return self.other_covered > self.person_covered


def _iou(intersection: int, predicted: int, target: int) -> float:
  union = predicted + target - intersection
  return intersection / union if union else 1.0


def _counts_at_thresholds(prob: np.ndarray, person: np.ndarray,
                          thresholds: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
  """Pixels with prob >= t, overall and on the person, for every t (one pass over prob)."""
  edges = np.asarray(thresholds, prob.dtype)  # Compared as `prob >= t` compares them.
  level = np.searchsorted(edges, prob, side="right")  # How many thresholds each pixel reaches.
  n = len(edges) + 1
  at_least = lambda counts: np.cumsum(counts[::-1])[::-1][1:]
  return (at_least(np.bincount(level.ravel(), minlength=n)),
          at_least(np.bincount(level[person], minlength=n)))


def measure_expression(prob: np.ndarray, gt_mask: np.ndarray, others: Sequence[np.ndarray],
                       *, mask_threshold: float = hiding.MASK_THRESHOLD,
                       paper_threshold: float = metrics.PAPER_THRESHOLD, **identity
                       ) -> ExpressionResult:
  """The result of one expression from its probabilities [h, w] at the image's size.

  gt_mask and each of `others` (the other people's masks) are [h, w], > 0 on the person;
  `identity` holds the fields index, ref_id, image_name and sentence.
  """
  prob = np.asarray(prob)
  person = np.asarray(gt_mask) > 0
  paper_iou = metrics.score_expression(prob, gt_mask, thresh=paper_threshold).iou
  protected, on_person = _counts_at_thresholds(prob, person, SWEEP_THRESHOLDS)
  mask = prob >= mask_threshold
  share = lambda m: np.count_nonzero(mask & m) / max(1, np.count_nonzero(m))
  person_pixels = int(np.count_nonzero(person))
  hit = int(np.count_nonzero(mask & person))
  return ExpressionResult(
      **identity, num_people=1 + len(others), paper_iou=paper_iou,
      iou=_iou(hit, int(np.count_nonzero(mask)), person_pixels), person_pixels=person_pixels,
      protected=tuple(int(v) for v in protected),
      protected_on_person=tuple(int(v) for v in on_person), person_covered=share(person),
      other_covered=max((share(np.asarray(m) > 0) for m in others), default=0.0))


class _People:
  """Every ref's mask by image, decoded once per image while its expressions are scored."""

  def __init__(self, source: Sequence[dict]):
    self._source = source
    self._refs = collections.defaultdict(list)  # image name -> record indices.
    self._record_of = {}  # ref_id -> record index.
    for i in range(len(source)):
      record = source[i]
      self._refs[transforms.as_text(record["image_name"])].append(i)
      self._record_of[int(record["ref_id"])] = i
    self._cached = (None, {})

  def image_name(self, ref_id: int) -> str:
    return transforms.as_text(self._source[self._record_of[ref_id]]["image_name"])

  def others(self, ref_id: int) -> list[np.ndarray]:
    """The masks of the other refs of ref_id's image."""
    name = self.image_name(ref_id)
    if self._cached[0] != name:
      masks = {}
      for i in self._refs[name]:
        record = self._source[i]
        masks[int(record["ref_id"])] = transforms.decode_mask(
            record["mask"], transforms.ref_name(record))
      self._cached = (name, masks)
    return [m for other, m in self._cached[1].items() if other != ref_id]


def _eval_config(predictor, config, max_expressions: int):
  """config with the checkpoint's network, whole batches per device and the expression cap."""
  eval_config = predictor.eval_config(config)
  eval_config.eval_max_examples = max(0, int(max_expressions))
  devices = predictor.mesh.size
  eval_config.eval_batch_size = -(-config.eval_batch_size // devices) * devices
  return eval_config


def _predicted_rows(predictor, eval_config, source, include_images: bool):
  """(batch, row, probabilities at the original size) of every expression, in order."""
  size = eval_config.dataset.input_size
  for batch in pipeline.create_eval_iterator(eval_config, source, predictor.vocab,
                                             include_images=include_images):
    device_batch = sharding.global_batch({k: batch[k] for k in _DEVICE_KEYS}, predictor.mesh)
    probs = sharding.local_rows(predictor.p_predict(predictor.state, device_batch))
    for i in np.flatnonzero(batch["valid"]):
      yield batch, i, letterbox.unletterbox(probs[i], batch["geometry"][i],
                                            batch["orig_size"][i], size)


def analyse_predictor(predictor, config, source: Sequence[dict], *, max_expressions: int = 0,
                      mask_threshold: float = hiding.MASK_THRESHOLD) -> list[ExpressionResult]:
  """One `ExpressionResult` per expression of `source` (the first max_expressions if > 0).

  `predictor` is a restored `protect.predictor.Predictor`; `config` gives the evaluation
  settings (segment_thresh, eval_batch_size) as for `checkpoint.evaluate_predictor`.
  """
  eval_config = _eval_config(predictor, config, max_expressions)
  people = _People(source)
  results = []
  for batch, i, prob in _predicted_rows(predictor, eval_config, source, include_images=False):
    ref_id = int(batch["ref_id"][i])
    results.append(measure_expression(
        prob, batch["gt_masks"][i], people.others(ref_id), mask_threshold=mask_threshold,
        paper_threshold=eval_config.segment_thresh, index=len(results), ref_id=ref_id,
        image_name=people.image_name(ref_id), sentence=batch["sentence"][i]))
  return results


def iou_histogram(results: Sequence[ExpressionResult], bins: int = 10,
                  paper: bool = False) -> tuple[np.ndarray, np.ndarray]:
  """(counts [bins], edges [bins + 1]) of the per-expression IoU over [0, 1]."""
  values = [r.paper_iou if paper else r.iou for r in results]
  return np.histogram(values, bins=bins, range=(0.0, 1.0))


def _rate(hit: int, total: int, other_total: int) -> float:
  """hit / total with metrics.pixel_scores' 0/0 rule (1 only when both sides are empty)."""
  return hit / total if total else float(other_total == 0)


def threshold_sweep(results: Sequence[ExpressionResult]) -> list[dict]:
  """Per threshold of SWEEP_THRESHOLDS: mIoU, mean pixel precision and recall of the mask."""
  if not results:
    raise ValueError("no expressions to sweep")
  rows = []
  for k, threshold in enumerate(SWEEP_THRESHOLDS):
    ious, precisions, recalls = [], [], []
    for r in results:
      hit, protected, person = r.protected_on_person[k], r.protected[k], r.person_pixels
      ious.append(_iou(hit, protected, person))
      precisions.append(_rate(hit, protected, person))
      recalls.append(_rate(hit, person, protected))
    rows.append({"threshold": threshold, "miou": float(np.mean(ious)),
                 "precision": float(np.mean(precisions)), "recall": float(np.mean(recalls))})
  return rows


def worst_expressions(results: Sequence[ExpressionResult], count: int
                      ) -> list[ExpressionResult]:
  """The `count` lowest-IoU expressions, one per image (the worst of that image)."""
  chosen, images = [], set()
  for r in sorted(results, key=lambda r: (r.iou, r.index)):
    if r.image_name not in images:
      chosen.append(r)
      images.add(r.image_name)
      if len(chosen) == count:
        break
  return chosen


def gallery_examples(predictor, config, source: Sequence[dict],
                     chosen: Sequence[ExpressionResult]) -> list[summaries.Example]:
  """`chosen` predicted again, now with their images (in the order given)."""
  by_ref = {int(source[i]["ref_id"]): i for i in range(len(source))}
  picked = [dict(source[by_ref[r.ref_id]], sentences=np.array([r.sentence], dtype=object))
            for r in chosen]
  if not picked:
    return []
  eval_config = _eval_config(predictor, config, 0)
  return [summaries.Example(batch["orig_images"][i], batch["gt_masks"][i], prob,
                            batch["sentence"][i])
          for batch, i, prob in _predicted_rows(predictor, eval_config, picked, True)]


def other_person_share(results: Sequence[ExpressionResult]) -> float:
  """Share of expressions whose protection covers another person most."""
  if not results:
    raise ValueError("no expressions")
  return sum(r.on_other_person for r in results) / len(results)


def breakdown(results: Sequence[ExpressionResult],
              aspects: Callable[[ExpressionResult], dict[str, str]]) -> list[dict]:
  """Rows (aspect, value, expressions, miou, paper_miou, other_person) per aspect value.

  `aspects(result)` names what the request says, e.g. `request_aspects.synthetic`; rows
  come in aspect order, then by value.
  """
  groups = collections.defaultdict(list)
  order = {}
  for r in results:
    for aspect, value in aspects(r).items():
      order.setdefault(aspect, len(order))
      groups[aspect, value].append(r)
  rows = []
  for (aspect, value), members in sorted(groups.items(), key=lambda kv: (order[kv[0][0]],
                                                                         kv[0][1])):
    rows.append({"aspect": aspect, "value": value, "expressions": len(members),
                 "miou": float(np.mean([r.iou for r in members])),
                 "paper_miou": float(np.mean([r.paper_iou for r in members])),
                 "other_person": other_person_share(members)})
  return rows


def format_rows(rows: Sequence[dict]) -> str:
  """Dict rows (one key set) as an aligned text table, floats to 3 decimals."""
  if not rows:
    return "(no rows)"
  keys = list(rows[0])
  cells = [[f"{row[k]:.3f}" if isinstance(row[k], float) else str(row[k]) for k in keys]
           for row in rows]
  widths = [max(len(k), *(len(c[j]) for c in cells)) for j, k in enumerate(keys)]
  lines = ["  ".join(k.ljust(w) for k, w in zip(keys, widths))]
  lines += ["  ".join(c.ljust(w) for c, w in zip(cell, widths)) for cell in cells]
  return "\n".join(line.rstrip() for line in lines)
