"""Can a protected person still be recognised? dlib's face-recognition network decides.

`reference_face` finds the face in the original photo (dlib's HOG detector), fits dlib's
five-point landmarks and computes the network's 128-d descriptor. `distance` computes the
descriptor of the same region after protection and returns its Euclidean distance to the
original's; the network was trained so that two photos of one person lie closer than
`SAME_PERSON_DISTANCE` (dlib's own threshold, 0.6). An attacker who knows where the face
was gets the better (smaller) of two alignments: the original's landmarks, and landmarks
fitted anew on the protected image inside the original's face box.

For scale (measured, BENCHMARKS.md): the three shipped photos of different people lie 0.70
to 0.81 apart, and a black region where the face was lies 0.68 to 0.80 from the face.

The models come from the `face-recognition-models` package; its `__init__` needs
`pkg_resources`, which setuptools 81+ removed, so the files are located without importing it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import threading

import dlib
import numpy as np

SAME_PERSON_DISTANCE = 0.6
LANDMARKS_FILE = "shape_predictor_5_face_landmarks.dat"
RECOGNITION_FILE = "dlib_face_recognition_resnet_model_v1.dat"
# The reference face: dlib's HOG detector, upsampled once, with a threshold below its own
# 0 so that a harder face (the profile in skimage's camera photo scores -0.11) still counts.
REFERENCE_UPSAMPLE = 1
REFERENCE_MIN_SCORE = -0.5

_thread_state = threading.local()


def models_dir() -> str:
  """The folder of dlib's model files inside the installed `face-recognition-models`."""
  spec = importlib.util.find_spec("face_recognition_models")
  if spec is None or not spec.submodule_search_locations:
    raise RuntimeError("the face-recognition-models package is not installed "
                       "(pip install -r requirements.txt)")
  return os.path.join(list(spec.submodule_search_locations)[0], "models")


def _models():
  """This thread's detector, landmark model and recognition network."""
  if not hasattr(_thread_state, "network"):
    folder = models_dir()
    _thread_state.detector = dlib.get_frontal_face_detector()
    _thread_state.landmarks = dlib.shape_predictor(os.path.join(folder, LANDMARKS_FILE))
    _thread_state.network = dlib.face_recognition_model_v1(
        os.path.join(folder, RECOGNITION_FILE))
  return _thread_state.detector, _thread_state.landmarks, _thread_state.network


@dataclasses.dataclass(frozen=True)
class Reference:
  """A face of the original photo: its box, landmarks and descriptor."""
  box: tuple[int, int, int, int]  # left, top, right, bottom (dlib's rectangle).
  landmarks: tuple[tuple[int, int], ...]  # Five (x, y) points.
  descriptor: np.ndarray  # [128] float64.


def _check_rgb(image: np.ndarray) -> np.ndarray:
  image = np.asarray(image)
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
    raise ValueError(f"face re-identification takes a uint8 RGB image [h, w, 3], "
                     f"got {image.dtype} {image.shape}")
  return np.ascontiguousarray(image)


def reference_face(image: np.ndarray) -> Reference | None:
  """The highest-scoring face of `image` with its descriptor; None if there is none."""
  image = _check_rgb(image)
  detector, landmarks, network = _models()
  rects, scores, _ = detector.run(image, REFERENCE_UPSAMPLE, REFERENCE_MIN_SCORE)
  if not len(rects):
    return None
  rect = rects[int(np.argmax(scores))]
  shape = landmarks(image, rect)
  return Reference(
      box=(rect.left(), rect.top(), rect.right(), rect.bottom()),
      landmarks=tuple((p.x, p.y) for p in shape.parts()),
      descriptor=np.asarray(network.compute_face_descriptor(image, shape), np.float64))


def distance(reference: Reference, protected: np.ndarray) -> float:
  """Descriptor distance between the reference face and the same region of `protected`.

  The smaller of the two alignments in the module docstring.
  """
  protected = _check_rgb(protected)
  _, landmarks, network = _models()
  rect = dlib.rectangle(*reference.box)
  original = dlib.full_object_detection(rect, [dlib.point(x, y) for x, y in reference.landmarks])
  refitted = landmarks(protected, rect)
  return min(float(np.linalg.norm(
      np.asarray(network.compute_face_descriptor(protected, shape)) - reference.descriptor))
             for shape in (original, refitted))


def recognisable(reference: Reference, protected: np.ndarray) -> bool:
  """Whether the protected region still passes for the same person (distance < 0.6)."""
  return distance(reference, protected) < SAME_PERSON_DISTANCE
