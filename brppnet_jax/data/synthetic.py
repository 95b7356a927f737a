r"""The synthetic twin of RPCOCO: drawn people and generated expressions, same layout.

    python -m brppnet_jax.data.synthetic --out data/synthetic --seed 0 \
        --num_train 2000 --num_test 300
    python -m brppnet_jax.data.build --dataset=synthetic --manual_dir=data/synthetic \
        --data_dir=data/tfds

writes anns/synthetic/{train,test}.json (the released schema, spec section 1), 0/255 PNG
masks in masks/synthetic/ and JPEGs named COCO_train2014_%012d.jpg in images/train2014/.
Each scene has 1 to 4 people (synthetic_scene.py); each person is one ref with 1 to 3
expressions true of that person only (synthetic_text.py). The same arguments give the
same bytes; a scene depends only on (seed, split, index).

Text-blind rules: predictions that ignore the expression (always the largest, tallest,
front-most, leftmost or most central person, or the union of all people), scored per
expression on the test split; see `text_blind_ceiling`. For --seed 0 --num_train 2000
--num_test 300 the best of these six rules reaches mIoU 0.372 (largest person; tallest 0.369,
front-most 0.365, leftmost 0.365, union 0.363, most central 0.343). None of them is a bound
on text-blind models: picking for each image the one person or union of people that scores
best on that image's expressions (an oracle that still reads no text) reaches 0.482. 27 of
the 300 test images hold one person, the rest 2 to 4.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
import io
import itertools
import json
import time

from absl import app
from absl import flags
from etils import epath
import numpy as np
from PIL import Image

from brppnet_jax.data import records
from brppnet_jax.data import synthetic_scene
from brppnet_jax.data import synthetic_text

VARIANT = "synthetic"
_SPLIT_CODES = {"train": 0, "test": 1}
_IDS_PER_SPLIT = 10_000_000  # Image and segment ids of split k start at k * this + 1.


def _scene_and_descriptions(rng: np.random.Generator):
  while True:
    scene = synthetic_scene.sample_scene(rng)
    found = synthetic_text.descriptions(scene.people, scene.size)
    if all(found):  # Every person can be told apart from the others.
      return scene, found


def _bbox(mask: np.ndarray) -> list[int]:
  ys, xs = np.nonzero(mask)
  return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def _write_scene(out_dir: epath.Path, split: str, index: int, seed: int) -> list[dict]:
  """Draws scene `index` of `split`, writes its image and masks, returns its refs."""
  code = _SPLIT_CODES[split]
  rng = np.random.default_rng([seed, code, index])
  scene, found = _scene_and_descriptions(rng)
  image, labels = synthetic_scene.render(scene)
  name = f"COCO_train2014_{code * _IDS_PER_SPLIT + index + 1:012d}.jpg"
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format="JPEG", quality=90)
  records.image_path(out_dir, name).write_bytes(buffer.getvalue())
  entries = []
  for p in range(len(scene.people)):
    segment_id = code * _IDS_PER_SPLIT + 4 * index + p + 1
    mask = np.where(labels == p + 1, 255, 0).astype(np.uint8)
    (out_dir / "masks" / VARIANT / f"{segment_id}.png").write_bytes(records.encode_png(mask))
    texts = synthetic_text.expressions(found[p], rng)
    entries.append({
        "bbox": _bbox(mask), "cat": 0, "segment_id": segment_id, "img_name": name,
        "sentences": [{"idx": k, "sent_id": 3 * segment_id + k, "sent": t}
                      for k, t in enumerate(texts)],
        "sentences_num": len(texts),
    })
  return entries


def generate(out_dir: epath.PathLike, seed: int = 0, num_train: int = 2000,
             num_test: int = 300) -> dict[str, dict[str, int]]:
  """Writes both splits under `out_dir`; returns refs, expressions and images per split."""
  if max(num_train, num_test) >= _IDS_PER_SPLIT // 4:
    raise ValueError(f"at most {_IDS_PER_SPLIT // 4 - 1} scenes per split")
  out_dir = epath.Path(out_dir)
  for sub in (f"anns/{VARIANT}", f"masks/{VARIANT}", records.IMAGES_DIR):
    (out_dir / sub).mkdir(parents=True, exist_ok=True)
  counts = {}
  for split, num in (("train", num_train), ("test", num_test)):
    entries = [e for i in range(num) for e in _write_scene(out_dir, split, i, seed)]
    (out_dir / "anns" / VARIANT / f"{split}.json").write_text(json.dumps(entries))
    counts[split] = {"refs": len(entries), "images": num,
                     "expressions": sum(e["sentences_num"] for e in entries)}
  return counts


def iou(prediction: np.ndarray, truth: np.ndarray) -> float:
  """IoU of two boolean masks; two empty masks count as 1 (spec section 6)."""
  union = np.count_nonzero(prediction | truth)
  return 1.0 if union == 0 else np.count_nonzero(prediction & truth) / union


def _centroid_x(m: np.ndarray) -> float:
  return float(np.nonzero(m)[1].mean())


def _rows(m: np.ndarray) -> np.ndarray:
  return np.nonzero(m.any(axis=1))[0]


def _central_distance(m: np.ndarray) -> float:
  ys, xs = np.nonzero(m)
  return float(np.hypot(xs.mean() - m.shape[1] / 2, ys.mean() - m.shape[0] / 2))


# Text-blind choices of one person among an image's people (masks), as a score to maximise.
_PICKS: dict[str, Callable[[np.ndarray], float]] = {
    "largest": lambda m: float(np.count_nonzero(m)),
    "tallest": lambda m: float(np.ptp(_rows(m))),
    "front": lambda m: float(_rows(m).max()),
    "leftmost": lambda m: -_centroid_x(m),
    "central": lambda m: -_central_distance(m),
}


def _best_union_score(masks: list[np.ndarray], weights: list[int]) -> float:
  """The highest weighted IoU sum over the image's expressions of one fixed prediction: any
  single person or union of people (all non-empty subsets; at most 15 for 4 people)."""
  best = 0.0
  for k in range(1, len(masks) + 1):
    for subset in itertools.combinations(masks, k):
      prediction = np.logical_or.reduce(subset)
      best = max(best, sum(w * iou(prediction, m) for w, m in zip(weights, masks)))
  return best


def text_blind_ceiling(out_dir: epath.PathLike, split: str = "test",
                       variant: str = VARIANT) -> dict:
  """mIoU per expression of predictions that ignore the text: six fixed rules and an oracle.

  Each image's prediction is the same for all its refs: one person picked by a rule of
  `_PICKS`, or the union of all people. Every person of a synthetic image is a ref. The
  "oracle" picks, per image, the person or union of people with the best mIoU on that image
  (it reads no text, but it sees the answers): no rule is a bound on text-blind models, and
  neither is the oracle (a model may predict other regions), but it shows how far above
  the rules a model can get without the text.
  Returns {"miou": {rule: value}, "best": rule, "ceiling": value of the best rule,
  "oracle": value, "expressions": n}.
  """
  out_dir = epath.Path(out_dir)
  label = f"anns/{variant}/{split}.json"
  by_image = collections.defaultdict(list)
  for entry in records.read_json(out_dir / label, label):
    by_image[entry["img_name"]].append(entry)
  totals = collections.Counter()
  expressions = 0
  for entries in by_image.values():
    labels = [f"masks/{variant}/{e['segment_id']}.png" for e in entries]
    masks = [records.MaskFile(out_dir / label, label).load() > 0 for label in labels]
    weights = [len(entry["sentences"]) for entry in entries]
    predictions = {name: masks[int(np.argmax([pick(m) for m in masks]))]
                   for name, pick in _PICKS.items()}
    predictions["union"] = np.logical_or.reduce(masks)
    for weight, truth in zip(weights, masks):
      expressions += weight
      for name, prediction in predictions.items():
        totals[name] += weight * iou(prediction, truth)
    totals["oracle"] += _best_union_score(masks, weights)
  miou = {name: totals[name] / expressions for name in list(_PICKS) + ["union"]}
  best = max(miou, key=miou.get)
  return {"miou": miou, "best": best, "ceiling": miou[best],
          "oracle": totals["oracle"] / expressions, "expressions": expressions}


def _define_flags() -> None:
  """Only when run as a program: importing this module (as text_floor does) defines none."""
  flags.DEFINE_string("out", None, "Directory to write the released layout into.")
  flags.DEFINE_integer("seed", 0, "Random seed; the same seed gives the same bytes.")
  flags.DEFINE_integer("num_train", 2000, "Train scenes (images).")
  flags.DEFINE_integer("num_test", 300, "Test scenes (images).")
  flags.mark_flag_as_required("out")


def main(argv):
  del argv
  out = flags.FLAGS.out
  start = time.perf_counter()
  counts = generate(out, flags.FLAGS.seed, flags.FLAGS.num_train, flags.FLAGS.num_test)
  for split, c in counts.items():
    print(f"{split}: {c['images']} images, {c['refs']} refs, {c['expressions']} expressions")
  print(f"wrote {out} in {time.perf_counter() - start:.1f} s")
  ceiling = text_blind_ceiling(out, "test")
  rules = ", ".join(f"{k} {v:.3f}" for k, v in ceiling["miou"].items())
  print(f"text-blind rules (test mIoU): best {ceiling['ceiling']:.3f} ({ceiling['best']}); "
        f"{rules}; per-image oracle over people and unions {ceiling['oracle']:.3f}")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
