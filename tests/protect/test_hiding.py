"""Tests for brppnet_jax.protect.hiding: protect, the 10x10 box blur and the face detector."""

import functools

import cv2
import numpy as np
import pytest
from skimage import data as skimage_data

from brppnet_jax.evaluation import faces
from brppnet_jax.protect import hiding

# Where OpenCV's cascade (spec settings) finds skimage's astronaut face: x, y, w, h.
ASTRONAUT_FACE = (176, 66, 97, 97)


@functools.lru_cache(maxsize=1)
def astronaut():
  image = skimage_data.astronaut()
  image.flags.writeable = False  # Any in-place change by protect would raise.
  return image


@functools.lru_cache(maxsize=1)
def astronaut_person_mask():
  """The astronaut's head and upper body, drawn by hand: an ellipse over the head and
  hair (centre (228, 100), half-axes 80 x 95) and a polygon over the suit and arms."""
  mask = np.zeros((512, 512), np.uint8)
  cv2.ellipse(mask, (228, 100), (80, 95), 0, 0, 360, 1, -1)
  body = np.array([[120, 150], [320, 150], [365, 300], [370, 511], [20, 511], [30, 300]])
  cv2.fillPoly(mask, [body.astype(np.int32)], 1)
  return mask.astype(bool)


def assert_outside_unchanged(protected, image, mask):
  """Pixels outside the mask dilated by the default margin are bit-identical."""
  assert protected.dtype == np.uint8 and protected.shape == image.shape
  region = hiding.dilate_mask(mask, hiding.DEFAULT_MARGIN)
  np.testing.assert_array_equal(protected[~region], image[~region])


def test_detector_finds_the_astronaut_face():
  found = faces.detect_faces(astronaut())
  assert len(found) == 1
  x, y, w, h = found[0]
  fx, fy, fw, fh = ASTRONAUT_FACE
  assert abs(x - fx) <= 5 and abs(y - fy) <= 5 and abs(w - fw) <= 5 and abs(h - fh) <= 5


@pytest.mark.parametrize("method", ["pixelate", "blur"])
def test_default_protection_hides_the_face(method):
  image, mask = astronaut(), astronaut_person_mask()
  protected = hiding.protect(image, mask, method)
  assert_outside_unchanged(protected, image, mask)
  assert np.mean(protected[mask] != image[mask]) > 0.5
  assert not faces.has_face(protected)


def test_box10_leaves_the_face_detectable():
  """The original's 10x10 box blur does not defeat the cascade (measured; spec 6)."""
  image, mask = astronaut(), astronaut_person_mask()
  protected = hiding.protect(image, mask, "box10")
  assert_outside_unchanged(protected, image, mask)
  np.testing.assert_array_equal(protected[mask], hiding.box_blur10(image)[mask])
  assert faces.has_face(protected)


def test_fill_blacks_out_only_the_mask():
  image, mask = astronaut(), astronaut_person_mask()
  protected = hiding.protect(image, mask, "fill")
  assert_outside_unchanged(protected, image, mask)
  assert not protected[mask].any()


def test_pixelate_takes_block_means_on_a_grid_at_the_mask_corner():
  r, c = np.mgrid[:5, :5]
  image = np.repeat((10 * r + 2 * c)[..., None], 3, axis=2).astype(np.uint8)
  mask = np.zeros((5, 5), bool)
  mask[1:4, 1:4] = True
  out = hiding.protect(image, mask, "pixelate", 2, margin=0)
  expected = image[..., 0].copy()
  # Blocks start at (1, 1); each takes the mean of all its image pixels, masked or not.
  expected[1:3, 1:3] = np.mean([12, 14, 22, 24])
  expected[1:3, 3] = np.mean([16, 18, 26, 28])
  expected[3, 1:3] = np.mean([32, 34, 42, 44])
  expected[3, 3] = np.mean([36, 38, 46, 48])
  for channel in range(3):
    np.testing.assert_array_equal(out[..., channel], expected)


def test_pixelate_clips_blocks_at_the_image_edge():
  r, c = np.mgrid[:5, :5]
  image = np.repeat((10 * r + 2 * c)[..., None], 3, axis=2).astype(np.uint8)
  mask = np.zeros((5, 5), bool)
  mask[3:, 3:] = True
  out = hiding.protect(image, mask, "pixelate", 3, margin=0)
  assert (out[3:, 3:] == np.mean([36, 38, 46, 48])).all()
  np.testing.assert_array_equal(out[:3], image[:3])


def test_float_mask_protects_from_one_half():
  image = np.full((12, 12, 3), 200, np.uint8)
  mask = np.zeros((12, 12), np.float32)
  mask[:, :6] = 0.49
  mask[:, 6:] = 0.5
  out = hiding.protect(image, mask, "fill", margin=0)
  assert (out[:, :6] == 200).all() and (out[:, 6:] == 0).all()


def test_empty_mask_returns_an_unchanged_copy():
  image = astronaut()
  out = hiding.protect(image, np.zeros((512, 512), bool))
  np.testing.assert_array_equal(out, image)
  assert out is not image and out.flags.writeable


def test_default_strength_follows_the_mask_extent():
  image = np.random.default_rng(0).integers(0, 256, (200, 200, 3), np.uint8)
  mask = np.zeros((200, 200), bool)
  mask[30:90, 20:170] = True  # 150 wide, 60 tall: extent 150.
  np.testing.assert_array_equal(hiding.protect(image, mask),
                                hiding.protect(image, mask, "pixelate", 15))
  np.testing.assert_array_equal(hiding.protect(image, mask, "blur"),
                                hiding.protect(image, mask, "blur", 165))
  small = np.zeros((200, 200), bool)
  small[5:20, 5:12] = True  # Extent 15: the minimum block of 8 applies.
  np.testing.assert_array_equal(hiding.protect(image, small),
                                hiding.protect(image, small, "pixelate", 8))
  assert not np.array_equal(hiding.protect(image, small),
                            hiding.protect(image, small, "pixelate", 2))


def test_box_blur10_window_and_border():
  impulse = np.zeros((40, 40), np.float32)
  impulse[20, 20] = 1.0
  blurred = hiding.box_blur10(impulse)
  rows, cols = np.nonzero(blurred > 1e-6)
  # The window spans offsets -5..+4, so the impulse reaches outputs 16..25.
  assert (rows.min(), rows.max(), cols.min(), cols.max()) == (16, 25, 16, 25)
  np.testing.assert_allclose(blurred[16:26, 16:26], 0.01, rtol=1e-5)
  corner = np.zeros((40, 40), np.float32)
  corner[0, 0] = 1.0
  # Reflect-101: the edge pixel is not repeated, so it is seen once from (0, 0).
  np.testing.assert_allclose(hiding.box_blur10(corner)[0, 0], 0.01, rtol=1e-5)
  constant = np.full((30, 20, 3), 77, np.uint8)
  np.testing.assert_array_equal(hiding.box_blur10(constant), constant)


def test_unknown_method_lists_the_valid_ones():
  with pytest.raises(ValueError, match="'mosaic'.*pixelate, blur, fill, box10"):
    hiding.protect(astronaut(), astronaut_person_mask(), "mosaic")


def test_check_method():
  for method in hiding.METHODS:
    hiding.check_method(method)
  with pytest.raises(ValueError, match="'Blur'.*pixelate, blur, fill, box10"):
    hiding.check_method("Blur")


def test_mask_shape_mismatch_names_both_shapes():
  with pytest.raises(ValueError, match=r"\(100, 512\).*\(512, 512, 3\)"):
    hiding.protect(astronaut(), np.ones((100, 512), bool))


@pytest.mark.parametrize("method,strength,message", [
    ("fill", 5, "takes no strength"),
    ("box10", 10, "takes no strength"),
    ("blur", 10, "must be odd"),
    ("pixelate", 0, "positive int"),
    ("pixelate", 2.5, "positive int"),
])
def test_bad_strength_is_rejected(method, strength, message):
  with pytest.raises(ValueError, match=message):
    hiding.protect(astronaut(), astronaut_person_mask(), method, strength)
  with pytest.raises(ValueError, match=message):  # Also when there is nothing to protect.
    hiding.protect(astronaut(), np.zeros((512, 512), bool), method, strength)


def test_non_uint8_image_is_rejected():
  with pytest.raises(ValueError, match="uint8 RGB"):
    hiding.protect(np.zeros((8, 8, 3), np.float32), np.ones((8, 8), bool))
  with pytest.raises(ValueError, match="uint8 RGB"):
    faces.detect_faces(np.zeros((8, 8), np.uint8))
