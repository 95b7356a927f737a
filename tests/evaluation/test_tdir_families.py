"""TDIR per detector family (metrics.finalize's tdir_<family>; tdir is Haar's)."""

import cv2
import numpy as np
import pytest

from brppnet_jax.evaluation import faces
from brppnet_jax.evaluation import metrics
from brppnet_jax.evaluation import sample_photos


def white_patch_detector(size):
  """A stub face test: a 'face' is a fully white size x size patch."""
  def detect(rgb_uint8):
    white = (rgb_uint8.min(axis=2) == 255).astype(np.uint8)
    return bool(cv2.erode(white, np.ones((size, size))).any())
  return detect


def score(face_box, detectors):
  image = np.full((30, 30, 3), 0.2, np.float32)
  image[face_box] = 1.0
  prob = np.zeros((30, 30), np.float32)
  prob[5:25, 5:25] = 0.9
  gt = prob > 0.5
  return metrics.score_expression(prob, gt.astype(np.uint8), letterboxed_image=image,
                                  prob_letterbox=prob, gt_letterbox=gt,
                                  face_detector=detectors)


def test_each_family_counts_its_own_faces():
  # "haar" sees 3x3 white patches, "dnn" 8x8 ones. The 10x10 blur leaves a 3x3 patch no
  # fully white pixel; a 24x24 one keeps its middle 15x15 white.
  detectors = {"haar": white_patch_detector(3), "dnn": white_patch_detector(8)}
  small = score(np.s_[10:13, 10:13], detectors)  # Only haar sees it; hidden.
  large = score(np.s_[3:27, 3:27], detectors)  # Both see it; both still see it.
  assert small.face_flags == {"haar": (True, False), "dnn": (False, None)}
  assert large.face_flags == {"haar": (True, True), "dnn": (True, True)}
  result = metrics.finalize(metrics.sum_scores([small, large]))
  assert result["tdir_haar"] == result["tdir"] == pytest.approx(0.5)
  assert result["tdir_dnn"] == 0.0
  assert result["tdir_hog"] is None  # Not run.


def test_a_bare_detector_is_the_haar_family():
  s = score(np.s_[10:13, 10:13], white_patch_detector(3))
  assert s.face_flags == {"haar": (True, False)}
  assert (s.face_original, s.face_protected) == (True, False)


def test_unknown_family_is_rejected():
  with pytest.raises(ValueError, match=r"\['yunet'\].*haar, dnn, hog"):
    score(np.s_[10:13, 10:13], {"yunet": white_patch_detector(3)})


def test_real_detectors_on_the_astronaut_with_the_original_box_blur():
  """The 10x10 box blur (the paper's protection) hides the face from no family."""
  if sample_photos.photo_path("astronaut") is None:
    pytest.skip("scikit-image is not installed")
  image = cv2.resize(sample_photos.load("astronaut"), (416, 416), interpolation=cv2.INTER_AREA)
  person = np.zeros((416, 416), bool)
  person[:250, 80:300] = True
  prob = person.astype(np.float32)
  s = metrics.score_expression(
      prob, person.astype(np.uint8), letterboxed_image=image.astype(np.float32) / 255,
      prob_letterbox=prob, gt_letterbox=person, face_detector=faces.DETECTORS)
  assert s.face_flags == {family: (True, True) for family in faces.FAMILIES}
  result = metrics.finalize(metrics.sum_scores([s]))
  assert [result[f"tdir_{f}"] for f in faces.FAMILIES] == [0.0, 0.0, 0.0]
