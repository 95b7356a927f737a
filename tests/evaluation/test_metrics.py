"""Tests for brppnet_jax.evaluation.metrics against hand-computed cases (spec section 6)."""

import math

import cv2
import numpy as np
import pytest
from skimage import data as skimage_data
from skimage.metrics import structural_similarity

from brppnet_jax.evaluation import faces
from brppnet_jax.evaluation import metrics
from brppnet_jax.protect import hiding

KEYS = {"miou", "oiou", "miou_protected", "oiou_protected",
        "prec@0.5", "prec@0.6", "prec@0.7", "prec@0.8", "prec@0.9", "tdir",
        "tdir_haar", "tdir_dnn", "tdir_hog", "ssim", "psnr", "precision", "recall", "f1",
        "accuracy", "num_expressions"}


def row_masks(pred_pixels, gt_pixels, width=10):
  """A 1-row probability map and mask: the first pixels of each are on (nested)."""
  prob = np.zeros((1, width), np.float32)
  prob[0, :pred_pixels] = 0.9
  gt = np.zeros((1, width), np.uint8)
  gt[0, :gt_pixels] = 255
  return prob, gt


def finalize_all(scores):
  return metrics.finalize(metrics.sum_scores(scores))


def test_iou_of_known_masks():
  prob = np.array([[0.9, 0.36, 0.35, 0.1],
                   [0.5, 0.0, 0.0, 0.0]], np.float32)
  gt = np.array([[0, 255, 255, 0],
                 [1, 1, 0, 0]], np.uint8)
  s = metrics.score_expression(prob, gt)
  # Predicted (> 0.35, strictly): (0,0), (0,1), (1,0). Person: (0,1), (0,2), (1,0), (1,1).
  assert (s.intersection, s.union) == (2, 5)
  assert s.iou == pytest.approx(0.4)
  assert s.ssim is None and s.face_original is None


def test_the_protected_iou_scores_the_mask_the_product_hides():
  prob = np.array([[0.9, 0.6, 0.4, 0.2]], np.float32)
  gt = np.array([[255, 255, 255, 0]], np.uint8)
  s = metrics.score_expression(prob, gt, thresh=0.35, mask_threshold=0.5)
  assert (s.intersection, s.union, s.iou) == (3, 3, 1.0)  # The paper's: prob > 0.35.
  assert (s.intersection_protected, s.union_protected) == (2, 3)  # Hidden: prob >= 0.5.
  result = finalize_all([s, metrics.score_expression(prob, np.zeros_like(gt))])
  assert result["miou"] == pytest.approx((1.0 + 0.0) / 2)
  assert result["miou_protected"] == pytest.approx((2 / 3 + 0.0) / 2)
  assert result["oiou_protected"] == pytest.approx(2 / 5)
  assert metrics.score_expression(prob, gt).iou_protected == pytest.approx(
      np.count_nonzero(prob[0, :3] >= hiding.MASK_THRESHOLD) / 3)


def test_empty_prediction_of_empty_mask_has_iou_one():
  prob, gt = row_masks(0, 0)
  s = metrics.score_expression(prob, gt)
  assert (s.iou, s.intersection, s.union) == (1.0, 0, 0)
  result = finalize_all([s])
  assert result["miou"] == 1.0 and result["oiou"] == 1.0 and result["prec@0.9"] == 1.0
  missed = metrics.score_expression(*row_masks(0, 3))
  assert (missed.iou, missed.intersection, missed.union) == (0.0, 0, 3)


def test_prec_counts_iou_strictly_above_the_threshold():
  # IoUs 1/2, 3/4, 2/2, 9/10 and 1/4 (prediction nested inside the ground truth).
  cases = [(1, 2), (3, 4), (2, 2), (9, 10), (1, 4)]
  scores = [metrics.score_expression(*row_masks(p, g)) for p, g in cases]
  assert [s.iou for s in scores] == [0.5, 0.75, 1.0, 0.9, 0.25]
  result = finalize_all(scores)
  assert result["prec@0.5"] == pytest.approx(3 / 5)  # 0.5 itself does not count.
  assert result["prec@0.6"] == pytest.approx(3 / 5)
  assert result["prec@0.7"] == pytest.approx(3 / 5)
  assert result["prec@0.8"] == pytest.approx(2 / 5)
  assert result["prec@0.9"] == pytest.approx(1 / 5)  # Nor does 0.9.
  assert result["miou"] == pytest.approx(3.4 / 5)
  assert result["oiou"] == pytest.approx(16 / 22)
  assert result["num_expressions"] == 5


def test_oiou_and_miou_differ_on_unequal_sizes():
  # A small person half found (5 of 10 px) and a large one mostly found (90 of 100 px).
  small = metrics.score_expression(*row_masks(5, 10, width=10))
  large = metrics.score_expression(*row_masks(90, 100, width=100))
  result = finalize_all([small, large])
  assert result["miou"] == pytest.approx((0.5 + 0.9) / 2)
  assert result["oiou"] == pytest.approx((5 + 90) / (10 + 100))


def test_finalize_keys_and_missing_privacy_metrics_are_none():
  result = finalize_all([metrics.score_expression(*row_masks(1, 2))])
  assert set(result) == KEYS
  for key in ("tdir", "ssim", "psnr", "precision", "recall", "f1", "accuracy"):
    assert result[key] is None


def test_ssim_of_identical_images_is_one():
  image = np.random.default_rng(0).random((30, 40, 3))
  assert metrics.ssim(image, image) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_ssim_matches_skimage_on_the_valid_region(seed):
  rng = np.random.default_rng(seed)
  a = cv2.GaussianBlur(rng.random((37, 52, 3)), (5, 5), 0)
  b = np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1)
  gray = lambda x: 255 * (0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2])
  _, ssim_map = structural_similarity(
      gray(a), gray(b), gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
      data_range=255, full=True)
  expected = ssim_map[5:-5, 5:-5].mean()
  assert 0.1 < expected < 0.9
  assert metrics.ssim(a, b) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_ssim_rejects_images_smaller_than_the_window():
  with pytest.raises(ValueError, match="at least 11x11"):
    metrics.ssim(np.zeros((10, 40, 3)), np.zeros((10, 40, 3)))


def test_psnr_known_values():
  zeros = np.zeros((8, 8, 3))
  assert metrics.psnr(zeros, zeros + 0.1) == pytest.approx(20.0)
  assert metrics.psnr(zeros, zeros + 0.5) == pytest.approx(10 * math.log10(4))
  assert metrics.psnr(zeros, zeros) == 100.0
  assert metrics.psnr(zeros, zeros + 3e-6) == 100.0  # MSE 9e-12 < 1e-10.
  assert metrics.psnr(zeros, zeros + 2e-5) == pytest.approx(10 * math.log10(1 / 4e-10))


def test_pixel_scores_zero_over_zero():
  assert metrics.pixel_scores(0, 0, 0, 5) == (1.0, 1.0, 1.0, 1.0)
  assert metrics.pixel_scores(0, 0, 3, 2) == (0.0, 0.0, 0.0, 0.4)
  assert metrics.pixel_scores(0, 2, 0, 3) == (0.0, 0.0, 0.0, 0.6)
  assert metrics.pixel_scores(3, 1, 2, 4) == pytest.approx((0.75, 0.6, 6 / 9, 0.7))


def privacy_case(pred_box, gt_box, shape=(20, 30), value=0.5, image=None):
  """Scores an expression whose letterbox crop has box-shaped prediction and person."""
  if image is None:
    image = np.full(shape + (3,), value, np.float32)
  prob = np.zeros(shape, np.float32)
  prob[pred_box] = 0.8
  gt = np.zeros(shape, np.float32)
  gt[gt_box] = 1.0
  return metrics.score_expression(prob, (gt * 255).astype(np.uint8), letterboxed_image=image,
                                  prob_letterbox=prob, gt_letterbox=gt)


def test_pixel_counts_and_accuracy_use_the_real_pixels():
  # 20x30 = 600 pixels; prediction rows 0-9 x cols 0-9, person rows 5-14 x cols 0-9.
  s = privacy_case(np.s_[:10, :10], np.s_[5:15, :10])
  assert (s.tp, s.fp, s.fn, s.tn) == (50, 50, 50, 450)
  result = finalize_all([s])
  assert result["precision"] == 0.5 and result["recall"] == 0.5 and result["f1"] == 0.5
  assert result["accuracy"] == pytest.approx(500 / 600)


def test_perfect_prediction_on_a_flat_image_is_invisible_to_ssim_and_psnr():
  s = privacy_case(np.s_[4:16, 5:25], np.s_[4:16, 5:25])
  assert s.ssim == pytest.approx(1.0) and s.psnr == 100.0


def test_psnr_of_a_missed_and_of_a_spurious_person():
  # Missed: protected person is all zero, original person is 0.5 on a quarter of the pixels.
  missed = privacy_case(np.s_[0:0, 0:0], np.s_[:10, :15])
  assert missed.psnr == pytest.approx(-10 * math.log10(0.25 * 0.25))
  # Spurious: everything predicted, nobody there; the blur of a flat image is flat.
  spurious = privacy_case(np.s_[:, :], np.s_[0:0, 0:0])
  assert spurious.psnr == pytest.approx(-10 * math.log10(0.25))
  assert (spurious.tp, spurious.fp, spurious.fn, spurious.tn) == (0, 600, 0, 0)


def test_protection_blurs_only_the_predicted_pixels():
  image = np.random.default_rng(3).random((24, 32, 3)).astype(np.float32)
  s = privacy_case(np.s_[:, :16], np.s_[:, :16], shape=(24, 32), image=image)
  left = np.zeros((24, 32, 1), np.float32)
  left[:, :16] = 1
  difference = (hiding.box_blur10(image) - image) * left
  assert s.psnr == pytest.approx(-10 * math.log10(np.mean(difference.astype(np.float64) ** 2)),
                                 rel=1e-5)
  assert s.ssim == pytest.approx(metrics.ssim(hiding.box_blur10(image) * left, image * left))


def test_sums_of_two_halves_add_up():
  rng = np.random.default_rng(7)
  scores = []
  for _ in range(6):
    prob = rng.random((16, 20)).astype(np.float32)
    gt = (rng.random((16, 20)) > 0.6).astype(np.uint8)
    image = rng.random((12, 14, 3)).astype(np.float32)
    scores.append(metrics.score_expression(
        prob, gt, letterboxed_image=image, prob_letterbox=prob[:12, :14],
        gt_letterbox=gt[:12, :14].astype(bool)))
  total = metrics.sum_scores(scores)
  halves = metrics.sum_scores(scores[:2]) + metrics.sum_scores(scores[2:])
  np.testing.assert_allclose(halves, total, rtol=1e-12)
  whole, split = metrics.finalize(total), metrics.finalize(halves)
  assert whole["num_expressions"] == 6
  for key in KEYS - {"tdir", "tdir_haar", "tdir_dnn", "tdir_hog"}:
    assert split[key] == pytest.approx(whole[key], rel=1e-12)
  assert whole["miou"] == pytest.approx(np.mean([s.iou for s in scores]))


def white_square_detector(calls):
  """A stub face detector: a 'face' is a fully white 3x3 patch."""
  def detect(rgb_uint8):
    assert rgb_uint8.dtype == np.uint8 and rgb_uint8.ndim == 3
    calls.append(rgb_uint8)
    white = cv2.erode((rgb_uint8.min(axis=2) == 255).astype(np.uint8), np.ones((3, 3)))
    return bool(white.any())
  return detect


def test_tdir_with_a_stub_detector():
  calls = []
  detect = white_square_detector(calls)

  def case(face_box, pred_box, gt_box):
    image = np.full((30, 30, 3), 0.2, np.float32)
    image[face_box] = 1.0
    prob, gt = np.zeros((30, 30), np.float32), np.zeros((30, 30), bool)
    prob[pred_box], gt[gt_box] = 0.9, True
    return metrics.score_expression(prob, gt.astype(np.uint8), letterboxed_image=image,
                                    prob_letterbox=prob, gt_letterbox=gt, face_detector=detect)

  # A 3x3 face inside the prediction: the 10x10 blur hides it.
  hidden = case(np.s_[10:13, 10:13], np.s_[5:25, 5:25], np.s_[5:25, 5:25])
  # A 20x20 face: the blur keeps its middle white, so it still shows.
  still = case(np.s_[5:25, 5:25], np.s_[:, :], np.s_[:, :])
  # The face lies outside the person: the original person shows none.
  elsewhere = case(np.s_[1:4, 1:4], np.s_[10:25, 10:25], np.s_[10:25, 10:25])
  assert (hidden.face_original, hidden.face_protected) == (True, False)
  assert (still.face_original, still.face_protected) == (True, True)
  assert (elsewhere.face_original, elsewhere.face_protected) == (False, None)
  assert len(calls) == 5  # The protected person is only checked after a face was found.
  assert finalize_all([hidden, still, elsewhere])["tdir"] == pytest.approx(0.5)
  assert finalize_all([elsewhere])["tdir"] is None
  assert finalize_all([hidden, elsewhere])["tdir"] == 1.0


def test_tdir_with_the_real_detector_and_the_original_box_blur():
  """On the astronaut, the original's 10x10 blur leaves the face: TDIR is 0."""
  image = cv2.resize(skimage_data.astronaut(), (416, 416), interpolation=cv2.INTER_AREA)
  person = np.zeros((416, 416), bool)
  person[:250, 80:300] = True  # Head and shoulders: rows 0-307, cols 98-369 at 512 px.
  prob = person.astype(np.float32)
  s = metrics.score_expression(
      prob, person.astype(np.uint8), letterboxed_image=image.astype(np.float32) / 255,
      prob_letterbox=prob, gt_letterbox=person, face_detector=faces.has_face)
  assert (s.face_original, s.face_protected) == (True, True)
  assert finalize_all([s])["tdir"] == 0.0


def test_shape_mismatches_are_reported():
  with pytest.raises(ValueError, match=r"\(4, 5\).*\(4, 6\)"):
    metrics.score_expression(np.zeros((4, 5)), np.zeros((4, 6), np.uint8))
  with pytest.raises(ValueError, match="go together"):
    metrics.score_expression(np.zeros((4, 5)), np.zeros((4, 5), np.uint8),
                             letterboxed_image=np.zeros((12, 12, 3)))
  with pytest.raises(ValueError, match=r"\(12, 12, 3\).*\(12, 13\)"):
    metrics.score_expression(np.zeros((4, 5)), np.zeros((4, 5), np.uint8),
                             letterboxed_image=np.zeros((12, 12, 3)),
                             prob_letterbox=np.zeros((12, 13)), gt_letterbox=np.zeros((12, 12)))
  with pytest.raises(ValueError, match="shape"):
    metrics.finalize(np.zeros(3))
  with pytest.raises(ValueError, match="no expressions"):
    metrics.finalize(np.zeros(len(metrics.SUM_SLOTS)))
