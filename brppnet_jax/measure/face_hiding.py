"""Face detector scores, recognition distance and SSIM of protected photos (`measure.faces`).

The library part of `python -m brppnet_jax.measure.faces`: its docstring says what is measured.
"""

from __future__ import annotations

import os

import cv2
import dlib
import numpy as np
from skimage import metrics as skimage_metrics

from brppnet_jax.evaluation import faces
from brppnet_jax.evaluation import reidentification
from brppnet_jax.evaluation import sample_photos
from brppnet_jax.protect import hiding

SWEEP_SHARES = {"pixelate": (1 / 20, 1 / 10, 1 / 5), "blur": (1 / 3, 2 / 3, 0.8, 0.9, 1.0, 4 / 3)}
FAMILIES = ("haar", "dnn", "hog", "mmod", "centerface")
# Thresholds at which each family reports a face (the others are in evaluation.faces).
MMOD_THRESHOLD = 0.0
CENTERFACE_THRESHOLD = 0.5
CENTERFACE_OUTPUTS = ["537"]  # The heatmap; its peak is the best face score.


class Detectors:
  """The detector families, each returning its best score centred in a region."""

  def __init__(self, centerface_onnx: str | None, mmod: bool):
    self._centerface_onnx, self._nets = centerface_onnx, {}
    self._mmod = dlib.cnn_face_detection_model_v1(os.path.join(
        reidentification.models_dir(), "mmod_human_face_detector.dat")) if mmod else None

  def scores(self, image: np.ndarray, region: np.ndarray) -> dict:
    out = {"haar": _best([(*b, 1.0) for b in faces.detect_faces(image)], region),
           "dnn": _best(faces.detect_faces_dnn(image), region),
           "hog": _best(faces.detect_faces_hog(image), region, floor=-1.0)}
    if self._mmod is not None:
      found = self._mmod(np.ascontiguousarray(image), 0)
      out["mmod"] = _best([(d.rect.left(), d.rect.top(), d.rect.width(), d.rect.height(),
                            d.confidence) for d in found], region, floor=-1.0)
    if self._centerface_onnx:
      out["centerface"] = self._centerface(image, region)
    return out

  def _centerface(self, image, region) -> float:
    h, w = image.shape[:2]
    size = (-(-w // 32) * 32, -(-h // 32) * 32)  # The network wants multiples of 32.
    if size not in self._nets:
      self._nets[size] = cv2.dnn.readNetFromONNX(self._centerface_onnx)
    net = self._nets[size]
    net.setInput(cv2.dnn.blobFromImage(image, 1.0, size, (0, 0, 0), swapRB=False, crop=False))
    heat = net.forward(CENTERFACE_OUTPUTS)[0][0, 0]
    cells = cv2.resize(cv2.resize(region.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST),
                       heat.shape[::-1], interpolation=cv2.INTER_NEAREST).astype(bool)
    return float(heat[cells].max()) if cells.any() else 0.0


def _best(detections, region, floor: float = 0.0) -> float:
  """The highest score among detections whose box centre lies in `region`, else floor."""
  h, w = region.shape
  best = floor
  for x, y, bw, bh, score in detections:
    cy, cx = min(h - 1, int(y + bh / 2)), min(w - 1, int(x + bw / 2))
    if region[max(0, cy), max(0, cx)]:
      best = max(best, float(score))
  return best


def found(scores: dict) -> dict:
  """Per family: does its score reach the family's threshold?"""
  thresholds = {"haar": 1.0, "dnn": faces.DNN_THRESHOLD, "hog": faces.HOG_THRESHOLD,
                "mmod": MMOD_THRESHOLD, "centerface": CENTERFACE_THRESHOLD}
  return {k: bool(v >= thresholds[k]) for k, v in scores.items()}


def ssim_inside(original: np.ndarray, protected: np.ndarray, region: np.ndarray) -> float:
  """Mean SSIM map (grey, 11x11 Gaussian window, sigma 1.5) over the region's pixels."""
  gray = lambda im: cv2.cvtColor(im, cv2.COLOR_RGB2GRAY)
  _, ssim_map = skimage_metrics.structural_similarity(
      gray(original), gray(protected), gaussian_weights=True, sigma=1.5,
      use_sample_covariance=False, data_range=255, full=True)
  return float(ssim_map[region].mean())


def measure_case(detectors, image, reference, mask, method, strength, margin) -> dict:
  protected = hiding.protect(image, mask, method, strength, margin=margin)
  region = hiding.dilate_mask(mask, margin)
  scores = detectors.scores(protected, region)
  return {"method": method, "strength": strength, "margin": margin,
          "scores": scores, "found": found(scores),
          "distance": reidentification.distance(reference, protected),
          "ssim_inside": ssim_inside(image, protected, region),
          "changed": float(np.mean(protected[region] != image[region]))}


def measure_photo(detectors, name: str, sweep: bool) -> list[dict]:
  image = sample_photos.load(name)
  reference = reidentification.reference_face(image)
  face = max(faces.detect_faces_dnn(image), key=lambda d: d[4])
  masks = {"face_box": sample_photos.face_box_mask(face, image.shape[:2]),
           "person": sample_photos.person_mask(name, image.shape[:2])}
  rows = []
  for kind, mask in masks.items():
    extent = hiding.mask_extent(mask)
    base = {"photo": name, "mask": kind, "extent": extent}
    original = detectors.scores(image, mask)
    rows.append({**base, "method": "none", "scores": original, "found": found(original)})
    cases = [(m, None, g) for m in hiding.METHODS for g in (0.0, hiding.DEFAULT_MARGIN)]
    if sweep:
      cases += [(m, _strength(m, share * extent), 0.0)
                for m, shares in SWEEP_SHARES.items() for share in shares]
    for method, strength, margin in cases:
      rows.append({**base, **measure_case(detectors, image, reference, mask, method, strength,
                                          margin)})
      print(format_row(rows[-1]), flush=True)
  return rows


def _strength(method: str, pixels: float) -> int:
  value = max(1, round(pixels))
  return value + 1 if method == "blur" and value % 2 == 0 else value


def format_row(row: dict) -> str:
  scores = " ".join(f"{row['scores'].get(k, float('nan')):6.2f}" for k in FAMILIES)
  tail = "" if row["method"] == "none" else (
      f"{row['distance']:6.3f} {row['ssim_inside']:6.3f}")
  strength = "default" if row.get("strength") is None else row["strength"]
  return (f"{row['photo']:<13}{row['mask']:<9}{row['method']:<9}{strength!s:>8}"
          f"{row.get('margin', 0):6.2f} {scores} {tail}")


def header() -> str:
  return (f"{'photo':<13}{'mask':<9}{'method':<9}{'strength':>8}{'margin':>6} "
          + " ".join(f"{k[:6]:>6}" for k in FAMILIES) + f" {'dist':>6} {'ssim':>6}")
