"""Letterbox geometry, image and mask pre-processing (spec section 2) and its inverse
(section 6)."""

import cv2
import numpy as np
import pytest

from brppnet_jax.data import letterbox


@pytest.mark.parametrize("w, h, expected", [
    (640, 480, (416, 312, 0, 52)),
    (480, 640, (312, 416, 52, 0)),
    (427, 640, (277, 416, 69, 0)),  # int() truncates 277.55.
    (640, 427, (416, 277, 0, 69)),
    (612, 612, (416, 416, 0, 0)),
    (100, 50, (416, 208, 0, 104)),  # Upscaled.
])
def test_geometry(w, h, expected):
  assert letterbox.letterbox_geometry(w, h, 416) == expected


def test_geometry_rejects_an_image_too_thin_to_keep_a_row():
  with pytest.raises(ValueError, match="1000x1 pixels is too thin"):
    letterbox.letterbox_geometry(1000, 1, 416)


def test_image_is_scaled_colour_on_a_grey_canvas():
  rgb = np.full((480, 640, 3), (10, 128, 250), np.uint8)
  out = letterbox.letterbox_image(rgb, 416)
  assert out.shape == (416, 416, 3) and out.dtype == np.float32
  np.testing.assert_array_equal(out[:52], 0.5)
  np.testing.assert_array_equal(out[364:], 0.5)
  np.testing.assert_array_equal(out[52:364], np.broadcast_to(
      np.float32([10, 128, 250]) / np.float32(255), (312, 416, 3)))


def test_image_keeps_rgb_order_and_left_right():
  rgb = np.zeros((300, 400, 3), np.uint8)
  rgb[:, :200, 0] = 255  # Left half red.
  out = letterbox.letterbox_image(rgb, 32)  # (32, 24, 0, 4)
  np.testing.assert_array_equal(out[4:28, :14], np.broadcast_to([1, 0, 0], (24, 14, 3)))
  np.testing.assert_array_equal(out[4:28, 18:], 0)


def test_image_rejects_non_uint8_rgb():
  with pytest.raises(ValueError, match=r"uint8 \[h, w, 3\], got float32 \(4, 4\)"):
    letterbox.letterbox_image(np.zeros((4, 4), np.float32), 8)


def test_mask_hand_checked_case():
  # 8x4 mask into 8x8: no scaling, rows 2..5 of the canvas; stride 2 keeps rows and columns
  # 1, 3, 5, 7 of the canvas, i.e. mask rows 1 and 3 and odd columns.
  mask = np.zeros((4, 8), np.uint8)
  mask[0, ::2] = 255  # Never sampled (canvas row 2, even columns).
  mask[1] = [0, 255, 0, 51, 0, 0, 0, 255]
  mask[2] = 255  # Canvas row 4: not sampled.
  mask[3] = [0, 0, 0, 255, 0, 255, 0, 0]
  out = letterbox.letterbox_mask(mask, 8, 2)
  np.testing.assert_array_equal(out, np.float32([
      [0, 0, 0, 0],
      [1, 0.2, 0, 1],
      [0, 1, 1, 0],
      [0, 0, 0, 0]]))


@pytest.mark.parametrize("stride, first, last", [(2, 26, 181), (4, 13, 90), (8, 6, 44)])
def test_full_mask_covers_exactly_the_picture_rows(stride, first, last):
  # 640x480 -> rows 52..363 of 416; kept rows are stride // 2 + k * stride.
  out = letterbox.letterbox_mask(np.full((480, 640), 255, np.uint8), 416, stride)
  assert out.shape == (416 // stride, 416 // stride) and out.dtype == np.float32
  rows = np.flatnonzero(out.any(axis=1))
  assert (rows[0], rows[-1]) == (first, last)
  np.testing.assert_array_equal(out[first:last + 1], 1.0)
  assert out.sum() == (last - first + 1) * (416 // stride)


def test_mask_edges_are_soft_and_within_unit_range():
  mask = np.zeros((480, 640), np.uint8)
  cv2.circle(mask, (320, 240), 150, 255, -1)
  out = letterbox.letterbox_mask(mask, 416, 2)
  assert out.min() == 0.0 and out.max() == 1.0
  assert np.any((out > 0) & (out < 1))


def test_mask_rejects_size_not_divisible_by_stride():
  with pytest.raises(ValueError, match="416 is not a multiple of the mask stride 3"):
    letterbox.letterbox_mask(np.zeros((4, 4), np.uint8), 416, 3)


def _iou(a, b):
  return np.logical_and(a, b).sum() / np.logical_or(a, b).sum()


@pytest.mark.parametrize("w, h", [(640, 480), (480, 640), (300, 700), (700, 150), (612, 612),
                                  (120, 90)])
@pytest.mark.parametrize("stride", [2, 4])
def test_unletterbox_recovers_the_mask(w, h, stride):
  mask = np.zeros((h, w), np.uint8)
  cv2.ellipse(mask, (w // 2, h // 2), (w // 3, h // 4), 30, 0, 360, 255, -1)
  small = letterbox.letterbox_mask(mask, 416, stride)
  back = letterbox.unletterbox(small, letterbox.letterbox_geometry(w, h, 416), (h, w), 416)
  assert back.shape == (h, w) and back.dtype == np.float32
  assert _iou(back > 0.5, mask > 0) > 0.95


def test_unletterbox_of_a_constant_map_is_constant():
  out = letterbox.unletterbox(np.full((208, 208), 0.25), (312, 416, 52, 0), (640, 480), 416)
  assert out.shape == (640, 480)
  np.testing.assert_allclose(out, 0.25, atol=1e-6)


def test_unletterbox_crops_the_picture_region():
  # Probability 1 on the grey bands only: nothing of it comes back inside the picture.
  prob = np.ones((208, 208), np.float32)
  prob[30:178] = 0.0  # Canvas rows 60..355, inside the picture rows 52..363.
  out = letterbox.unletterbox(prob, (416, 312, 0, 52), (480, 640), 416)
  assert out[40:440].max() == 0.0
  assert out[0].min() > 0.5 and out[-1].min() > 0.5


def test_unletterbox_rejects_geometry_outside_the_canvas():
  with pytest.raises(ValueError, match="does not fit a 416 canvas"):
    letterbox.unletterbox(np.zeros((208, 208)), (416, 312, 10, 52), (480, 640), 416)


def test_uint8_letterbox_carries_the_picture_and_where_it_is():
  rgb = np.random.default_rng(0).integers(0, 256, (480, 640, 3), np.uint8)
  image, geometry = letterbox.letterbox_uint8(rgb, 416)
  assert image.dtype == np.uint8 and geometry == (416, 312, 0, 52)
  np.testing.assert_array_equal(image[:52], letterbox.CANVAS_UINT8)
  np.testing.assert_array_equal(
      image[52:364], cv2.resize(rgb, (416, 312), interpolation=cv2.INTER_CUBIC))
  as_float = letterbox.canvas_to_float(image, geometry)
  np.testing.assert_array_equal(as_float[:52], 0.5)  # Exactly, though 128 / 255 is not 0.5.
  np.testing.assert_array_equal(as_float[52:364], image[52:364] / np.float32(255))
  np.testing.assert_array_equal(letterbox.canvas_to_float(image, (0, 0, 0, 0)), 0.5)
