"""Tests for the protection margin: hiding.dilate_mask and protect(..., margin=...)."""

import numpy as np
import pytest

from brppnet_jax.protect import hiding


def random_image(h=60, w=80, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (h, w, 3), np.uint8)


def test_dilate_mask_grows_a_euclidean_disc():
  mask = np.zeros((21, 21), bool)
  mask[10, 10] = True  # Extent 1: margin 3 is a radius of 3 px.
  grown = hiding.dilate_mask(mask, 3)
  yy, xx = np.mgrid[:21, :21]
  np.testing.assert_array_equal(grown, (yy - 10) ** 2 + (xx - 10) ** 2 <= 9)
  assert grown.sum() == 29


def test_dilate_mask_radius_is_a_share_of_the_extent():
  mask = np.zeros((100, 100), bool)
  mask[40:60, 30:70] = True  # Extent 40: margin 0.05 is 2 px, 0.051 rounds up to 3.
  rows = lambda m: np.flatnonzero(m.any(axis=1))
  assert (rows(hiding.dilate_mask(mask, 0.05))[[0, -1]] == [38, 61]).all()
  assert (rows(hiding.dilate_mask(mask, 0.051))[[0, -1]] == [37, 62]).all()


def test_zero_margin_and_empty_mask_return_a_copy():
  mask = np.zeros((10, 10), bool)
  mask[2:4, 2:4] = True
  for m, margin in ((mask, 0), (np.zeros((10, 10), bool), 0.5)):
    out = hiding.dilate_mask(m, margin)
    np.testing.assert_array_equal(out, m)
    assert out is not m
  np.testing.assert_array_equal(hiding.dilate_mask(mask.astype(np.float32) * 0.7, 0), mask)


@pytest.mark.parametrize("method", hiding.METHODS)
@pytest.mark.parametrize("margin", [None, 0, 0.2])
def test_pixels_outside_the_dilated_mask_stay_bit_identical(method, margin):
  image = random_image()
  mask = np.zeros(image.shape[:2], bool)
  mask[20:40, 30:50] = True
  out = hiding.protect(image, mask, method, margin=margin)
  region = hiding.dilate_mask(mask, hiding.DEFAULT_MARGIN if margin is None else margin)
  np.testing.assert_array_equal(out[~region], image[~region])
  assert np.mean(out[region] != image[region]) > 0.5  # Random pixels: nearly all change.


def test_default_margin_widens_what_is_hidden():
  image = random_image()
  mask = np.zeros(image.shape[:2], bool)
  mask[10:50, 20:60] = True  # Extent 40: the default margin 0.05 adds 2 px.
  out = hiding.protect(image, mask, "fill")
  assert hiding.DEFAULT_MARGIN == 0.05
  assert not out[8:52, 20:60].any() and not out[10:50, 18:62].any()
  # Euclidean: the corners round off (the box corner's diagonal neighbour is sqrt(8) away).
  np.testing.assert_array_equal(out[8, 18], image[8, 18])
  np.testing.assert_array_equal(out[:8], image[:8])
  np.testing.assert_array_equal(out[:, :18], image[:, :18])
  np.testing.assert_array_equal(hiding.protect(image, mask, "fill", margin=0)[mask == 0],
                                image[mask == 0])


def test_margin_does_not_change_the_default_strength():
  image = random_image(200, 200)
  mask = np.zeros((200, 200), bool)
  mask[30:90, 20:170] = True  # Extent 150: block 15 before and after the margin.
  np.testing.assert_array_equal(hiding.protect(image, mask, "pixelate", margin=0.1),
                                hiding.protect(image, mask, "pixelate", 15, margin=0.1))


def test_default_method_is_exposed_and_used():
  image = random_image()
  mask = np.zeros(image.shape[:2], bool)
  mask[5:25, 5:25] = True
  assert hiding.DEFAULT_METHOD in hiding.METHODS and hiding.DEFAULT_METHOD != "box10"
  np.testing.assert_array_equal(hiding.protect(image, mask),
                                hiding.protect(image, mask, hiding.DEFAULT_METHOD))


@pytest.mark.parametrize("margin", [-0.1, float("nan"), float("inf"), "0.1", True])
def test_bad_margin_is_rejected(margin):
  mask = np.ones((8, 8), bool)
  with pytest.raises(ValueError, match="margin must be a number >= 0"):
    hiding.protect(random_image(8, 8), mask, margin=margin)
  with pytest.raises(ValueError, match="margin must be a number >= 0"):
    hiding.dilate_mask(mask, margin)


def test_wide_blur_matches_the_full_size_gaussian_closely():
  """Kernels of 105 px and more run at reduced resolution (hiding's docstring)."""
  import cv2  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(1)
  image = cv2.resize(rng.integers(0, 256, (30, 30, 3), np.uint8), (300, 300))
  mask = np.ones((300, 300), bool)
  exact = cv2.GaussianBlur(image, (201, 201), 0, borderType=cv2.BORDER_REFLECT_101)
  fast = hiding.protect(image, mask, "blur", 201, margin=0)
  assert np.abs(fast.astype(int) - exact).max() <= 3
