"""The learned text-blind floor: the blind_text input switch, run configs, the README section."""

import json

import cv2
import numpy as np
import pytest

from brppnet_jax.data import pipeline
from brppnet_jax.data import vocab as vocab_lib
from brppnet_jax.measure import loss_runs
from brppnet_jax.measure import text_floor_runs
from configs import default
from configs import synthetic as synthetic_config

from conftest import run_module

STEPS = 40


def _record(i: int) -> dict:
  rng = np.random.default_rng(i)
  mask = np.zeros((24, 32), np.uint8)
  mask[4:20, 3 * i:3 * i + 8] = 255
  return {"image": cv2.imencode(".jpg", rng.integers(0, 256, (24, 32, 3), np.uint8))[1].tobytes(),
          "mask": cv2.imencode(".png", mask)[1].tobytes(),
          "sentences": np.array([f"protect privacy of man number {i} s{j}".encode()
                                 for j in range(1 + i % 2)], dtype=object),
          "ref_id": np.int64(i)}


@pytest.mark.parametrize("blind", [False, True])
def test_blind_text_reads_one_fixed_sentence_in_training_and_evaluation(blind):
  source = [_record(i) for i in range(6)]
  vocab = vocab_lib.Vocabulary.build(
      ["protect privacy of the person"] +
      [s.decode() for r in source for s in r["sentences"]])
  config = default.get_config()
  config.dataset.input_size, config.dataset.word_len = 32, 10
  config.model.seg_out_stride, config.batch_size, config.eval_batch_size = 2, 2, 4
  config.dataset.num_workers, config.dataset.blind_text = 0, blind
  fixed = vocab.encode(pipeline.BLIND_SENTENCE, 10)
  train_batch = next(pipeline.create_train_iterator(config, source, vocab, seed=0))
  eval_batches = list(pipeline.create_eval_iterator(config, source, vocab))
  tokens = np.concatenate([train_batch["tokens"]] + [b["tokens"][b["valid"]]
                                                     for b in eval_batches])
  if blind:
    assert (tokens == fixed).all()
  else:
    decoded = {vocab.decode(t) for t in tokens}
    assert "protect privacy of the person" not in decoded and len(decoded) > 3
  # The images and masks are those of the expressions either way; the sentence kept for
  # display is the real one.
  assert [b["sentence"] for b in eval_batches][0][0] == "protect privacy of man number 0 s0"


def test_run_configs_differ_only_in_blind_text():
  config = synthetic_config.get_config()
  before = config.to_dict()
  grounded = text_floor_runs.run_config(config, "grounded", seed=3, total_steps=7, data_dir="d")
  blind = text_floor_runs.run_config(config, "blind", seed=3, total_steps=7, data_dir="d")
  assert config.to_dict() == before
  assert grounded.dataset.blind_text is False and blind.dataset.blind_text is True
  blind.dataset.blind_text = False
  assert blind.to_dict() == grounded.to_dict()
  assert (grounded.seed, grounded.total_steps, grounded.dataset.data_dir) == (3, 7, "d")
  with pytest.raises(ValueError, match="unknown run 'deaf'"):
    text_floor_runs.run_config(config, "deaf")


def store_fake(results_dir):
  results_dir.mkdir()
  machine = {"devices": "1 x cpu", "cpus": 2, "jax": "0", "host": "h", "processor": "x"}
  (results_dir / "rules_test.json").write_text(json.dumps({
      "date": "2030-01-02", "split": "test", "rules": {"largest": 0.37, "union": 0.36},
      "best_rule": "largest", "best_rule_miou": 0.37, "oracle": 0.48, "expressions": 10}))
  for run, miou in (("grounded", 0.8), ("blind", 0.45)):
    (results_dir / f"{run}_seed0_{STEPS}steps.json").write_text(json.dumps({
        "date": "2030-01-02", "config": "configs/synthetic.py", "run": run, "seed": 0,
        "total_steps": STEPS, "machine": machine,
        "final": {"step": STEPS, "miou": miou, "num_expressions": 10}}))


def test_section_is_made_from_the_stored_files(tmp_path):
  store_fake(tmp_path / "results")
  section = text_floor_runs.section_from_results(str(tmp_path / "results"), 0, STEPS, "test")
  lines = section.splitlines()
  where = tmp_path / "results"
  assert lines[0] == ("mIoU on the 10 test expressions of the synthetic twin; "
                      "`configs/synthetic.py`, 40 steps, seed 0, trained 2030-01-02 on 1 x cpu "
                      "(2 CPUs).")
  assert lines[4] == ("| best of six fixed text-blind rules (largest person) | no | 0.370 | "
                      f"`{where}/rules_test.json` |")
  assert lines[5].endswith("| no | 0.480 | same file |")
  assert lines[6].endswith(f"| no | 0.450 | `{where}/blind_seed0_40steps.json` |")
  assert lines[7].endswith(f"| yes | 0.800 | `{where}/grounded_seed0_40steps.json` |")
  assert lines[9].startswith("The grounded model is +0.350 mIoU from the learned floor. The six "
                             "rules (largest 0.370, union 0.360)")
  # A floor under the best rule comes with the reason (measured on the blind model).
  blind_file = where / f"blind_seed0_{STEPS}steps.json"
  blind = json.loads(blind_file.read_text())
  blind["final"]["miou"] = 0.2
  blind_file.write_text(json.dumps(blind))
  lines = text_floor_runs.section_from_results(str(where), 0, STEPS, "test").splitlines()
  assert lines[9].startswith("The grounded model is +0.600 mIoU from the learned floor. The "
                             "learned floor is below the fixed rules because")


def test_table_only_writes_the_readme_section_and_names_missing_files(tmp_path):
  store_fake(tmp_path / "results")
  readme = tmp_path / "README.md"
  readme.write_text(f"# T\n\n{text_floor_runs.MARKERS[0]}\nold\n{text_floor_runs.MARKERS[1]}"
                    "\n\n## Next\n")
  common = ("--table_only", f"--results_dir={tmp_path / 'results'}", f"--readme={readme}",
            f"--total_steps={STEPS}", "--seed=0")
  proc = run_module("brppnet_jax.measure.text_floor", *common)
  section = text_floor_runs.section_from_results(str(tmp_path / "results"), 0, STEPS, "test")
  assert proc.stdout.strip() == section
  assert readme.read_text() == (f"# T\n\n{text_floor_runs.MARKERS[0]}\n{section}\n"
                                f"{text_floor_runs.MARKERS[1]}\n\n## Next\n")
  (tmp_path / "results" / f"blind_seed0_{STEPS}steps.json").unlink()
  proc = run_module("brppnet_jax.measure.text_floor", *common, check=False)
  assert proc.returncode != 0
  assert proc.stderr.strip().splitlines()[-1] == (
      f"error: no stored result {tmp_path / 'results'}/blind_seed0_{STEPS}steps.json: run it "
      "first (without --table_only)")
  readme.write_text("# no markers\n")
  proc = run_module("brppnet_jax.measure.text_floor", *common, check=False)
  assert proc.stderr.strip().splitlines()[-1] == (
      f"error: {readme} must contain the lines {text_floor_runs.MARKERS[0]} and "
      f"{text_floor_runs.MARKERS[1]} exactly once each")
  assert loss_runs.START_MARKER not in text_floor_runs.MARKERS
