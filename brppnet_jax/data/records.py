"""RPCOCO refs as plain records: reading the released layout and checking every file.

Released layout under a manual dir (spec section 1):

    anns/<variant>/<split>.json        one JSON object per referred person
    masks/<variant>/<segment_id>.png   8-bit grayscale, 255 on the person
    images/train2014/<img_name>        COCO JPEGs

`read_released` turns a split into `Ref`s, `check_refs` opens every image and mask
before anything is written and returns the problems per ref; `Ref.mask.load()` and
`encode_png` give the mask the builder stores.
"""

from __future__ import annotations

from collections.abc import Sequence
import concurrent.futures
import dataclasses
import io
import json
import os
from typing import Any, Protocol

from etils import epath
import numpy as np
from PIL import Image
from PIL import UnidentifiedImageError
import tqdm

PREFIX = "protect privacy of "
IMAGES_DIR = "images/train2014"


class RefProblem(Exception):
  """Something wrong with one ref; `kind` groups problems in skip reports."""

  def __init__(self, kind: str, message: str):
    super().__init__(message)
    self.kind = kind


class BadRefsError(ValueError):
  """Some refs of a split cannot become examples; the message names each one."""


class MaskSource(Protocol):
  label: str  # Names the mask in messages: "mask <label> ...".

  def load(self) -> np.ndarray:
    """The mask as uint8 [H, W], 255 on the person; raises RefProblem."""


@dataclasses.dataclass(frozen=True)
class Ref:
  """One referred person: what an example is made of."""
  ref_id: int
  image_name: str
  sentences: tuple[str, ...]
  bbox: tuple[int, int, int, int]  # x0, y0, x1, y1 corners.
  mask: MaskSource


@dataclasses.dataclass(frozen=True)
class Problem:
  """Why a ref cannot become an example."""
  ref: str  # "ref 123", or "entry 4" when the entry has no usable id.
  kind: str
  message: str

  def __str__(self) -> str:
    return f"{self.ref}: {self.message}"


@dataclasses.dataclass(frozen=True)
class MaskFile:
  """A released mask PNG; `label` is its path relative to the manual dir."""
  path: epath.Path
  label: str

  def load(self) -> np.ndarray:
    try:
      data = self.path.read_bytes()
    except FileNotFoundError:
      raise RefProblem("mask missing", f"mask {self.label} missing") from None
    try:
      with Image.open(io.BytesIO(data)) as image:
        image.load()
        mode = image.mode
        pixels = np.asarray(image)
    except (OSError, SyntaxError, ValueError) as e:
      raise RefProblem("mask undecodable",
                       f"mask {self.label} undecodable ({_reason(e)})") from None
    if mode not in ("1", "L", "P"):
      raise RefProblem("mask undecodable",
                       f"mask {self.label} has mode {mode}, expected 8-bit grayscale")
    # The released masks are 0/255; anything above 0 is the person (spec section 6).
    return np.where(pixels > 0, 255, 0).astype(np.uint8)


def _reason(error: Exception) -> str:
  if isinstance(error, UnidentifiedImageError):
    return "not an image file PIL knows"
  return str(error) or type(error).__name__


def encode_png(mask: np.ndarray) -> bytes:
  """PNG bytes of a uint8 [H, W] mask, as the `mask` feature stores it."""
  buffer = io.BytesIO()
  Image.fromarray(mask, mode="L").save(buffer, format="PNG")
  return buffer.getvalue()


def image_path(manual_dir: epath.PathLike, image_name: str) -> epath.Path:
  return epath.Path(manual_dir) / IMAGES_DIR / image_name


def read_json(path: epath.Path, label: str) -> Any:
  """Parsed JSON of `path`; the error names `label` (the path the user knows)."""
  try:
    text = path.read_text(encoding="utf-8")
  except FileNotFoundError:
    raise FileNotFoundError(f"annotation file {label} missing ({path})") from None
  except (OSError, UnicodeDecodeError) as e:
    raise ValueError(f"cannot read annotation file {label}: {e}") from None
  try:
    return json.loads(text)
  except json.JSONDecodeError as e:
    raise ValueError(f"annotation file {label} is not valid JSON: {e}") from None


def read_released(manual_dir: epath.PathLike, variant: str,
                  split: str) -> tuple[list[Ref], list[Problem], str]:
  """Refs of `anns/<variant>/<split>.json`, the entries that are not refs, the file label."""
  manual_dir = epath.Path(manual_dir)
  label = f"anns/{variant}/{split}.json"
  entries = read_json(manual_dir / label, label)
  if not isinstance(entries, list):
    raise ValueError(f"annotation file {label} holds a {type(entries).__name__}, "
                     "expected a list of refs")
  refs, problems = [], []
  for index, entry in enumerate(entries):
    try:
      refs.append(_released_ref(entry, manual_dir, variant))
    except RefProblem as e:
      problems.append(Problem(_entry_label(entry, index), e.kind, str(e)))
  problems += duplicate_ids(refs)
  return refs, problems, label


def _entry_label(entry: Any, index: int) -> str:
  ref_id = entry.get("segment_id") if isinstance(entry, dict) else None
  return f"ref {ref_id}" if _is_int(ref_id) else f"entry {index}"


def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _released_ref(entry: Any, manual_dir: epath.Path, variant: str) -> Ref:
  if not isinstance(entry, dict):
    raise RefProblem("invalid entry", f"is a {type(entry).__name__}, expected an object")
  missing = [k for k in ("segment_id", "img_name", "bbox", "sentences") if k not in entry]
  if missing:
    raise RefProblem("invalid entry", f"field {', '.join(missing)} missing")
  ref_id, image_name, bbox = entry["segment_id"], entry["img_name"], entry["bbox"]
  if not _is_int(ref_id):
    raise RefProblem("invalid entry", f"segment_id {ref_id!r} is not an integer")
  if not isinstance(image_name, str) or not image_name or "/" in image_name:
    raise RefProblem("invalid entry", f"img_name {image_name!r} is not a file name")
  if not (isinstance(bbox, list) and len(bbox) == 4 and all(map(_is_int, bbox))):
    raise RefProblem("invalid entry", f"bbox {bbox!r} is not 4 integers")
  sentences = entry["sentences"]
  if not isinstance(sentences, list):
    raise RefProblem("invalid entry", "sentences is not a list")
  texts = [s.get("sent") if isinstance(s, dict) else None for s in sentences]
  if not texts:
    raise RefProblem("no sentence", "no sentence")
  for i, text in enumerate(texts):
    if not isinstance(text, str) or not text.strip():
      raise RefProblem("no sentence", f"sentence {i} has no text")
  mask_label = f"masks/{variant}/{ref_id}.png"
  return Ref(ref_id, image_name, tuple(texts), tuple(bbox),
             MaskFile(manual_dir / mask_label, mask_label))


def duplicate_ids(refs: Sequence[Ref]) -> list[Problem]:
  seen, problems = set(), []
  for ref in refs:
    if ref.ref_id in seen:
      problems.append(Problem(f"ref {ref.ref_id}", "duplicate id",
                              "segment_id appears more than once"))
    seen.add(ref.ref_id)
  return problems


def image_size(path: epath.Path, label: str) -> tuple[int, int]:
  """(width, height) of a JPEG after decoding it at 1/8 scale; raises RefProblem."""
  try:
    data = path.read_bytes()
  except FileNotFoundError:
    raise RefProblem("image missing", f"image {label} missing") from None
  try:
    with Image.open(io.BytesIO(data)) as image:
      size, fmt, mode = image.size, image.format, image.mode
      image.draft("RGB", (1, 1))  # Decoding at the smallest scale still reads every block.
      image.load()
  except (OSError, SyntaxError, ValueError) as e:
    raise RefProblem("image undecodable", f"image {label} undecodable ({_reason(e)})") from None
  if fmt != "JPEG" or mode not in ("RGB", "L"):
    raise RefProblem("image undecodable", f"image {label} is a {mode} {fmt}, "
                     "expected an RGB or grayscale JPEG")
  return size


def check_refs(refs: Sequence[Ref], manual_dir: epath.PathLike,
               desc: str = "checking refs") -> list[Problem]:
  """Opens every image and mask of `refs` (in threads) and lists what is wrong."""
  manual_dir = epath.Path(manual_dir)
  names = sorted({r.image_name for r in refs})
  workers = min(16, os.cpu_count() or 1)
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    sizes = dict(zip(names, pool.map(
        lambda n: _outcome(image_size, image_path(manual_dir, n), f"{IMAGES_DIR}/{n}"), names)))
    masks = pool.map(lambda r: _outcome(lambda: r.mask.load().shape), refs)
    problems = []
    # disable=None: a bar only on a terminal.
    for ref, mask_shape in tqdm.tqdm(zip(refs, masks), desc=desc, total=len(refs),
                                     unit=" refs", disable=None):
      problems += _ref_problems(ref, sizes[ref.image_name], mask_shape)
  return problems


def _outcome(fn, *args):
  try:
    return fn(*args)
  except RefProblem as e:
    return e


def _ref_problems(ref: Ref, size, mask_shape) -> list[Problem]:
  label = f"ref {ref.ref_id}"
  found = [Problem(label, o.kind, str(o)) for o in (size, mask_shape)
           if isinstance(o, RefProblem)]
  if not found and tuple(mask_shape) != (size[1], size[0]):
    found.append(Problem(label, "size mismatch",
                         f"mask {ref.mask.label} is {mask_shape[1]}x{mask_shape[0]} but image "
                         f"{IMAGES_DIR}/{ref.image_name} is {size[0]}x{size[1]}"))
  return found


def bad_refs_message(problems: Sequence[Problem], source: str) -> str:
  """One line naming every offending ref and file."""
  count = len({p.ref for p in problems})
  return (f"{count} bad ref{'s' if count != 1 else ''} in {source}: "
          + "; ".join(map(str, problems))
          + " (pass --skip_bad, or skip_bad=True, to build without them)")


def skip_summary(problems: Sequence[Problem]) -> dict[str, int]:
  """How many refs were skipped for each kind of problem (a ref counts once)."""
  first_kind = {}
  for p in problems:
    first_kind.setdefault(p.ref, p.kind)
  counts: dict[str, int] = {}
  for kind in first_kind.values():
    counts[kind] = counts.get(kind, 0) + 1
  return dict(sorted(counts.items()))
