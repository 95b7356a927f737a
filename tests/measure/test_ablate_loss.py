"""Loss ablation: a run per loss, the markdown table, and the README section it replaces."""

import json
import os
import re

import pytest

from brppnet_jax.measure import loss_runs
from brppnet_jax.measure import runs
from brppnet_jax.train import loop
from brppnet_jax.train import losses
from configs import synthetic as synthetic_config

from conftest import run_module

STEPS = 3
README_HEAD = "# BRPPNet\n\nIntro with a stray table:\n\n| a | b |\n|---|---|\n\n"
README_TAIL = "\n\n## Next section\n\nMore text.\n"


def tiny_config(data_dir):
  config = synthetic_config.get_config()
  config.dataset.data_dir = str(data_dir)
  config.dataset.input_size = 64
  config.eval_max_examples = 8
  config.eval_every_steps = STEPS
  config.checkpoint_every_steps = STEPS
  config.log_every_steps = STEPS
  config.num_image_summaries = 0
  return config


def table_rows(table: str) -> dict:
  """{loss: [every number of its cells, in order]} from the table's body rows."""
  rows = {}
  for line in table.splitlines():
    match = re.match(r"\| .* \(`(\w+)`\) \|(.*)\|$", line)
    if match:
      rows[match.group(1)] = [float(x) for x in re.findall(r"\d+\.\d+", match.group(2))]
  return rows


def write_readme(path, body="old table\n"):
  path.write_text(f"{README_HEAD}{loss_runs.START_MARKER}\n{body}{loss_runs.END_MARKER}"
                  f"{README_TAIL}", encoding="utf-8")


def test_ablation_trains_and_its_table_row_holds_the_final_evaluation(synthetic_dataset, tmp_path):
  config = tiny_config(synthetic_dataset / "tfds")
  results_dir = tmp_path / "results"
  results = loss_runs.run_ablation(config, str(tmp_path / "runs"), ["bce"], [0],
                                   total_steps=STEPS, results_dir=str(results_dir),
                                   config_name="configs/synthetic.py")
  table = loss_runs.format_table(results, config_name="configs/synthetic.py",
                                 total_steps=STEPS, seeds=[0], date="2030-01-02")
  with open(tmp_path / "runs" / "bce" / "seed0" / loop.EVAL_METRICS_FILE) as f:
    record = json.loads(f.readlines()[-1])
  assert record["step"] == STEPS and record["num_expressions"] == 8
  expected = [100 * record[key] for key in ("miou", "oiou", "prec@0.5", "f1")]
  assert table_rows(table) == {"bce": pytest.approx(expected, abs=0.005)}
  assert "2030-01-02" in table and "`configs/synthetic.py`, 3 steps, seed 0" in table
  assert "8 test expressions" in table
  # The stored file holds the same evaluation, and the README section is made from it.
  stored = json.loads((results_dir / f"bce_seed0_{STEPS}steps.json").read_text())
  assert stored["final"] == record and stored["evaluations"] == [record]
  assert (stored["loss"], stored["seed"], stored["total_steps"]) == ("bce", 0, STEPS)
  section = loss_runs.section_from_results(str(results_dir), ["bce"], [0], STEPS)
  assert table_rows(section.split("\n\n")[0] + "\n" + section.split("\n\n")[1]) == {
      "bce": pytest.approx(expected, abs=0.005)}


def test_every_loss_trains_in_its_own_workdir_and_gets_a_row(tmp_path, monkeypatch):
  trained = []

  def fake_train(config, workdir):  # Real training is the test above; this checks the plumbing.
    trained.append((config.loss.name, config.seed, config.total_steps, workdir))
    score = {"balanced_bce": 0.6, "bce": 0.5, "weighted_bce": 0.4}[config.loss.name]
    os.makedirs(workdir)
    with open(os.path.join(workdir, loop.EVAL_METRICS_FILE), "w") as f:
      for step, value in ((STEPS - 1, 0.0), (STEPS, score)):
        f.write(json.dumps({"step": step, "miou": value, "oiou": value, "prec@0.5": value,
                            "f1": value, "num_expressions": 8}) + "\n")

  monkeypatch.setattr(loop, "train_and_evaluate", fake_train)
  config = tiny_config("unused")
  before = config.to_dict()
  root = str(tmp_path / "runs")
  results = loss_runs.run_ablation(config, root, losses.LOSSES, [0, 1],
                                   total_steps=STEPS, results_dir=str(tmp_path / "results"),
                                   config_name="configs/synthetic.py")
  assert sorted(p.name for p in (tmp_path / "results").iterdir()) == [
      f"{loss}_seed{seed}_{STEPS}steps.json" for loss in ("balanced_bce", "bce", "weighted_bce")
      for seed in (0, 1)]
  assert trained == [(loss, seed, STEPS, os.path.join(root, loss, f"seed{seed}"))
                     for loss in ("balanced_bce", "bce", "weighted_bce") for seed in (0, 1)]
  assert config.to_dict() == before  # Each run gets a copy.
  table = loss_runs.format_table(results, config_name="configs/synthetic.py",
                                 total_steps=STEPS, seeds=[0, 1], date="2030-01-02")
  assert table_rows(table) == {"balanced_bce": [60.0, 0.0] * 4, "bce": [50.0, 0.0] * 4,
                               "weighted_bce": [40.0, 0.0] * 4}
  assert "| Balanced-BCE (`balanced_bce`) | **60.00 ± 0.00** |" in table

  readme = tmp_path / "README.md"
  write_readme(readme)
  loss_runs.write_readme_section(str(readme), table)
  assert readme.read_text(encoding="utf-8") == (
      f"{README_HEAD}{loss_runs.START_MARKER}\n{table}\n{loss_runs.END_MARKER}{README_TAIL}")
  loss_runs.write_readme_section(str(readme), "second table")
  assert readme.read_text(encoding="utf-8") == (
      f"{README_HEAD}{loss_runs.START_MARKER}\nsecond table\n{loss_runs.END_MARKER}"
      f"{README_TAIL}")


def test_table_reports_mean_and_std_over_seeds_with_the_best_in_bold():
  run = lambda miou, f1: {"miou": miou, "oiou": 0.5, "prec@0.5": 0.25, "f1": f1,
                          "num_expressions": 300}
  results = {"balanced_bce": [run(0.5, 0.8), run(0.7, 0.8)], "bce": [run(0.4, None)] * 2}
  table = loss_runs.format_table(results, config_name="configs/synthetic.py", total_steps=2000,
                                 seeds=[0, 1], date="2030-01-02")
  lines = table.splitlines()
  assert "2000 steps, seeds 0, 1; mean ± std over seeds" in lines[0]
  assert "300 test expressions" in lines[0]
  assert lines[2] == "| Loss | mIoU | oIoU | prec@0.5 | F1 |"
  # std is the sample std (ddof 1): 0.5 and 0.7 give 60 ± 14.14 percent.
  assert lines[4] == ("| Balanced-BCE (`balanced_bce`) | **60.00 ± 14.14** | 50.00 ± 0.00 | "
                      "25.00 ± 0.00 | **80.00 ± 0.00** |")
  assert lines[5] == "| BCE (`bce`) | 40.00 ± 0.00 | 50.00 ± 0.00 | 25.00 ± 0.00 | n/a |"


@pytest.mark.parametrize("body", ["", "start only"])
def test_readme_without_both_markers_is_an_error_naming_file_and_markers(tmp_path, body):
  readme = tmp_path / "README.md"
  readme.write_text(f"# Title\n{loss_runs.START_MARKER if body else ''}\n", encoding="utf-8")
  before = readme.read_text(encoding="utf-8")
  with pytest.raises(ValueError, match=rf"{readme}.*loss-ablation:start.*loss-ablation:end"):
    loss_runs.write_readme_section(str(readme), "table")
  assert readme.read_text(encoding="utf-8") == before
  with pytest.raises(FileNotFoundError, match=rf"{tmp_path / 'missing.md'} does not exist"):
    loss_runs.check_readme(str(tmp_path / "missing.md"))


def test_workdir_without_the_final_evaluation_is_an_error(tmp_path):
  (tmp_path / loop.EVAL_METRICS_FILE).write_text('{"step": 500, "miou": 0.1}\n')
  with pytest.raises(ValueError, match=rf"{tmp_path}/eval_metrics.jsonl has no evaluation at "
                                       "step 2000"):
    runs.final_metrics(str(tmp_path), 2000)


def test_cli_checks_the_readme_before_training(tmp_path):
  readme = tmp_path / "README.md"
  readme.write_text("# No markers here\n", encoding="utf-8")
  proc = run_module("brppnet_jax.measure.ablate_loss", f"--workdir={tmp_path / 'runs'}",
                    f"--readme={readme}", "--data_dir=/nonexistent", check=False)
  assert proc.returncode != 0
  assert proc.stderr.strip().splitlines()[-1] == (
      f"error: {readme} must contain the lines {loss_runs.START_MARKER} and "
      f"{loss_runs.END_MARKER} exactly once each")
  assert not (tmp_path / "runs").exists()


def store_fake_results(results_dir, finals):
  """Result files as run_ablation writes them: {(loss, seed): {step: miou}}."""
  results_dir.mkdir()
  for (loss, seed), by_step in finals.items():
    evaluations = [{"step": step, "miou": value, "oiou": value, "prec@0.5": value, "f1": value,
                    "num_expressions": 8} for step, value in sorted(by_step.items())]
    record = {"date": "2030-01-02", "config": "configs/synthetic.py", "loss": loss, "seed": seed,
              "total_steps": STEPS, "batch_size": 16, "final": evaluations[-1],
              "evaluations": evaluations,
              "machine": {"devices": "1 x cpu", "cpus": 2, "jax": "0.0", "host": "h",
                          "processor": "x86_64"}}
    (results_dir / f"{loss}_seed{seed}_{STEPS}steps.json").write_text(json.dumps(record))


def test_section_is_made_from_the_stored_files_alone(tmp_path):
  store_fake_results(tmp_path / "results", {
      ("balanced_bce", 0): {1: 0.2, STEPS: 0.5}, ("balanced_bce", 1): {1: 0.4, STEPS: 0.7},
      ("bce", 0): {1: 0.1, STEPS: 0.55}, ("bce", 1): {1: 0.3, STEPS: 0.6}})
  section = loss_runs.section_from_results(str(tmp_path / "results"),
                                           ["balanced_bce", "bce"], [0, 1], STEPS)
  lines = section.splitlines()
  assert lines[0].startswith("Loss ablation, 2030-01-02: `configs/synthetic.py`, 3 steps, "
                             "seeds 0, 1; mean ± std over seeds.")
  assert lines[4] == ("| Balanced-BCE (`balanced_bce`) | **60.00 ± 14.14** | **60.00 ± 14.14** "
                      "| **60.00 ± 14.14** | **60.00 ± 14.14** |")
  assert lines[5] == ("| BCE (`bce`) | 57.50 ± 3.54 | 57.50 ± 3.54 | 57.50 ± 3.54 | "
                      "57.50 ± 3.54 |")
  assert "| Loss | step 1 | step 3 |" in lines
  assert "| Balanced-BCE (`balanced_bce`) | 30.00 ± 14.14 | 60.00 ± 14.14 |" in lines
  assert "| BCE (`bce`) | 20.00 ± 14.14 | 57.50 ± 3.54 |" in lines
  assert ("- BCE minus Balanced-BCE, final mIoU in points: +5.00 (seed 0), -10.00 (seed 1); "
          "mean -2.50.") in lines
  assert lines[-1].startswith("Machine: 1 x cpu, 2 CPUs, jax 0.0. Raw results, one file per "
                              f"run: `{tmp_path / 'results'}/<loss>_seed<seed>_3steps.json`")


def test_table_only_rewrites_the_readme_from_stored_files(tmp_path):
  store_fake_results(tmp_path / "results", {("bce", 0): {STEPS: 0.25}})
  readme = tmp_path / "README.md"
  write_readme(readme)
  common = (f"--readme={readme}", f"--results_dir={tmp_path / 'results'}", "--table_only",
            f"--total_steps={STEPS}")
  proc = run_module("brppnet_jax.measure.ablate_loss", "--losses=bce", "--seeds=0", *common)
  section = loss_runs.section_from_results(str(tmp_path / "results"), ["bce"], [0], STEPS)
  assert proc.stdout.strip() == section
  assert readme.read_text(encoding="utf-8") == (
      f"{README_HEAD}{loss_runs.START_MARKER}\n{section}\n{loss_runs.END_MARKER}{README_TAIL}")
  missing = run_module("brppnet_jax.measure.ablate_loss", "--losses=bce", "--seeds=0,1", *common,
                       check=False)
  assert missing.returncode != 0
  assert missing.stderr.strip().splitlines()[-1] == (
      f"error: no stored result {tmp_path / 'results'}/bce_seed1_{STEPS}steps.json: train it "
      "first (without --table_only)")
