"""Evaluation metrics (spec section 6), on the host with numpy and OpenCV.

Per expression, `score_expression` returns an `ExpressionScores`; `ExpressionScores.sums`
turns it into a flat float64 vector of sums (slots `SUM_SLOTS`), so the vectors of all
expressions and of all processes can simply be added; `finalize` turns the total into the
reported metrics.

Decisions where the spec leaves room:
- IoU uses prob > thresh (strict, as the original's lineage did; thresh is the paper's
  segment_thresh, `PAPER_THRESHOLD`); an empty prediction of an empty mask has IoU 1; prec@X
  counts IoU > X (strictly). miou, oiou and prec@X are these, for comparison with the paper.
- miou_protected and oiou_protected score the mask the product hides instead:
  prob >= mask_threshold (`hiding.MASK_THRESHOLD`), the same empty-mask rule.
- Privacy metrics (SSIM, PSNR, TDIR, pixel precision/recall/F1/accuracy) are computed on
  the letterboxed image cropped to (nh, nw); the prediction there is the letterboxed
  probability >= mask_threshold (the product's mask), the ground truth is the mask resized
  to (nh, nw): bool as given, integers > 0, floats >= 0.5. Accuracy divides by the nh * nw
  real pixels.
- Protection for these metrics is the original's: pixels of that prediction take the
  value of `hiding.box_blur10` of the image (window -5..+4, reflect-101 border).
- SSIM: grayscale Y = 0.299 R + 0.587 G + 0.114 B on the 0..255 scale, Gaussian window
  11x11 (sigma 1.5), C1 = (0.01*255)^2, C2 = (0.03*255)^2, population (co)variances,
  mean of the map over the 'valid' region (no padding; images need >= 11 px each way).
- PSNR: on the RGB images in [0, 1], peak 1, MSE over all pixels and channels; 100 when
  MSE < 1e-10.
- Pixel precision/recall/F1 per expression, then averaged; 0/0 counts 1 when prediction
  and ground truth are both empty (nothing to find, nothing wrongly found) and 0
  otherwise (precision of an empty prediction of a person, recall of a prediction where
  there is no person).
- TDIR = 1 - still / original, with original = expressions whose original person shows a
  face and still = those of them whose protected person shows one too (the protected
  person is only checked when the original shows a face); None when original is 0.
  Reported per detector family of `faces.DETECTORS` as `tdir_<family>`; `tdir` is
  `tdir_haar`, the paper's detector.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
import dataclasses
import math

import cv2
import numpy as np

from brppnet_jax.evaluation import faces
from brppnet_jax.protect import hiding

PAPER_THRESHOLD = 0.35  # The paper's segment_thresh (spec section 6).
PREC_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
GRAY_WEIGHTS = (0.299, 0.587, 0.114)
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = (0.01 * 255) ** 2
SSIM_C2 = (0.03 * 255) ** 2
PSNR_MAX = 100.0
SUM_SLOTS = (
    "count", "iou", "intersection", "union",
    "iou_protected", "intersection_protected", "union_protected",
    *(f"iou_above_{x}" for x in PREC_THRESHOLDS),
    "privacy_count", "ssim", "psnr", "precision", "recall", "f1", "accuracy",
    *(f"face_{kind}_{family}" for family in faces.FAMILIES for kind in ("original", "still")),
)
_SLOT = {name: i for i, name in enumerate(SUM_SLOTS)}
FaceDetector = Callable[[np.ndarray], bool]
FaceDetectors = Mapping[str, FaceDetector]  # family (faces.FAMILIES) -> face test.


@dataclasses.dataclass(frozen=True)
class ExpressionScores:
  """The scores of one expression; privacy fields are None where not computed."""
  iou: float
  intersection: int
  union: int
  iou_protected: float  # Of the mask the product hides, prob >= mask_threshold.
  intersection_protected: int
  union_protected: int
  ssim: float | None = None
  psnr: float | None = None
  tp: int | None = None
  fp: int | None = None
  fn: int | None = None
  tn: int | None = None
  # Per family: (the original person shows a face, the protected one does (None: not
  # checked, no original face)); None: no detector given.
  face_flags: Mapping[str, tuple[bool, bool | None]] | None = None

  @property
  def face_original(self) -> bool | None:
    """The Haar family's original face flag (None without a Haar test)."""
    return self.face_flags["haar"][0] if "haar" in (self.face_flags or {}) else None

  @property
  def face_protected(self) -> bool | None:
    """The Haar family's protected face flag (None: not checked or no Haar test)."""
    return self.face_flags["haar"][1] if "haar" in (self.face_flags or {}) else None

  def sums(self) -> np.ndarray:
    """This expression's contribution to the summed metric vector (`SUM_SLOTS`)."""
    v = np.zeros(len(SUM_SLOTS), np.float64)
    v[_SLOT["count"]] = 1
    v[_SLOT["iou"]] = self.iou
    v[_SLOT["intersection"]] = self.intersection
    v[_SLOT["union"]] = self.union
    for name in ("iou_protected", "intersection_protected", "union_protected"):
      v[_SLOT[name]] = getattr(self, name)
    for x in PREC_THRESHOLDS:
      v[_SLOT[f"iou_above_{x}"]] = self.iou > x
    if self.ssim is not None:
      precision, recall, f1, accuracy = pixel_scores(self.tp, self.fp, self.fn, self.tn)
      for name, value in (("privacy_count", 1), ("ssim", self.ssim), ("psnr", self.psnr),
                          ("precision", precision), ("recall", recall), ("f1", f1),
                          ("accuracy", accuracy)):
        v[_SLOT[name]] = value
    for family, (original, protected) in (self.face_flags or {}).items():
      v[_SLOT[f"face_original_{family}"]] = original
      v[_SLOT[f"face_still_{family}"]] = bool(original and protected)
    return v


def score_expression(prob_orig: np.ndarray, gt_mask: np.ndarray, *,
                     letterboxed_image: np.ndarray | None = None,
                     prob_letterbox: np.ndarray | None = None,
                     gt_letterbox: np.ndarray | None = None,
                     thresh: float = PAPER_THRESHOLD,
                     mask_threshold: float = hiding.MASK_THRESHOLD,
                     face_detector: FaceDetector | FaceDetectors | None = None
                     ) -> ExpressionScores:
  """Scores one expression.

  Args:
    prob_orig: [h, w] probabilities at the original image size.
    gt_mask: [h, w] ground truth, > 0 on the person.
    letterboxed_image: [nh, nw, 3] floats in [0, 1], the letterboxed image cropped to the
      picture; with the two next arguments it enables the privacy metrics.
    prob_letterbox: [nh, nw] probabilities on that crop.
    gt_letterbox: [nh, nw] ground truth resized to that crop (bool, ints > 0, floats >= 0.5).
    thresh: the paper's IoU threshold (`segment_thresh`): IoU counts prob > thresh.
    mask_threshold: the product's: prob >= mask_threshold is hidden; it gives the
      *_protected IoU and the prediction of the privacy metrics.
    face_detector: family -> callable(uint8 RGB image) -> bool, e.g. `faces.DETECTORS`;
      a bare callable is the "haar" family; None skips the face test (TDIR).
  """
  prob_orig, gt_mask = np.asarray(prob_orig), np.asarray(gt_mask)
  if prob_orig.ndim != 2 or prob_orig.shape != gt_mask.shape:
    raise ValueError(f"prediction shape {prob_orig.shape} and ground-truth shape "
                     f"{gt_mask.shape} must be the same [h, w]")
  gt = gt_mask > 0
  overlap = lambda pred: (int(np.count_nonzero(pred & gt)), int(np.count_nonzero(pred | gt)))
  intersection, union = overlap(prob_orig > thresh)
  protected_intersection, protected_union = overlap(prob_orig >= mask_threshold)
  scores = ExpressionScores(
      iou=intersection / union if union else 1.0, intersection=intersection, union=union,
      iou_protected=protected_intersection / protected_union if protected_union else 1.0,
      intersection_protected=protected_intersection, union_protected=protected_union)
  privacy_inputs = (letterboxed_image, prob_letterbox, gt_letterbox)
  if all(x is None for x in privacy_inputs):
    if face_detector is not None:
      raise ValueError("face_detector needs letterboxed_image, prob_letterbox and gt_letterbox")
    return scores
  if any(x is None for x in privacy_inputs):
    raise ValueError("letterboxed_image, prob_letterbox and gt_letterbox go together; "
                     "got only some of them")
  return dataclasses.replace(scores, **_privacy_scores(
      np.asarray(letterboxed_image), np.asarray(prob_letterbox), np.asarray(gt_letterbox),
      faces.by_family(face_detector), mask_threshold))


def _privacy_scores(image, prob, gt, face_detector, mask_threshold) -> dict:
  """SSIM, PSNR, pixel counts and face flags on the letterbox crop."""
  if (image.ndim != 3 or image.shape[2] != 3 or prob.shape != image.shape[:2]
      or gt.shape != image.shape[:2]):
    raise ValueError(f"letterboxed image {image.shape} must be [nh, nw, 3] with prediction "
                     f"{prob.shape} and ground truth {gt.shape} both [nh, nw]")
  if not np.issubdtype(image.dtype, np.floating):
    raise ValueError(f"letterboxed image must be floats in [0, 1], got {image.dtype}")
  pred = prob >= mask_threshold
  gt = _as_person(gt)
  image = image.astype(np.float32)
  protected = np.where(pred[..., None], hiding.box_blur10(image), image)
  protected_person = protected * pred[..., None]
  original_person = image * gt[..., None]
  out = dict(
      ssim=ssim(protected_person, original_person),
      psnr=psnr(protected_person, original_person),
      tp=int(np.count_nonzero(pred & gt)), fp=int(np.count_nonzero(pred & ~gt)),
      fn=int(np.count_nonzero(~pred & gt)), tn=int(np.count_nonzero(~pred & ~gt)))
  if face_detector is not None:
    out["face_flags"] = faces.face_flags(face_detector, _to_uint8(original_person),
                                         _to_uint8(protected_person))
  return out


def _as_person(mask: np.ndarray) -> np.ndarray:
  if mask.dtype == bool:
    return mask
  if np.issubdtype(mask.dtype, np.integer):
    return mask > 0
  return mask >= 0.5


def _to_uint8(image: np.ndarray) -> np.ndarray:
  return np.rint(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def pixel_scores(tp: int, fp: int, fn: int, tn: int) -> tuple[float, float, float, float]:
  """(precision, recall, F1, accuracy) from pixel counts; 0/0 as in the module docstring."""
  both_empty = tp + fp + fn == 0
  precision = tp / (tp + fp) if tp + fp else float(both_empty)
  recall = tp / (tp + fn) if tp + fn else float(both_empty)
  f1 = 2 * tp / (2 * tp + fp + fn) if not both_empty else 1.0
  accuracy = (tp + tn) / (tp + fp + fn + tn)
  return precision, recall, f1, accuracy


def _gray255(image: np.ndarray) -> np.ndarray:
  return (np.asarray(image, np.float64) * 255) @ np.asarray(GRAY_WEIGHTS)


def _gaussian_valid(x: np.ndarray) -> np.ndarray:
  """Gaussian-window means where the whole window lies inside `x` ('valid')."""
  kernel = cv2.getGaussianKernel(SSIM_WINDOW, SSIM_SIGMA, cv2.CV_64F)
  r = SSIM_WINDOW // 2
  return cv2.sepFilter2D(x, cv2.CV_64F, kernel, kernel)[r:-r, r:-r]


def ssim(image_a: np.ndarray, image_b: np.ndarray) -> float:
  """SSIM of two RGB images in [0, 1] ([h, w, 3], h and w >= 11), see module docstring."""
  image_a, image_b = np.asarray(image_a), np.asarray(image_b)
  if image_a.shape != image_b.shape or image_a.ndim != 3 or image_a.shape[2] != 3:
    raise ValueError(f"ssim takes two RGB images of one shape, got {image_a.shape} "
                     f"and {image_b.shape}")
  if min(image_a.shape[:2]) < SSIM_WINDOW:
    raise ValueError(f"ssim needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, "
                     f"got {image_a.shape[:2]}")
  x, y = _gray255(image_a), _gray255(image_b)
  mx, my = _gaussian_valid(x), _gaussian_valid(y)
  vx = _gaussian_valid(x * x) - mx * mx
  vy = _gaussian_valid(y * y) - my * my
  cxy = _gaussian_valid(x * y) - mx * my
  ssim_map = ((2 * mx * my + SSIM_C1) * (2 * cxy + SSIM_C2)
              / ((mx * mx + my * my + SSIM_C1) * (vx + vy + SSIM_C2)))
  return float(ssim_map.mean())


def psnr(image_a: np.ndarray, image_b: np.ndarray) -> float:
  """PSNR in dB of two images in [0, 1] with peak 1; 100 when MSE < 1e-10."""
  image_a, image_b = np.asarray(image_a, np.float64), np.asarray(image_b, np.float64)
  if image_a.shape != image_b.shape:
    raise ValueError(f"psnr takes two images of one shape, got {image_a.shape} "
                     f"and {image_b.shape}")
  mse = float(np.mean((image_a - image_b) ** 2))
  return PSNR_MAX if mse < 1e-10 else -10 * math.log10(mse)


def sum_scores(scores: Iterable[ExpressionScores]) -> np.ndarray:
  """Summed metric vector (`SUM_SLOTS`) of many expressions."""
  total = np.zeros(len(SUM_SLOTS), np.float64)
  for s in scores:
    total += s.sums()
  return total


def _tdir(s: dict, family: str) -> float | None:
  original, still = s[f"face_original_{family}"], s[f"face_still_{family}"]
  return 1 - still / original if original else None


def finalize(sums: np.ndarray) -> dict:
  """The reported metrics from a summed vector (this process's or all processes').

  Privacy metrics are None when no expression had them, tdir when no original person
  showed a face.
  """
  sums = np.asarray(sums, np.float64)
  if sums.shape != (len(SUM_SLOTS),):
    raise ValueError(f"metric sums must have shape ({len(SUM_SLOTS)},), got {sums.shape}")
  s = {name: float(sums[i]) for name, i in _SLOT.items()}
  if s["count"] < 1:
    raise ValueError("no expressions were scored: cannot finalize metrics")
  n, n_priv = s["count"], s["privacy_count"]
  out = {
      "miou": s["iou"] / n,
      "oiou": s["intersection"] / s["union"] if s["union"] else 1.0,
      "miou_protected": s["iou_protected"] / n,
      "oiou_protected": (s["intersection_protected"] / s["union_protected"]
                         if s["union_protected"] else 1.0),
      **{f"prec@{x}": s[f"iou_above_{x}"] / n for x in PREC_THRESHOLDS},
      "tdir": _tdir(s, "haar"),
      **{f"tdir_{family}": _tdir(s, family) for family in faces.FAMILIES},
  }
  for name in ("ssim", "psnr", "precision", "recall", "f1", "accuracy"):
    out[name] = s[name] / n_priv if n_priv else None
  out["num_expressions"] = int(round(n))
  return out
