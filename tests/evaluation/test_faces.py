"""Face detectors and face recognition on the real photos the installed packages ship.

Every method at its default strength and margin, on the tightest mask (the detected face
box enlarged twice): box10 leaves the face to libfacedetection and to recognition; the
others hide it from all three families and leave no descriptor dlib's network matches, and
every pixel outside the mask dilated by the default margin stays bit-identical.
"""

import functools

import numpy as np
import pytest

from brppnet_jax.evaluation import faces
from brppnet_jax.evaluation import reidentification
from brppnet_jax.evaluation import sample_photos
from brppnet_jax.protect import hiding

PHOTOS = tuple(sample_photos.PHOTOS)
HIDING_METHODS = tuple(m for m in hiding.METHODS if m != "box10")


@functools.cache
def photo(name):
  path = sample_photos.photo_path(name)
  if path is None:  # CI fails on a skip (.ci/run lists these tests).
    pytest.skip(f"{sample_photos.PHOTOS[name][0]} is not installed")
  image = sample_photos.load(name)
  image.flags.writeable = False  # Any in-place change by protect would raise.
  return image


@functools.cache
def face_mask(name):
  image = photo(name)
  best = max(faces.detect_faces_dnn(image), key=lambda d: d[4])
  return sample_photos.face_box_mask(best, image.shape[:2])


@functools.cache
def reference(name):
  return reidentification.reference_face(photo(name))


def faces_in(detections, region):
  """Detections whose box centre lies in region."""
  h, w = region.shape
  return [d for d in detections
          if region[min(h - 1, int(d[1] + d[3] / 2)), min(w - 1, int(d[0] + d[2] / 2))]]


@pytest.mark.parametrize("name", PHOTOS)
def test_every_family_finds_the_face_in_the_original(name):
  image = photo(name)
  dnn = [d for d in faces.detect_faces_dnn(image) if d[4] >= faces.DNN_THRESHOLD]
  assert len(dnn) == 1 and dnn[0][4] > 0.85  # One face, scored 0.89 to 0.94.
  region = face_mask(name)
  assert faces_in(dnn, region) == dnn
  # The camera man looks sideways: Haar misses him, HOG scores him below its threshold.
  assert faces.has_face(image) == (name != "camera")
  assert faces.has_face_hog(image) == (name != "camera")
  assert reference(name) is not None
  assert reidentification.distance(reference(name), image) == 0.0


@pytest.mark.parametrize("name", PHOTOS)
@pytest.mark.parametrize("method", HIDING_METHODS)
def test_default_protection_hides_the_face_from_every_family(name, method):
  image, mask = photo(name), face_mask(name)
  protected = hiding.protect(image, mask, method)
  region = hiding.dilate_mask(mask, hiding.DEFAULT_MARGIN)
  np.testing.assert_array_equal(protected[~region], image[~region])
  for family in faces.FAMILIES:  # Anywhere in the protected region.
    assert not faces_in(faces.faces_found(family, protected), region), family
  distance = reidentification.distance(reference(name), protected)
  assert distance > reidentification.SAME_PERSON_DISTANCE
  assert not reidentification.recognisable(reference(name), protected)


@pytest.mark.parametrize("name", PHOTOS)
def test_box10_leaves_a_detectable_and_recognisable_face(name):
  image, mask = photo(name), face_mask(name)
  protected = hiding.protect(image, mask, "box10")
  assert faces.has_face_dnn(protected)
  assert faces.has_face(protected) == (name != "camera")
  assert reidentification.recognisable(reference(name), protected)


def test_dnn_shrinks_large_images_and_scales_boxes_back():
  image = photo("astronaut")
  large = np.repeat(np.repeat(image, 2, axis=0), 2, axis=1)  # 1024 px: over DNN_MAX_SIDE.
  (x, y, w, h, score), = [d for d in faces.detect_faces_dnn(large) if d[4] >= 0.5]
  (x1, y1, w1, h1, _), = [d for d in faces.detect_faces_dnn(image) if d[4] >= 0.5]
  assert score > 0.85
  assert max(abs(x - 2 * x1), abs(y - 2 * y1), abs(w - 2 * w1), abs(h - 2 * h1)) <= 12


def test_no_face_in_a_plain_image():
  grey = np.full((200, 300, 3), 128, np.uint8)
  assert faces.detect_faces_dnn(grey) == []
  assert not any(has_face(grey) for has_face in faces.DETECTORS.values())
  assert reidentification.reference_face(grey) is None


@pytest.mark.parametrize("fn", [faces.detect_faces_dnn, faces.detect_faces_hog,
                                reidentification.reference_face])
def test_non_rgb_input_is_rejected(fn):
  with pytest.raises(ValueError, match="uint8 RGB"):
    fn(np.zeros((8, 8), np.uint8))
  with pytest.raises(ValueError, match="uint8 RGB"):
    fn(np.zeros((8, 8, 3), np.float32))


def test_unknown_family_names_the_known_ones():
  with pytest.raises(KeyError, match="'yunet'.*haar, dnn, hog"):
    faces.faces_found("yunet", photo("astronaut"))


def test_unknown_sample_photo_names_the_known_ones():
  with pytest.raises(KeyError, match="'lena'.*astronaut, grace_hopper, camera"):
    sample_photos.photo_path("lena")
