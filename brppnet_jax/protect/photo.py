"""Reads a user's photo (a path or an array) as RGB uint8, with one-line errors for bad input.

Light on imports (numpy, Pillow and etils.epath only), so the protect CLI can check its input before it
imports JAX and loads a checkpoint.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image
from PIL import ImageOps

from brppnet_jax.runtime import paths

MIN_IMAGE_SIDE = 8  # Pixels; below this nothing recognisable is left to protect.


def load_rgb(image) -> np.ndarray:
  """An RGB uint8 [h, w, 3] array from a path or an array ([h, w] grey or [h, w, 3] uint8).

  Files are turned upright by their EXIF orientation, as image viewers show them.
  """
  if isinstance(image, (str, os.PathLike)):
    name = os.fspath(image)
    array = _read_file(name)
  else:
    array, name = np.asarray(image), "image array"
    if array.ndim == 2:
      array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] != 3 or array.dtype != np.uint8:
      raise ValueError(f"{name} must be uint8 [h, w, 3] RGB, got {array.dtype} {array.shape}")
  if min(array.shape[:2]) < MIN_IMAGE_SIDE:
    raise ValueError(f"{name} is too small: {array.shape[1]}x{array.shape[0]} pixels "
                     f"(at least {MIN_IMAGE_SIDE} on each side)")
  return array


def _read_file(path: str) -> np.ndarray:
  if not paths.is_file(path):  # Local, or a URL such as gs://bucket/photo.jpg.
    raise FileNotFoundError(f"image file not found: {path}")
  try:
    with paths.absolute(path).open("rb") as f, Image.open(f) as im:
      return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
  except (OSError, ValueError, Image.DecompressionBombError) as e:
    detail = " ".join(str(e).split())
    raise ValueError(f"{path} is not a readable image: {detail}") from None
