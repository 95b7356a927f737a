"""The text floor's runs (grounded and text-blind), the rules, and the section made of them.

The library of `python -m brppnet_jax.measure.text_floor` (see there): the config trained as it
is ("grounded") and with `config.dataset.blind_text=True` ("blind"), the text-blind rules and
the per-image oracle of `synthetic.text_blind_ceiling`, each stored in RESULTS_DIR
(grounded_seed<S>_<N>steps.json, blind_seed<S>_<N>steps.json, rules_<split>.json), and the
README section between `<!-- text-floor:start -->` and `<!-- text-floor:end -->` made from
those files alone.
"""

from __future__ import annotations

import datetime
import os
import time

from absl import logging
import ml_collections

from brppnet_jax.data import synthetic
from brppnet_jax.measure import records
from brppnet_jax.measure import runs
from brppnet_jax.runtime import config_files
from brppnet_jax.train import loop

MARKERS = ("<!-- text-floor:start -->", "<!-- text-floor:end -->")
RUNS = ("grounded", "blind")


def run_config(config, run: str, *, seed: int | None = None, data_dir: str | None = None,
               total_steps: int | None = None) -> ml_collections.ConfigDict:
  """A copy of `config` for `run` ("grounded" or "blind")."""
  if run not in RUNS:
    raise ValueError(f"unknown run {run!r}; choose from {', '.join(RUNS)}")
  config = runs.fixed_length_copy(config, seed=seed, data_dir=data_dir,
                                  total_steps=total_steps, what="the text floor")
  config.dataset.blind_text = run == "blind"
  return config


def run_path(results_dir: str, run: str, seed: int, total_steps: int) -> str:
  return os.path.join(results_dir, f"{run}_seed{seed}_{total_steps}steps.json")


def rules_path(results_dir: str, split: str) -> str:
  return os.path.join(results_dir, f"rules_{split}.json")


def train_run(config, run: str, workdir_root: str, results_dir: str, config_name: str,
              command: str = "", **kw) -> str:
  """Trains (or resumes) one run and stores its record; returns the record's path."""
  run_cfg = run_config(config, run, **kw)
  workdir = os.path.join(workdir_root, run)
  logging.info("Text floor: %s run, seed %d, %d steps in %s", run, run_cfg.seed,
               run_cfg.total_steps, workdir)
  start = time.perf_counter()
  loop.train_and_evaluate(run_cfg, workdir)
  seconds = time.perf_counter() - start
  record = runs.run_record(run_cfg, workdir, config_name, command, run=run,
                           blind_text=run_cfg.dataset.blind_text,
                           eval_split=run_cfg.dataset.eval_split,
                           wall_seconds_this_call=round(seconds, 1))
  path = run_path(results_dir, run, run_cfg.seed, run_cfg.total_steps)
  return records.write_json(path, record, indent=1)


def store_rules(raw_dir: str, split: str, results_dir: str, command: str = "") -> str:
  """Scores the text-blind rules and the oracle on RAW_DIR's `split`; returns the file."""
  result = synthetic.text_blind_ceiling(raw_dir, split=split)
  record = {"date": datetime.date.today().isoformat(), "raw_dir": os.path.abspath(raw_dir),
            "split": split, "rules": {k: float(v) for k, v in result["miou"].items()},
            "best_rule": result["best"], "best_rule_miou": float(result["ceiling"]),
            "oracle": float(result["oracle"]), "expressions": int(result["expressions"]),
            "command": command}
  return records.write_json(rules_path(results_dir, split), record, indent=1)


def _read(path: str) -> dict:
  return records.read_json(path, "run it first (without --table_only)")


def section_from_results(results_dir: str, seed: int, total_steps: int, split: str) -> str:
  """The README section, made from the three stored files alone."""
  rules = _read(rules_path(results_dir, split))
  grounded = _read(run_path(results_dir, "grounded", seed, total_steps))
  blind = _read(run_path(results_dir, "blind", seed, total_steps))
  where = config_files.relative_to_repo(results_dir)
  name = lambda path: f"`{where}/{os.path.basename(path)}`"
  rule_list = ", ".join(f"{k} {v:.3f}" for k, v in rules["rules"].items())
  gap = grounded["final"]["miou"] - blind["final"]["miou"]
  # Measured on the blind model of 2026-11-27: its probability inside the people is about 1/k
  # on images of k people (the chance that a person is the one named), below the IoU's 0.35
  # threshold where k >= 3.
  below_rules = (" The learned floor is below the fixed rules because the blind network "
                 "learns, for each pixel, how often its person is the one named: on images of "
                 "three or four people that stays under the 0.35 threshold of the IoU, so "
                 "little is predicted there."
                 if blind["final"]["miou"] < rules["best_rule_miou"] else "")
  expressions = {rules["expressions"], grounded["final"]["num_expressions"],
                 blind["final"]["num_expressions"]}
  count = f"{expressions.pop()} " if len(expressions) == 1 else ""
  return "\n".join([
      f"mIoU on the {count}{split} expressions of the synthetic twin; `{grounded['config']}`, "
      f"{total_steps} steps, seed {seed}, trained {grounded['date']} on "
      f"{grounded['machine']['devices']} ({grounded['machine']['cpus']} CPUs).",
      "",
      "| what | reads the text | mIoU | raw file |",
      "|---|---|---:|---|",
      f"| best of six fixed text-blind rules ({rules['best_rule']} person) | no | "
      f"{rules['best_rule_miou']:.3f} | {name(rules_path(results_dir, split))} |",
      "| per-image oracle: the one person or union of people that scores best on each image "
      f"(sees the answers) | no | {rules['oracle']:.3f} | same file |",
      f"| learned text-blind floor: the same network and training, every sentence replaced by "
      f"one fixed sentence | no | {blind['final']['miou']:.3f} | "
      f"{name(run_path(results_dir, 'blind', seed, total_steps))} |",
      f"| grounded model (`make demo`'s training) | yes | {grounded['final']['miou']:.3f} | "
      f"{name(run_path(results_dir, 'grounded', seed, total_steps))} |",
      "",
      f"The grounded model is {gap:+.3f} mIoU from the learned floor.{below_rules} The six "
      f"rules ({rule_list}) "
      "and the oracle are what fixed choices among the annotated people reach; neither is a "
      "bound on a model that ignores the text (the oracle picks with the answers in hand, and "
      "a model may predict other regions). This section is written by "
      "`python -m brppnet_jax.measure.text_floor` from the files above.",
  ])


def check_readme(path: str) -> None:
  """Fails early (before any training) when `path` cannot take the text-floor section."""
  runs.check_readme(path, MARKERS)


def write_readme_section(path: str, section: str) -> None:
  """Replaces only the text between the text-floor markers of `path` with `section`."""
  runs.write_readme_section(path, section, MARKERS)
