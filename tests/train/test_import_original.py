"""The original's trained weights, imported as a workdir: evaluate it and protect with it."""

import json
import os
import pathlib

import jax
import numpy as np
from PIL import Image
import pytest

from brppnet_jax.data import vocab as vocab_lib
from brppnet_jax.evaluation import checkpoint
from brppnet_jax.models import original_weights
from brppnet_jax.models import parity
from brppnet_jax.protect.predictor import Predictor

from conftest import ONE_DEVICE
from conftest import REPO
from conftest import run_module

PARITY = REPO.parent / "shared" / "parity"
SMALL_RUN = ["--config.dataset.name=rpcoco/synthetic", "--config.dataset.eval_split=test",
             "--config.eval_batch_size=8", "--config.eval_max_examples=2",
             "--config.compute_tdir=False"]
# Subprocesses run on ONE_DEVICE: eight would each hold a copy of the full-size state.


@pytest.fixture(scope="module")
def imported(synthetic_dataset, tmp_path_factory):
  if not PARITY.is_dir():
    if os.environ.get("CI"):
      pytest.fail(f"{PARITY} is missing; CI must run the import test")
    pytest.skip(f"no parity fixture at {PARITY}")
  out = tmp_path_factory.mktemp("import")
  h5 = pathlib.Path(parity.write_original_files(str(PARITY), str(out), inputs=False)[0])
  data_dir = synthetic_dataset / "tfds"
  words = (next(data_dir.glob("rpcoco/synthetic/*")) / "vocab_all_splits.txt").read_text().split()
  rng = np.random.default_rng(0)
  # Vectors for every other word: the rest are zero in the table, as in the original.
  lines = [w + " " + " ".join(f"{v:.4f}" for v in rng.normal(0, 0.3, 300))
           for w in words[2::2]]
  vectors = out / "glove.txt"
  vectors.write_text("\n".join(lines) + "\n")
  workdir = out / "workdir"
  proc = run_module("brppnet_jax.train.import_original", f"--h5={h5}",
                    "--config=configs/rpcocom.py",
                    f"--word_vectors={vectors}", f"--workdir={workdir}",
                    f"--config.dataset.data_dir={data_dir}", *SMALL_RUN, env=ONE_DEVICE)
  assert f"Wrote checkpoint step 0 of {h5} to {workdir}" in proc.stdout
  return h5, vectors, workdir, data_dir, words


def test_checkpoint_holds_the_original_weights_and_word_table(imported):
  h5, vectors, workdir, _, words = imported
  predictor = Predictor.from_workdir(str(workdir))
  assert predictor.step == 0 and predictor.vocab.words == words
  assert predictor.config.model.text_padding == "original"
  assert predictor.config.model.fixed_word_vectors
  params, stats = jax.device_get((predictor.state.params, predictor.state.batch_stats))
  expected, _ = original_weights.load_brppnet_h5(
      str(h5), {"params": params, "batch_stats": stats})
  for got, want in zip(jax.tree.leaves((params, stats)),
                       jax.tree.leaves((expected["params"], expected["batch_stats"]))):
    np.testing.assert_array_equal(got, want)
  table = params["text_encoder"]["embedding"]["embedding"]
  vocab = vocab_lib.Vocabulary(words)
  first_line = vectors.read_text().splitlines()[0].split()
  np.testing.assert_allclose(table[vocab.encode(first_line[0], 1)[0]],
                             np.asarray(first_line[1:], np.float32))
  assert not np.any(table[3::2]) and not np.any(table[:2])  # Words without vectors, pad, unk.


def test_evaluate_and_protect_with_the_imported_workdir(imported, tmp_path):
  _, _, workdir, data_dir, _ = imported
  proc = run_module("brppnet_jax.main", "--config=configs/rpcocom.py", f"--workdir={workdir}",
                    "--mode=eval", f"--config.dataset.data_dir={data_dir}", *SMALL_RUN,
                    env=ONE_DEVICE)
  lines = (workdir / checkpoint.EVAL_MODE_FILE).read_text().splitlines()
  result = json.loads(lines[-1])
  assert result["step"] == 0 and result["num_expressions"] == 2
  assert 0.0 <= result["miou"] <= 1.0 and "miou" in proc.stdout
  raw = data_dir.parent / "raw"
  ref = json.loads((raw / "anns" / "synthetic" / "test.json").read_text())[0]
  image = raw / "images" / "train2014" / ref["img_name"]
  out = tmp_path / "protected.png"
  # The seeded weights are random, so the mask may be empty: the import path is under test.
  run_module("brppnet_jax.protect", f"--workdir={workdir}", f"--image={image}",
             f"--text={ref['sentences'][0]['sent']}", f"--out={out}", "--allow_empty",
             env=ONE_DEVICE)
  assert np.asarray(Image.open(out)).shape == np.asarray(Image.open(image).convert("RGB")).shape


def test_missing_input_files_are_named_before_the_dataset_is_looked_at(tmp_path):
  proc = run_module("brppnet_jax.train.import_original", "--h5=nowhere/best_map.h5",
                    "--config=configs/rpcocom.py", "--word_vectors=glove.840B.300d.txt",
                    f"--workdir={tmp_path / 'workdir'}",
                    f"--config.dataset.data_dir={tmp_path / 'no_data'}", check=False)
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines()[-1] == (
      "error: --h5=nowhere/best_map.h5: no such file; "
      "--word_vectors=glove.840B.300d.txt: no such file")
  assert not (tmp_path / "workdir").exists()
