"""The face test behind TDIR: does a detector still find a face in a (protected) image?

OpenCV's Haar frontal-face cascade with the evaluation's settings (spec section 6), the
paper's detector, so that TDIR compares with the paper.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np

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
