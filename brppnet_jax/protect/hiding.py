"""Hiding a masked person in an image: pixelate, blur, fill, or the original's 10x10 box blur.

`protect` dilates the mask by a margin, replaces the pixels under it and leaves every other
pixel bit-identical. Default strengths are chosen by measurement to hide the face from three
detector families (OpenCV's Haar cascade with the evaluation's settings, libfacedetection,
dlib's HOG: `evaluation.faces`) and to leave no face descriptor that dlib's recognition
network matches to the person (distance > 0.6, `evaluation.reidentification`), on the real
photos that installed packages ship, with masks from the face box enlarged twice to the
whole person (`python -m brppnet_jax.measure.faces`; BENCHMARKS.md, "Faces").

Sizes follow the mask's bounding box before the margin (extent = max(box width, height)):
- pixelate: block = max(8, ceil(extent / 10)) px. extent / 20 leaves a face that the Haar
  cascade finds on two of the three photos; extent / 10 to extent / 5 pass everywhere.
- blur: Gaussian kernel = the odd number >= max(9, 1.1 * extent); sigma follows OpenCV's
  rule for sigma 0, 0.3 * ((k - 1) / 2 - 1) + 0.8, about 0.16 * extent. extent / 3 (the old
  default) to 0.9 * extent leave a face libfacedetection finds on a face-box mask; extent
  still scores 0.50 on one photo with the default margin; 1.1 * extent is the smallest that
  passed every photo, mask and margin (0, 0.05, 0.1) tried, highest score 0.43.
  Kernels of 105 px and more run on the image shrunk so that sigma stays >= 8 px there,
  then enlarged again: within a few grey levels of the full-size Gaussian, and 0.3 s for a
  3301-px kernel on a 12-megapixel photo (the full-size Gaussian takes 8 s at 301 px).
- margin: `DEFAULT_MARGIN` of the extent, in every direction (`dilate_mask`).

What the methods do not do: pixelation and blur keep a coarse picture of the person, and
models trained to undo them recover part of a face; `fill` removes the pixels. `box10`, the
original's blur, hides the face from no detector family and leaves it recognisable.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

METHODS = ("pixelate", "blur", "fill", "box10")
# The measured choice (BENCHMARKS.md, "Faces"): pixelate, blur and fill all hide the face
# from every detector family and from recognition on every shipped photo; pixelate with the
# widest room (no detector scores above 0.07; blur's libfacedetection scores reach 0.43 of
# 0.5) while keeping the photo's look (SSIM inside 0.36 to 0.52; fill's 0.01 to 0.09).
DEFAULT_METHOD = "pixelate"
# Share of the mask's extent by which `protect` dilates it: a predicted mask that almost fits
# leaves hair and outline just outside. On the synthetic test split 0.05 leaves 6 % of a
# person visible instead of 16 % (BENCHMARKS.md, "What the margin covers").
DEFAULT_MARGIN = 0.05
# The default blur kernel as a share of the extent, and the smallest sigma at which a wide
# blur runs on a reduced image (module docstring).
BLUR_KERNEL_SHARE = 1.1
_BLUR_MIN_SIGMA = 8.0
# The probability at or above which the product hides a pixel: the CLI, the app, the notebook,
# the image grid and the privacy metrics use it; the paper's IoU threshold (0.35,
# metrics.PAPER_THRESHOLD) is for comparing with the paper only. The sweep on the demo's model
# (benchmarks/results/threshold_sweep_demo.json): mIoU 0.740 at 0.35, 0.744 at 0.40-0.45, 0.739
# at 0.5, so mIoU does not choose; at 0.5 pixel precision equals recall (0.836), while 0.35
# hides 6 points more of the person and 5 points more of everyone else (0.897 / 0.787), the
# over-protection the task exists to avoid. 0.5 is also the original's protection rule.
MASK_THRESHOLD = 0.5


def box_blur10(image: np.ndarray) -> np.ndarray:
  """The original's 10x10 box blur, same shape and dtype as `image`.

  Each output pixel is the mean of the 10x10 window at offsets -5..+4 from it (OpenCV's
  anchor for an even kernel); outside the image the window reflects without repeating
  the edge pixel (OpenCV's BORDER_REFLECT_101). uint8 results are rounded.
  """
  image = np.asarray(image)
  if image.ndim not in (2, 3):
    raise ValueError(f"box_blur10 takes an [h, w] or [h, w, c] image, got shape {image.shape}")
  return cv2.blur(image, (10, 10), borderType=cv2.BORDER_REFLECT_101)


def check_method(method: str) -> None:
  """Raises ValueError naming the valid methods if `method` is not one of them."""
  if method not in METHODS:
    raise ValueError(f"unknown protection method {method!r}; valid: {', '.join(METHODS)}")


def dilate_mask(mask: np.ndarray, margin: float) -> np.ndarray:
  """`mask` grown by margin * extent pixels in every direction (Euclidean), as bool.

  extent = max(width, height) of the mask's bounding box; the radius is rounded up, so any
  margin > 0 adds at least one pixel. margin 0 or an empty mask gives the mask (a copy).
  Numbers in `mask` count from MASK_THRESHOLD, as in `protect`.
  """
  _check_margin(margin)
  mask = np.asarray(mask)
  mask = mask if mask.dtype == bool else mask >= MASK_THRESHOLD
  if margin == 0 or not mask.any():
    return mask.copy()
  radius = math.ceil(margin * mask_extent(mask))
  # Each pixel's exact Euclidean distance to the nearest mask pixel.
  outside = np.where(mask, 0, 255).astype(np.uint8)
  return cv2.distanceTransform(outside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE) <= radius


def _check_margin(margin) -> None:
  if (isinstance(margin, bool) or not isinstance(margin, (int, float, np.integer, np.floating))
      or not math.isfinite(margin) or margin < 0):
    raise ValueError(f"margin must be a number >= 0 (share of the mask's size), got {margin!r}")


def protect(image: np.ndarray, mask: np.ndarray, method: str = DEFAULT_METHOD,
            strength: int | None = None, margin: float | None = None) -> np.ndarray:
  """Returns a copy of `image` with the pixels under the dilated `mask` hidden.

  Args:
    image: uint8 RGB [h, w, 3]; not modified.
    mask: [h, w] bool, or numbers (probabilities) where >= MASK_THRESHOLD means protect.
    method: "pixelate" (each block of a grid anchored at the mask's bounding box takes
      the rounded mean colour of all the image pixels in that block), "blur" (Gaussian),
      "fill" (black) or "box10" (the original's 10x10 box blur; too weak to hide a face,
      kept for comparison).
    strength: pixelate block size or blur kernel size (odd) in pixels; None picks the
      default from the mask's size before the margin (module docstring). fill and box10
      take none.
    margin: share of the mask's extent by which it is dilated first (`dilate_mask`); None
      is DEFAULT_MARGIN, 0 hides exactly the mask.
  """
  check_method(method)
  image = np.asarray(image)
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
    raise ValueError(
        f"protect takes a uint8 RGB image [h, w, 3], got {image.dtype} {image.shape}")
  mask = np.asarray(mask)
  if mask.shape != image.shape[:2]:
    raise ValueError(
        f"mask shape {mask.shape} does not match image shape {image.shape} (want [h, w])")
  mask = mask if mask.dtype == bool else mask >= MASK_THRESHOLD
  _check_strength(method, strength)
  margin = DEFAULT_MARGIN if margin is None else margin
  _check_margin(margin)
  out = image.copy()
  if not mask.any():
    return out
  if strength is None and method == "pixelate":
    strength = _default_block(mask)
  elif strength is None and method == "blur":
    strength = _default_kernel(mask)
  mask = dilate_mask(mask, margin)
  if method == "pixelate":
    replacement = _pixelate(image, mask, strength)
  elif method == "blur":
    replacement = _gaussian_blur(image, strength)
  elif method == "fill":
    replacement = np.zeros_like(image)
  else:
    replacement = box_blur10(image)
  out[mask] = replacement[mask]
  return out


def _check_strength(method: str, strength) -> None:
  if strength is None:
    return
  if method in ("fill", "box10"):
    raise ValueError(f"method {method!r} takes no strength, got {strength!r}")
  if not isinstance(strength, (int, np.integer)) or isinstance(strength, bool) or strength < 1:
    raise ValueError(f"{method} strength must be a positive int (pixels), got {strength!r}")
  if method == "blur" and strength % 2 == 0:
    raise ValueError(f"blur strength (kernel size) must be odd, got {strength}")


def mask_extent(mask: np.ndarray) -> int:
  """max(width, height) of the mask's bounding box."""
  rows = np.flatnonzero(mask.any(axis=1))
  cols = np.flatnonzero(mask.any(axis=0))
  return int(max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1))


def _default_block(mask: np.ndarray) -> int:
  return max(8, math.ceil(mask_extent(mask) / 10))


def _default_kernel(mask: np.ndarray) -> int:
  k = max(9, math.ceil(mask_extent(mask) * BLUR_KERNEL_SHARE))
  return k if k % 2 else k + 1


def _pixelate(image: np.ndarray, mask: np.ndarray, block: int) -> np.ndarray:
  """Block means over a grid anchored at the mask's bounding-box corner.

  Only the blocks covering the bounding box are computed; the rest of the returned image
  is the input (the caller only reads pixels under the mask).
  """
  rows = np.flatnonzero(mask.any(axis=1))
  cols = np.flatnonzero(mask.any(axis=0))
  y0, x0 = rows[0], cols[0]
  h, w = mask.shape
  # Whole blocks over the box, clipped to the image (the last ones may be partial).
  y1 = min(h, y0 + math.ceil((rows[-1] + 1 - y0) / block) * block)
  x1 = min(w, x0 + math.ceil((cols[-1] + 1 - x0) / block) * block)
  region = image[y0:y1, x0:x1].astype(np.float64)
  row_starts = np.arange(0, y1 - y0, block)
  col_starts = np.arange(0, x1 - x0, block)
  sums = np.add.reduceat(np.add.reduceat(region, row_starts, axis=0), col_starts, axis=1)
  row_sizes = np.diff(np.append(row_starts, y1 - y0))
  col_sizes = np.diff(np.append(col_starts, x1 - x0))
  means = sums / (row_sizes[:, None, None] * col_sizes[None, :, None])
  blocks = np.rint(means).astype(np.uint8)
  out = image.copy()
  out[y0:y1, x0:x1] = np.repeat(np.repeat(blocks, row_sizes, axis=0), col_sizes, axis=1)
  return out


def _gaussian_blur(image: np.ndarray, kernel: int) -> np.ndarray:
  """OpenCV's Gaussian of this kernel size; wide ones on a reduced image (docstring)."""
  sigma = 0.3 * ((kernel - 1) / 2 - 1) + 0.8  # OpenCV's rule for sigma 0.
  factor = int(sigma // _BLUR_MIN_SIGMA)
  if factor < 2:
    return cv2.GaussianBlur(image, (int(kernel), int(kernel)), 0,
                            borderType=cv2.BORDER_REFLECT_101)
  h, w = image.shape[:2]
  small = cv2.resize(image, (-(-w // factor), -(-h // factor)), interpolation=cv2.INTER_AREA)
  small = cv2.GaussianBlur(small, (0, 0), sigma / factor, borderType=cv2.BORDER_REFLECT_101)
  return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
