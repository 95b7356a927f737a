"""Per-example pre-processing: decode a record, letterbox it, tokenize one expression.

A record is a dict with `image` (JPEG bytes), `mask` (PNG bytes, 1 channel, 0/255, the
image's size), `sentences` (every expression of the ref) and `ref_id`, as the RPCOCO
TFDS builder stores them (read with tfds.decode.SkipDecoding for image and mask).
"""

from __future__ import annotations

from collections.abc import Mapping
import dataclasses
from typing import Any

import cv2
import numpy as np

from brppnet_jax.data import letterbox
from brppnet_jax.data import vocab as vocab_lib

# IGNORE_ORIENTATION: masks and boxes follow the stored pixels, as PIL reads them.
_RGB_FLAGS = cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION
_GRAY_FLAGS = cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION


def _as_bytes(value: Any) -> bytes:
  if isinstance(value, np.ndarray) and value.ndim == 0:
    value = value.item()
  return bytes(value)


def as_text(value: Any) -> str:
  """A str from the bytes or str a data source returns."""
  if isinstance(value, np.ndarray) and value.ndim == 0:
    value = value.item()
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def ref_name(record: Mapping[str, Any]) -> str:
  """How errors name a record."""
  return f"ref_id {int(record['ref_id'])}" if "ref_id" in record else "record without ref_id"


def _decode(data: Any, flags: int, what: str, kind: str) -> np.ndarray:
  raw = _as_bytes(data)
  decoded = cv2.imdecode(np.frombuffer(raw, np.uint8), flags) if raw else None
  if decoded is None:
    raise ValueError(f"{what}: cannot decode the {kind} ({len(raw)} bytes)")
  return decoded


def decode_rgb(data: Any, what: str) -> np.ndarray:
  """uint8 [h, w, 3] RGB from encoded image bytes (JPEG, PNG, ...)."""
  return _decode(data, _RGB_FLAGS, what, "image")


def decode_mask(data: Any, what: str) -> np.ndarray:
  """uint8 [h, w] from an encoded 1-channel PNG."""
  return _decode(data, _GRAY_FLAGS, what, "mask")


def sentences_of(record: Mapping[str, Any]) -> list[str]:
  """Every expression of a record, as str; an error when there is none."""
  sentences = [as_text(s) for s in record["sentences"]]
  if not sentences:
    raise ValueError(f"{ref_name(record)} has no sentences")
  return sentences


@dataclasses.dataclass(frozen=True)
class Preprocessor:
  """Turns a record and one of its expressions into model inputs (spec section 2)."""
  vocab: vocab_lib.Vocabulary
  input_size: int
  mask_stride: int
  word_len: int

  def decode(self, record: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The record's RGB image and mask, checked to have the same size."""
    what = ref_name(record)
    rgb = decode_rgb(record["image"], what)
    mask = decode_mask(record["mask"], what)
    if mask.shape != rgb.shape[:2]:
      raise ValueError(f"{what}: mask is {mask.shape[1]}x{mask.shape[0]} but the image is "
                       f"{rgb.shape[1]}x{rgb.shape[0]}")
    return rgb, mask

  def arrays(self, rgb: np.ndarray, mask: np.ndarray, sentence: str) -> dict[str, np.ndarray]:
    """`image` uint8 [S, S, 3] with its `geometry` int32 [4] (the model's float input is
    `letterbox.canvas_to_float(image, geometry)`, built on the device), `tokens` [T] and
    `mask` [S/s, S/s, 1] of one example."""
    image, geometry = letterbox.letterbox_uint8(rgb, self.input_size)
    return {
        "image": image,
        "geometry": np.asarray(geometry, np.int32),
        "tokens": self.vocab.encode(sentence, self.word_len),
        "mask": letterbox.letterbox_mask(mask, self.input_size, self.mask_stride)[..., None],
    }

  def padding(self) -> dict[str, np.ndarray]:
    """Arrays of a dummy example that fills an incomplete batch: all canvas (geometry 0)."""
    s, m = self.input_size, self.input_size // self.mask_stride
    return {
        "image": np.full((s, s, 3), letterbox.CANVAS_UINT8, np.uint8),
        "geometry": np.zeros((4,), np.int32),
        "tokens": np.zeros((self.word_len,), np.int32),
        "mask": np.zeros((m, m, 1), np.float32),
    }
