"""Letterboxing (spec section 2) and its inverse (spec section 6, step 1).

An image of w x h is scaled by min(size / w, size / h) to nw x nh and pasted centred on a
size x size canvas at (dx, dy); `geometry` is always the tuple (nw, nh, dx, dy).

The model's input is float32: the picture's pixels x / 255 and exactly 0.5 on the canvas
around it. 0.5 is no k / 255, so the input pipeline ships the uint8 picture on a canvas plus
its geometry (`letterbox_uint8`; 4 bytes per pixel fewer than float32) and the jitted step
rebuilds the float image on the device (`steps.model_images`); `canvas_to_float` is the same
rule on the host, and `letterbox_image` is the two together.

Resampling uses OpenCV: bicubic (cv2.INTER_CUBIC, a = -0.75) for the image and the mask,
bilinear for probabilities. The original used PIL's bicubic, whose kernel (a = -0.5) widens
when shrinking (antialiasing); on noisy 640x480 photos the two differ by about 3/255 per
pixel on average. PIL's resize costs about 4.6 ms for 640x480 -> 416x312 on one core here
against 0.4 ms for OpenCV's, and alone would put the input pipeline under its target of
150 examples/s per core (`python -m brppnet_jax.measure.pipeline_speed`), so OpenCV is used
everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

CANVAS_VALUE = 0.5  # Grey outside the picture, in [0, 1] units.
CANVAS_UINT8 = 128  # Only what a uint8 canvas shows; the model sees CANVAS_VALUE there.


def letterbox_geometry(w: int, h: int, size: int) -> tuple[int, int, int, int]:
  """(nw, nh, dx, dy) of a w x h image letterboxed into size x size."""
  if w < 1 or h < 1:
    raise ValueError(f"cannot letterbox an image of {w}x{h} pixels")
  scale = min(size / w, size / h)
  nw, nh = int(w * scale), int(h * scale)
  if nw < 1 or nh < 1:
    raise ValueError(f"an image of {w}x{h} pixels is too thin to letterbox into {size}x{size}")
  return nw, nh, (size - nw) // 2, (size - nh) // 2


def letterbox_uint8(rgb: np.ndarray, size: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
  """uint8 [size, size, 3]: `rgb` (uint8 [h, w, 3]) resized and pasted on a canvas of
  CANVAS_UINT8, and its geometry (nw, nh, dx, dy), which says where the canvas is."""
  if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
    raise ValueError(f"letterbox_image needs uint8 [h, w, 3], got {rgb.dtype} {rgb.shape}")
  h, w = rgb.shape[:2]
  nw, nh, dx, dy = letterbox_geometry(w, h, size)
  canvas = np.full((size, size, 3), CANVAS_UINT8, np.uint8)
  canvas[dy:dy + nh, dx:dx + nw] = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_CUBIC)
  return canvas, (nw, nh, dx, dy)


def canvas_to_float(image: np.ndarray, geometry: Sequence[int]) -> np.ndarray:
  """float32 [S, S, 3]: x / 255 (float32-rounded) inside the picture, CANVAS_VALUE outside.

  geometry (0, 0, 0, 0) is all canvas (padding rows). `steps.model_images` is the device twin.
  """
  nw, nh, dx, dy = (int(v) for v in geometry)
  out = np.full(image.shape, CANVAS_VALUE, np.float32)
  np.divide(image[dy:dy + nh, dx:dx + nw], np.float32(255), out=out[dy:dy + nh, dx:dx + nw],
            dtype=np.float32)
  return out


def letterbox_image(rgb: np.ndarray, size: int) -> np.ndarray:
  """float32 [size, size, 3] in [0, 1]: `rgb` (uint8 [h, w, 3]) resized and pasted on grey."""
  return canvas_to_float(*letterbox_uint8(rgb, size))


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


def picture_probabilities(prob: np.ndarray, geometry: Sequence[int], size: int) -> np.ndarray:
  """float32 [nh, nw]: a square map over the canvas, bilinearly resized to size x size and
  cropped to the picture (spec section 6, step 1, first half)."""
  prob = np.asarray(prob, np.float32)
  if prob.ndim != 2 or prob.shape[0] != prob.shape[1]:
    raise ValueError(f"unletterbox needs a square [S, S] map, got {prob.shape}")
  nw, nh, dx, dy = (int(v) for v in geometry)
  if nw < 1 or nh < 1 or dx < 0 or dy < 0 or dx + nw > size or dy + nh > size:
    raise ValueError(f"geometry (nw, nh, dx, dy)={tuple(geometry)} does not fit a {size} canvas")
  full = cv2.resize(prob, (size, size), interpolation=cv2.INTER_LINEAR)
  return full[dy:dy + nh, dx:dx + nw]


def picture_to_original(crop: np.ndarray, orig_hw: Sequence[int]) -> np.ndarray:
  """float32 [h, w]: `picture_probabilities` bilinearly resized to the original image."""
  h, w = (int(v) for v in orig_hw)
  if h < 1 or w < 1:
    raise ValueError(f"original size (h, w)={tuple(orig_hw)} is empty")
  return cv2.resize(crop, (w, h), interpolation=cv2.INTER_LINEAR)


def unletterbox(prob: np.ndarray, geometry: Sequence[int], orig_hw: Sequence[int],
                size: int) -> np.ndarray:
  """float32 [h, w]: a [S, S] map over the letterbox canvas, back on the original image.

  Bilinear resize to size x size, crop the picture region, bilinear resize to (h, w).
  """
  h, w = (int(v) for v in orig_hw)
  if h < 1 or w < 1:
    raise ValueError(f"original size (h, w)={tuple(orig_hw)} is empty")
  return picture_to_original(picture_probabilities(prob, geometry, size), (h, w))
