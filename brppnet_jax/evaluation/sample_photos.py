"""The real photos with faces that installed packages ship, and person masks drawn on them.

The face and re-identification checks (tests, `measure.faces`) run on these: skimage's
astronaut (Eileen Collins) and camera (a man filming, grey), matplotlib's Grace Hopper.
Files are found without importing their package; a photo whose package is missing is left
out of `available()` (scikit-image is a test-only requirement). Each photo has two masks: a
hand-drawn person mask (head and body, as a segmentation would give) and the tightest that
still protects, the detected face box enlarged twice about its centre (`face_box_mask`).
"""

from __future__ import annotations

import importlib.util
import os

import cv2
import numpy as np
from PIL import Image

# name -> (package, file inside the package folder).
PHOTOS = {
    "astronaut": ("skimage", "data/astronaut.png"),
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
    "camera": ("skimage", "data/camera.png"),
}
# Hand-drawn person masks: (ellipse over head and hair: centre, half-axes), body polygon.
_PERSON_SHAPES = {
    "astronaut": (((228, 100), (80, 95)),
                  [(120, 150), (320, 150), (365, 300), (370, 511), (20, 511), (30, 300)]),
    "grace_hopper": (((262, 200), (120, 165)),
                     [(150, 320), (380, 320), (480, 400), (511, 599), (20, 599), (40, 400)]),
    "camera": (((215, 135), (60, 75)),
               [(150, 110), (240, 170), (320, 180), (330, 250), (260, 300), (170, 511),
                (0, 511), (0, 200), (80, 140)]),
}
MASK_KINDS = ("face_box", "person")


def photo_path(name: str) -> str | None:
  """The file of photo `name`, or None if its package is not installed."""
  if name not in PHOTOS:
    raise KeyError(f"unknown sample photo {name!r}; known: {', '.join(PHOTOS)}")
  package, relative = PHOTOS[name]
  spec = importlib.util.find_spec(package)
  if spec is None or not spec.submodule_search_locations:
    return None
  path = os.path.join(list(spec.submodule_search_locations)[0], relative)
  return path if os.path.exists(path) else None


def available() -> list[str]:
  """Names of the photos whose files are installed."""
  return [name for name in PHOTOS if photo_path(name) is not None]


def load(name: str) -> np.ndarray:
  """Photo `name` as uint8 RGB [h, w, 3] (the grey one repeated over three channels)."""
  path = photo_path(name)
  if path is None:
    raise FileNotFoundError(f"sample photo {name!r} needs the {PHOTOS[name][0]} package")
  with Image.open(path) as image:
    return np.asarray(image.convert("RGB"))


def person_mask(name: str, shape: tuple[int, int]) -> np.ndarray:
  """The hand-drawn [h, w] bool mask of the person in photo `name`."""
  (centre, axes), body = _PERSON_SHAPES[name]
  mask = np.zeros(shape, np.uint8)
  cv2.ellipse(mask, centre, axes, 0, 0, 360, 1, -1)
  cv2.fillPoly(mask, [np.array(body, np.int32)], 1)
  return mask.astype(bool)


def face_box_mask(box: tuple[int, int, int, int], shape: tuple[int, int],
                  scale: float = 2.0) -> np.ndarray:
  """A square of side scale * max(w, h) about the centre of box (x, y, w, h), clipped."""
  x, y, w, h = box[:4]
  cx, cy, half = x + w / 2, y + h / 2, scale * max(w, h) / 2
  mask = np.zeros(shape, bool)
  mask[max(0, round(cy - half)):max(0, round(cy + half)),
       max(0, round(cx - half)):max(0, round(cx + half))] = True
  return mask
