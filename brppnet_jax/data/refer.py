"""RPCOCO refs from the REFER toolkit files instead of the released masks.

A REFER directory (one per dataset, e.g. refcoco+/) holds `refs(<split_by>).p`, a pickled
list of refs (ref_id, ann_id, split, category_id, sentences), and `instances.json`, the
COCO images and annotations. Masks are rasterised from the annotation's polygons or RLE.
Only people (COCO category 1) are kept and every sentence gets the RP-IPP prefix, which
is how RPCOCO was made (spec section 1).
"""

from __future__ import annotations

import dataclasses
import io
import pickle
from typing import Any

from etils import epath
import numpy as np
from pycocotools import mask as mask_utils

from brppnet_jax.data import records

PERSON_CATEGORY = 1


class _PlainUnpickler(pickle.Unpickler):
  """Builds only the values a pickle makes without imports: containers, str, numbers."""

  def __init__(self, data: bytes, label: str):
    super().__init__(io.BytesIO(data), encoding="utf-8")
    self._label = label

  def find_class(self, module, name):
    raise pickle.UnpicklingError(
        f"{self._label} asks for {module}.{name}; refusing it: only plain containers, "
        "strings, numbers, booleans and None may be unpickled")


def load_plain_pickle(path: epath.PathLike) -> Any:
  """Unpickles `path` with a restricted unpickler (no classes, no functions)."""
  path = epath.Path(path)
  try:
    data = path.read_bytes()
  except FileNotFoundError:
    raise FileNotFoundError(f"REFER file {path} missing") from None
  try:
    return _PlainUnpickler(data, str(path)).load()
  except pickle.UnpicklingError as e:
    raise ValueError(f"cannot unpickle {path}: {e}") from None
  except (EOFError, UnicodeDecodeError, ValueError, KeyError, IndexError) as e:
    raise ValueError(f"{path} is not a valid pickle: {e!r}") from None


@dataclasses.dataclass(frozen=True)
class CocoMask:
  """A person's mask rasterised from a COCO annotation's polygons or RLE."""
  segmentation: Any
  height: int
  width: int
  label: str  # e.g. "from annotation 1719310 of instances.json"

  def load(self) -> np.ndarray:
    try:
      if isinstance(self.segmentation, list):  # Polygons.
        rle = mask_utils.merge(
            mask_utils.frPyObjects(self.segmentation, self.height, self.width))
      elif isinstance(self.segmentation.get("counts"), list):  # Uncompressed RLE.
        rle = mask_utils.frPyObjects(self.segmentation, self.height, self.width)
      else:
        rle = dict(self.segmentation)
        if isinstance(rle["counts"], str):
          rle["counts"] = rle["counts"].encode("ascii")
      pixels = mask_utils.decode(rle)
    except (AttributeError, KeyError, TypeError, ValueError, IndexError) as e:
      raise records.RefProblem("mask undecodable",
                               f"mask {self.label} undecodable ({e!r})") from None
    return np.where(pixels > 0, 255, 0).astype(np.uint8)


def read_refer(refer_dir: epath.PathLike, split_by: str,
               split: str) -> tuple[list[records.Ref], list[records.Problem], str]:
  """Person refs of `split` from a REFER dir, the refs that are not usable, a label."""
  refer_dir = epath.Path(refer_dir)
  refs_path = refer_dir / f"refs({split_by}).p"
  entries = load_plain_pickle(refs_path)
  if not isinstance(entries, list):
    raise ValueError(f"{refs_path} holds a {type(entries).__name__}, expected a list of refs")
  coco = records.read_json(refer_dir / "instances.json", "instances.json")
  try:
    images = {im["id"]: im for im in coco["images"]}
    anns = {a["id"]: a for a in coco["annotations"]}
  except (KeyError, TypeError) as e:
    raise ValueError(f"{refer_dir / 'instances.json'} lacks COCO images/annotations "
                     f"({e!r})") from None
  refs, problems = [], []
  for index, entry in enumerate(entries):
    if not isinstance(entry, dict):
      raise ValueError(f"{refs_path}: entry {index} is a {type(entry).__name__}, "
                       "expected a dict")
    if entry.get("split") != split or entry.get("category_id") != PERSON_CATEGORY:
      continue
    try:
      refs.append(_refer_ref(entry, images, anns))
    except records.RefProblem as e:
      problems.append(records.Problem(f"ref {entry.get('ref_id', index)}", e.kind, str(e)))
  problems += records.duplicate_ids(refs)
  return refs, problems, f"{refs_path.name} split {split}"


def _refer_ref(entry: dict, images: dict, anns: dict) -> records.Ref:
  try:
    ref_id, ann_id = int(entry["ref_id"]), entry["ann_id"]
    sentences = [s["sent"] for s in entry["sentences"]]
  except (KeyError, TypeError, ValueError) as e:
    raise records.RefProblem("invalid entry", f"ref entry lacks {e!r}") from None
  ann = anns.get(ann_id)
  if ann is None:
    raise records.RefProblem("invalid entry", f"annotation {ann_id} not in instances.json")
  image = images.get(ann.get("image_id"))
  if image is None:
    raise records.RefProblem("invalid entry",
                             f"image {ann.get('image_id')} not in instances.json")
  if not sentences or any(not isinstance(s, str) or not s.strip() for s in sentences):
    raise records.RefProblem("no sentence", "no sentence" if not sentences
                             else "a sentence has no text")
  try:
    x, y, w, h = (float(v) for v in ann["bbox"])
  except (KeyError, TypeError, ValueError) as e:
    raise records.RefProblem("invalid entry", f"annotation {ann_id} has no valid bbox "
                             f"({e!r})") from None
  bbox = (round(x), round(y), round(x + w), round(y + h))
  mask = CocoMask(ann.get("segmentation"), int(image["height"]), int(image["width"]),
                  f"from annotation {ann_id} of instances.json")
  return records.Ref(ref_id, image["file_name"],
                     tuple(records.PREFIX + s for s in sentences), bbox, mask)
