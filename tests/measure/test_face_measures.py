"""Tests for the face and margin measurements (brppnet_jax.measure.faces, .margin)."""

import json

import numpy as np

from brppnet_jax.measure import face_hiding as faces_measure
from brppnet_jax.measure import margin_coverage as margin

from conftest import ONE_DEVICE
from conftest import run_module


def test_person_coverage_counts_visible_and_extra_pixels():
  person = np.zeros((10, 10), bool)
  person[2:6, 2:7] = True  # 20 pixels.
  region = np.zeros((10, 10), bool)
  region[2:6, 4:9] = True  # Covers 12 of them and 8 background pixels.
  assert margin.person_coverage(region, person) == (8 / 20, 8 / 20)
  assert margin.person_coverage(person, person) == (0.0, 0.0)


def test_best_score_counts_only_detections_centred_in_the_region():
  region = np.zeros((50, 50), bool)
  region[10:30, 10:30] = True
  detections = [(12, 12, 10, 10, 0.7), (35, 35, 10, 10, 0.95), (0, 0, 4, 4, 0.9)]
  assert faces_measure._best(detections, region) == 0.7
  assert faces_measure._best(detections[1:], region) == 0.0
  assert faces_measure._best([], region, floor=-1.0) == -1.0
  assert faces_measure.found({"dnn": 0.5, "hog": -0.2, "haar": 1.0}) == {
      "dnn": True, "hog": False, "haar": True}


def test_ssim_inside_an_unchanged_region_is_one():
  image = np.random.default_rng(0).integers(0, 256, (40, 40, 3), np.uint8)
  region = np.zeros((40, 40), bool)
  region[5:20, 5:20] = True
  assert faces_measure.ssim_inside(image, image, region) == 1.0
  black = image.copy()
  black[region] = 0
  assert faces_measure.ssim_inside(image, black, region) < 0.1


def test_margin_measure_on_the_trained_workdir(trained_workdir, synthetic_dataset, tmp_path):
  out = tmp_path / "margin.json"
  proc = run_module("brppnet_jax.measure.margin", f"--workdir={trained_workdir}",
                    f"--data_dir={synthetic_dataset / 'tfds'}", "--max_expressions=12",
                    "--margins=0,0.1", f"--out={out}", env=ONE_DEVICE)
  result = json.loads(out.read_text())
  assert result["expressions"] == 12 and result["split"] == "test"
  none, wide = result["by_margin"]["0.0"], result["by_margin"]["0.1"]
  assert wide["visible"] <= none["visible"] and wide["extra"] >= none["extra"]
  assert wide["extra"] > none["extra"]  # A margin always protects more background.
  assert "(12 expressions, test)" in proc.stdout


def test_margin_measure_needs_a_workdir():
  proc = run_module("brppnet_jax.measure.margin", check=False)
  assert proc.returncode != 0
  assert "--workdir is required" in proc.stderr
