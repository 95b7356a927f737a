"""The end-to-end and evaluation benchmarks' own pieces (their timings are not tested)."""

import json

import cv2
import numpy as np
import pytest

from brppnet_jax.data import synthetic
from brppnet_jax.measure import eval_stages
from brppnet_jax.measure import full_size_twin


def test_twin_scaled_to_coco_size_keeps_masks_and_boxes_on_their_person(tmp_path):
  synthetic.generate(tmp_path, seed=0, num_train=3, num_test=1)
  before = json.loads((tmp_path / "anns" / "synthetic" / "train.json").read_text())
  full_size_twin.scale_released_layout(tmp_path, 640, seed=0)
  for split in ("train", "test"):
    for entry in json.loads((tmp_path / "anns" / "synthetic" / f"{split}.json").read_text()):
      image = cv2.imread(str(tmp_path / "images" / "train2014" / entry["img_name"]))
      mask = cv2.imread(str(tmp_path / "masks" / "synthetic" / f"{entry['segment_id']}.png"),
                        cv2.IMREAD_GRAYSCALE)
      assert max(image.shape[:2]) == 640 and mask.shape == image.shape[:2]
      assert set(np.unique(mask)) == {0, 255}
      ys, xs = np.nonzero(mask)
      x0, y0, x1, y1 = entry["bbox"]
      assert abs(xs.min() - x0) <= 3 and abs(ys.min() - y0) <= 3
      assert abs(xs.max() + 1 - x1) <= 4 and abs(ys.max() + 1 - y1) <= 4
  assert len(before) == len(json.loads((tmp_path / "anns" / "synthetic" / "train.json")
                                       .read_text()))


def test_evaluation_estimate_adds_the_stages_and_spreads_them_over_the_cores():
  stages = {"read_and_letterbox": 0.01, "map_back": 0.002, "iou": 0.001,
            "privacy_metrics": 0.028, "face_test_once": 0.16}
  out = eval_stages.estimate(stages, expressions=4327, cores=16)
  assert out["host_seconds_per_expression_no_face"] == pytest.approx(0.2)
  assert out["host_seconds_per_expression_face"] == pytest.approx(0.36)
  assert out["seconds_if_no_original_face"] == pytest.approx(4327 * 0.2 / 16)
  assert out["seconds_if_every_original_face"] == pytest.approx(4327 * 0.36 / 16)
