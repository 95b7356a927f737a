"""Exported models (TFLite, StableHLO) against the JAX predictor, the light predictor's imports
and its reading of requests (bad input: test_export_errors.py)."""

import copy
import json
import os
import subprocess
import sys
import textwrap
import warnings

import jax
import numpy as np
import pytest

from brppnet_jax.data import pipeline
from brppnet_jax.data import sources
from brppnet_jax.measure import export_parity
from brppnet_jax.protect import lite
from brppnet_jax.protect import model_file
from brppnet_jax.protect import photo
from brppnet_jax.protect import predictor as predictor_lib
from brppnet_jax.runtime import sharding
from configs import synthetic as synthetic_config

from conftest import ONE_DEVICE
from conftest import REPO
from conftest import build_once

MIOU_POINTS_LOST_AT_MOST = 0.5  # Quantised TFLite against the JAX predictor (the bar).
PARITY_ATOL = 1e-4
QUANTIZATIONS = ("float16", "dynamic_int8")
# The first expressions of the test split (8 batches); the benchmark compares all of them.
PARITY_EXPRESSIONS = 256
FLIPPED_PIXELS_AT_MOST = 1e-6  # Of mask pixels: only where float32 rounding decides.


@pytest.fixture(scope="module")
def quantized_tflite(tmp_path_factory, trained_workdir):
  """{"float16": path, "dynamic_int8": path}: trained_workdir exported with each quantisation
  (the two export commands run side by side: much of each is single-threaded start-up)."""
  def build(path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **ONE_DEVICE}
    procs = [subprocess.Popen(
        [sys.executable, "-m", "brppnet_jax.protect.export", f"--workdir={trained_workdir}",
         "--format=tflite", f"--quantize={q}", f"--out={path / q}.tflite"], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for q in QUANTIZATIONS]
    for proc in procs:
      _, stderr = proc.communicate(timeout=600)
      assert proc.returncode == 0, stderr[-3000:]
  folder = build_once(tmp_path_factory, "quantized_tflite", build)
  return {q: folder / f"{q}.tflite" for q in QUANTIZATIONS}


@pytest.fixture(scope="module")
def one_device_predictor(trained_predictor):
  """trained_predictor on one device, as on a user's machine: the programs a .stablehlo
  file's LitePredictor compiles (the suite's 8-device mesh splits a batch, and rounds
  otherwise)."""
  device = jax.devices()[:1]
  return predictor_lib.Predictor(
      trained_predictor.config, trained_predictor.vocab,
      jax.device_put(trained_predictor.state, device[0]), trained_predictor.step,
      mesh=sharding.make_mesh(device))


@pytest.fixture(scope="module")
def test_split(synthetic_dataset, trained_predictor):
  config = trained_predictor.eval_config(synthetic_config.get_config())
  config.dataset.data_dir = str(synthetic_dataset / "tfds")
  return config, sources.open_source(config, "test")


def test_the_sidecar_carries_what_a_runtime_needs(exported_tflite, trained_predictor):
  info, data = model_file.read(exported_tflite)
  config = trained_predictor.config
  assert (info.format, info.quantize, info.batch) == ("tflite", "none", 1)
  assert (info.input_size, info.word_len, info.mask_stride) == (128, 15, 4)
  assert info.words == tuple(trained_predictor.vocab.words)
  assert info.request_prefix == ("protect", "privacy", "of")
  assert info.text_padding == config.model.text_padding == "masked"
  assert (info.threshold, info.segment_thresh) == (0.5, config.segment_thresh)
  assert info.step == trained_predictor.step and info.trained_on == "synthetic"
  assert trained_predictor.trained_on == "synthetic"
  assert info.size_bytes == len(data) == exported_tflite.stat().st_size
  assert data[4:8] == b"TFL3"  # The flatbuffer's file identifier.


def test_exports_give_the_jax_predictors_masks_on_the_test_split(
    one_device_predictor, exported_tflite, quantized_tflite, exported_stablehlo, test_split):
  """StableHLO: the JAX predictor's probabilities bit for bit, so its masks. float32 TFLite:
  probabilities within 1e-4 and the same masks but for pixels that float32 rounding decides;
  float16 and dynamic_int8: at most 0.5 mIoU points lost."""
  config, source = test_split
  lites = {"stablehlo": lite.LitePredictor.from_file(exported_stablehlo),
           "float32": lite.LitePredictor.from_file(exported_tflite),
           **{q: lite.LitePredictor.from_file(p) for q, p in quantized_tflite.items()}}
  result = export_parity.compare_on_split(one_device_predictor, lites, config, source,
                                          max_examples=PARITY_EXPRESSIONS)
  jax_miou = result["jax"]["metrics"]["miou"]
  assert result["jax"]["metrics"]["num_expressions"] == PARITY_EXPRESSIONS
  stablehlo = result["stablehlo"]
  assert stablehlo["max_abs_diff"] == stablehlo["max_abs_diff_image"] == 0
  for masks in stablehlo["masks"].values():
    assert masks["pixels_differing"] == 0 and masks["pixels"] > 1e7, masks
  assert stablehlo["metrics"]["miou"] == jax_miou
  float32 = result["float32"]
  assert float32["max_abs_diff"] <= PARITY_ATOL and float32["max_abs_diff_image"] <= PARITY_ATOL
  for masks in float32["masks"].values():
    assert masks["pixels_differing"] <= FLIPPED_PIXELS_AT_MOST * masks["pixels"], masks
    assert masks["largest_margin_differing"] <= float32["max_abs_diff_image"]
  assert float32["metrics"]["miou"] == pytest.approx(jax_miou, abs=1e-4)
  for quantize in QUANTIZATIONS:
    lost = 100 * (jax_miou - result[quantize]["metrics"]["miou"])
    assert lost <= MIOU_POINTS_LOST_AT_MOST, (quantize, lost)
    assert result[quantize]["max_abs_diff"] > 10 * PARITY_ATOL  # It did quantise.


def assert_same_mask(got: np.ndarray, expected: np.ndarray, threshold: float) -> None:
  """The same mask but where float32 rounding decides (expected within 1e-4 of threshold)."""
  flipped = (got >= threshold) != (expected >= threshold)
  assert np.count_nonzero(flipped) <= FLIPPED_PIXELS_AT_MOST * flipped.size + 1
  assert np.all(np.abs(expected[flipped] - threshold) <= PARITY_ATOL)


def _run_python(code: str, *args: str) -> subprocess.CompletedProcess:
  """A fresh interpreter (no pytest, no conftest imports) from the repository root."""
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **ONE_DEVICE}
  proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


def _test_pairs(synthetic_dataset, n: int) -> list[tuple[np.ndarray, str]]:
  raw = synthetic_dataset / "raw"
  refs = json.loads((raw / "anns" / "synthetic" / "test.json").read_text())[:n]
  return [(photo.load_rgb(raw / "images" / "train2014" / r["img_name"]),
           r["sentences"][0]["sent"]) for r in refs]


_LIGHT_PREDICTION = """
  import sys
  import numpy as np
  from PIL import Image
  import cv2
  from ai_edge_litert import interpreter
  before = {m.split(".")[0] for m in sys.modules}
  from brppnet_jax.protect import lite
  inputs = np.load(sys.argv[2])
  predictor = lite.LitePredictor.from_file(sys.argv[1])
  texts = [str(t) for t in inputs["texts"]]
  images = [inputs[f"image{i}"] for i in range(len(texts))]
  probs = predictor.predict_masks(images, texts)
  np.savez(sys.argv[3], *probs)
  new = {m.split(".")[0] for m in sys.modules} - before - set(sys.stdlib_module_names)
  print(sorted(new))
  print(sorted(m for m in sys.modules if m.split(".")[0] in ("jax", "flax", "tensorflow")))
"""


def test_the_light_predictor_needs_no_jax_flax_or_tensorflow(
    exported_tflite, one_device_predictor, synthetic_dataset, tmp_path):
  pairs = _test_pairs(synthetic_dataset, 31)  # 32 pairs: the JAX batch the parity test compiled.
  pairs.append((pairs[0][0][::2, :300], pairs[0][1]))  # Another size and aspect.
  np.savez(tmp_path / "in.npz", texts=[t for _, t in pairs],
           **{f"image{i}": image for i, (image, _) in enumerate(pairs)})
  proc = _run_python(_LIGHT_PREDICTION, str(exported_tflite), str(tmp_path / "in.npz"),
                     str(tmp_path / "out.npz"))
  new_modules, heavy = proc.stdout.strip().splitlines()[-2:]
  assert new_modules == "['brppnet_jax']"  # Beyond numpy, Pillow, OpenCV and LiteRT.
  assert heavy == "[]"
  light = np.load(tmp_path / "out.npz")
  expected = one_device_predictor.predict_masks(*zip(*pairs))
  for i, prob in enumerate(expected):
    got = light[f"arr_{i}"]
    assert got.shape == prob.shape == pairs[i][0].shape[:2]
    np.testing.assert_allclose(got, prob, atol=PARITY_ATOL, rtol=0)
    assert_same_mask(got, prob, 0.5)


_STABLEHLO_PREDICTION = """
  import sys
  import numpy as np
  import jax
  from brppnet_jax.protect import lite
  inputs = np.load(sys.argv[2])
  predictor = lite.LitePredictor.from_file(sys.argv[1])
  probs = predictor.predict_letterboxed(inputs["image"], inputs["geometry"], inputs["tokens"])
  with np.load(sys.argv[1]) as archive:  # By hand, as the README shows.
    exported = jax.export.deserialize(bytearray(archive["exported"].tobytes()))
    weights = [archive[f"weight_{i:04d}"] for i in range(len(archive.files) - 1)]
  three = exported.call(weights, inputs["image"][:3], inputs["geometry"][:3],
                        inputs["tokens"][:3])
  np.savez(sys.argv[3], probs=probs, three=np.asarray(three))
  print(exported.platforms, exported.in_avals[-1].shape[0])
  print(sorted(m for m in sys.modules
               if m.split(".")[0] in ("flax", "tensorflow", "optax", "orbax")
               or m.startswith(("brppnet_jax.models", "brppnet_jax.train"))))
"""


def test_stablehlo_runs_without_flax_for_any_batch_size(
    exported_stablehlo, one_device_predictor, test_split, tmp_path):
  """In a fresh one-device process: the predictor's probabilities bit for bit at its batch
  size (32), and within rounding of them at another (3)."""
  config, source = copy.deepcopy(test_split[0]), test_split[1]
  config.eval_max_examples = 32  # One batch, of the size the parity test compiled.
  batch = next(iter(pipeline.create_eval_iterator(config, source, one_device_predictor.vocab,
                                                  include_images=False)))
  np.savez(tmp_path / "in.npz", image=batch["image"], geometry=batch["geometry"],
           tokens=batch["tokens"])
  proc = _run_python(_STABLEHLO_PREDICTION, str(exported_stablehlo), str(tmp_path / "in.npz"),
                     str(tmp_path / "out.npz"))
  platforms, loaded = proc.stdout.strip().splitlines()[-2:]
  assert platforms == "('cpu', 'cuda', 'tpu') batch" and loaded == "[]"
  out = np.load(tmp_path / "out.npz")
  network = {k: batch[k] for k in ("image", "geometry", "tokens")}
  expected = np.asarray(one_device_predictor.p_predict(one_device_predictor.state, network))
  np.testing.assert_array_equal(out["probs"], expected)
  np.testing.assert_allclose(out["three"], out["probs"][:3], atol=PARITY_ATOL, rtol=0)


def test_the_light_predictor_reads_requests_as_the_predictor_does(
    exported_tflite, trained_predictor):
  light = lite.LitePredictor.from_file(exported_tflite)
  assert (light.step, light.trained_on) == (trained_predictor.step, "synthetic")
  for text in ("protect privacy of man in red shirt", "Protect Privacy Of the LADY   left",
               "protect privacy of zebra on the left " + "left " * 20):
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter("always")
      np.testing.assert_array_equal(light.encode(text), trained_predictor.encode(text))
    assert light.unknown_words(text) == trained_predictor.unknown_words(text)
  assert [w.category for w in caught] == [predictor_lib.UnknownWordsWarning] * 2
  assert "zebra" in str(caught[0].message)
  for text, message in [("", "the request text is empty"),
                        ("protect privacy of zebra", "has no word the model knows")]:
    with pytest.raises(ValueError, match=message):
      light.predict_mask(np.zeros((32, 32, 3), np.uint8), text)
  with pytest.raises(ValueError, match="carries no training expressions"):
    light.train_expressions()
