"""Letterboxing (spec section 2) and its inverse (spec section 6, step 1).

An image of w x h is scaled by min(size / w, size / h) to nw x nh and pasted centred on a
size x size canvas at (dx, dy); `geometry` is always the tuple (nw, nh, dx, dy).

Resampling uses OpenCV: bicubic (cv2.INTER_CUBIC, a = -0.75) for the image and the mask,
bilinear for probabilities. The original used PIL's bicubic, whose kernel (a = -0.5) widens
when shrinking (antialiasing); on noisy 640x480 photos the two differ by about 3/255 per
pixel on average. PIL's resize costs about 4.6 ms for 640x480 -> 416x312 on one core here
against 0.4 ms for OpenCV's, and alone would put the input pipeline under its target of
150 examples/s per core (see pipeline_benchmark.py), so OpenCV is used everywhere.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

CANVAS_VALUE = 0.5  # Grey outside the picture, in [0, 1] units.


def letterbox_geometry(w: int, h: int, size: int) -> tuple[int, int, int, int]:
  """(nw, nh, dx, dy) of a w x h image letterboxed into size x size."""
  if w < 1 or h < 1:
    raise ValueError(f"cannot letterbox an image of {w}x{h} pixels")
  scale = min(size / w, size / h)
  nw, nh = int(w * scale), int(h * scale)
  if nw < 1 or nh < 1:
    raise ValueError(f"an image of {w}x{h} pixels is too thin to letterbox into {size}x{size}")
  return nw, nh, (size - nw) // 2, (size - nh) // 2


def letterbox_image(rgb: np.ndarray, size: int) -> np.ndarray:
  """float32 [size, size, 3] in [0, 1]: `rgb` (uint8 [h, w, 3]) resized and pasted on grey."""
  if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
    raise ValueError(f"letterbox_image needs uint8 [h, w, 3], got {rgb.dtype} {rgb.shape}")
  h, w = rgb.shape[:2]
  nw, nh, dx, dy = letterbox_geometry(w, h, size)
  resized = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_CUBIC)
  canvas = np.full((size, size, 3), CANVAS_VALUE, np.float32)
  np.divide(resized, np.float32(255), out=canvas[dy:dy + nh, dx:dx + nw], dtype=np.float32)
  return canvas


def letterbox_mask(mask: np.ndarray, size: int, stride: int) -> np.ndarray:
  """float32 [size / stride, size / stride] in [0, 1] from a 0/255 uint8 [h, w] mask.

  The mask is letterboxed like its image (bicubic, zeros outside) and then subsampled by
  `stride` with nearest neighbour, keeping the pixel nearest each output pixel's centre
  (PIL's and cv2.INTER_NEAREST_EXACT's convention: rows and columns stride // 2 + k * stride).
  """
  if mask.dtype != np.uint8 or mask.ndim != 2:
    raise ValueError(f"letterbox_mask needs uint8 [h, w], got {mask.dtype} {mask.shape}")
  if size % stride:
    raise ValueError(f"input size {size} is not a multiple of the mask stride {stride}")
  h, w = mask.shape
  nw, nh, dx, dy = letterbox_geometry(w, h, size)
  resized = cv2.resize(mask, (nw, nh), interpolation=cv2.INTER_CUBIC)
  canvas = np.zeros((size, size), np.uint8)
  canvas[dy:dy + nh, dx:dx + nw] = resized
  kept = canvas[stride // 2::stride, stride // 2::stride]
  return np.divide(kept, np.float32(255), dtype=np.float32)


def unletterbox(prob: np.ndarray, geometry: Sequence[int], orig_hw: Sequence[int],
                size: int) -> np.ndarray:
  """float32 [h, w]: a [S, S] map over the letterbox canvas, back on the original image.

  Bilinear resize to size x size, crop the picture region, bilinear resize to (h, w).
  """
  prob = np.asarray(prob, np.float32)
  if prob.ndim != 2 or prob.shape[0] != prob.shape[1]:
    raise ValueError(f"unletterbox needs a square [S, S] map, got {prob.shape}")
  nw, nh, dx, dy = (int(v) for v in geometry)
  h, w = (int(v) for v in orig_hw)
  if nw < 1 or nh < 1 or dx < 0 or dy < 0 or dx + nw > size or dy + nh > size:
    raise ValueError(f"geometry (nw, nh, dx, dy)={tuple(geometry)} does not fit a {size} canvas")
  if h < 1 or w < 1:
    raise ValueError(f"original size (h, w)={tuple(orig_hw)} is empty")
  full = cv2.resize(prob, (size, size), interpolation=cv2.INTER_LINEAR)
  crop = full[dy:dy + nh, dx:dx + nw]
  return cv2.resize(crop, (w, h), interpolation=cv2.INTER_LINEAR)
