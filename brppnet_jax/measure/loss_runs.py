"""The loss ablation's runs, their stored records and the tables made from those alone.

The library of `python -m brppnet_jax.measure.ablate_loss` (see there): one training run per
(loss, seed) in WORKDIR/<loss>/seed<seed>, its record in
RESULTS_DIR/<loss>_seed<seed>_<steps>steps.json, and the README section (final mIoU, oIoU,
prec@0.5 and F1, mean and std over seeds; mIoU at every evaluation) between
`<!-- loss-ablation:start -->` and `<!-- loss-ablation:end -->`.
"""

from __future__ import annotations

import os

from absl import logging
import ml_collections
import numpy as np

from brppnet_jax.measure import records as records_lib
from brppnet_jax.measure import runs as runs_lib
from brppnet_jax.runtime import config_files
from brppnet_jax.train import loop
from brppnet_jax.train import losses

START_MARKER = "<!-- loss-ablation:start -->"
END_MARKER = "<!-- loss-ablation:end -->"
MARKERS = (START_MARKER, END_MARKER)
LOSS_NAMES = {"balanced_bce": "Balanced-BCE", "bce": "BCE", "weighted_bce": "Weighted BCE"}
# (eval_metrics.jsonl key, column title); reported in percent.
COLUMNS = (("miou", "mIoU"), ("oiou", "oIoU"), ("prec@0.5", "prec@0.5"), ("f1", "F1"))


def run_config(config, loss: str, seed: int, *, data_dir: str | None = None,
               total_steps: int | None = None) -> ml_collections.ConfigDict:
  """A copy of `config` training with `loss` and `seed` (and data_dir / total_steps if given)."""
  if loss not in losses.LOSSES:
    raise ValueError(f"unknown loss {loss!r}; choose from {', '.join(losses.LOSSES)}")
  config = runs_lib.fixed_length_copy(config, seed=seed, data_dir=data_dir, total_steps=total_steps)
  config.loss.name = loss
  return config


def result_path(results_dir: str, loss: str, seed: int, total_steps: int) -> str:
  return os.path.join(results_dir, f"{loss}_seed{seed}_{total_steps}steps.json")


def write_result(results_dir: str, run, workdir: str, config_name: str,
                 command: str = "") -> str:
  """Stores one finished run: its settings and every evaluation of WORKDIR/eval_metrics.jsonl."""
  record = runs_lib.run_record(run, workdir, config_name, command, loss=run.loss.name,
                           batch_size=run.batch_size)
  return records_lib.write_json(
      result_path(results_dir, run.loss.name, run.seed, run.total_steps), record, indent=1)


def run_ablation(config, workdir_root: str, loss_names, seeds, *, data_dir: str | None = None,
                 total_steps: int | None = None, results_dir: str | None = None,
                 config_name: str = "", command: str = "") -> dict:
  """Trains every (loss, seed); returns {loss: [final metrics of each seed]}.

  With `results_dir`, each run's record is also stored there (`write_result`).
  """
  results = {}
  for loss in loss_names:
    results[loss] = []
    for seed in seeds:
      run = run_config(config, loss, seed, data_dir=data_dir, total_steps=total_steps)
      workdir = os.path.join(workdir_root, loss, f"seed{seed}")
      logging.info("Loss ablation: %s, seed %s, %d steps in %s", loss, seed, run.total_steps,
                   workdir)
      loop.train_and_evaluate(run, workdir)
      results[loss].append(runs_lib.final_metrics(workdir, run.total_steps))
      if results_dir:
        write_result(results_dir, run, workdir, config_name, command)
  return results


def load_results(results_dir: str, loss_names, seeds, total_steps: int) -> dict[str, list[dict]]:
  """{loss: [stored record of each seed]}; an error naming the first missing file."""
  records = {}
  for loss in loss_names:
    records[loss] = []
    for seed in seeds:
      records[loss].append(records_lib.read_json(
          result_path(results_dir, loss, seed, total_steps),
          "train it first (without --table_only)"))
  return records


def summarize(runs: list[dict]) -> dict:
  """{key: (mean, std or None)} in percent over runs; std (ddof 1) needs two runs or more."""
  summary = {}
  for key, _ in COLUMNS:
    values = [r.get(key) for r in runs]
    if not values or any(v is None for v in values):
      summary[key] = (None, None)
      continue
    values = 100.0 * np.asarray(values, np.float64)
    std = float(np.std(values, ddof=1)) if len(values) > 1 else None
    summary[key] = (float(np.mean(values)), std)
  return summary


def _cell(mean, std, best: bool) -> str:
  if mean is None:
    return "n/a"
  text = f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"
  return f"**{text}**" if best else text


def format_table(results: dict, *, config_name: str, total_steps: int, seeds, date: str) -> str:
  """Markdown: a caption (date, config, steps, seeds) and one row per loss, best in bold."""
  summaries = {loss: summarize(runs) for loss, runs in results.items()}
  best = {}
  for key, _ in COLUMNS:
    means = [s[key][0] for s in summaries.values()]
    numbers = [m for m in means if m is not None]
    # A column where every loss ties has no best.
    tie = all(m == max(numbers, default=None) for m in means)
    best[key] = None if tie else max(numbers)
  seeds = list(seeds)
  seed_text = (f"seed {seeds[0]}" if len(seeds) == 1 else
               f"seeds {', '.join(map(str, seeds))}; mean ± std over seeds")
  counts = {r.get("num_expressions") for runs in results.values() for r in runs}
  count_text = f"{counts.pop()} " if len(counts) == 1 else ""
  lines = [
      f"Loss ablation, {date}: `{config_name}`, {total_steps} steps, {seed_text}. "
      f"Final evaluation on the {count_text}test expressions, in %; best in bold.",
      "",
      "| Loss | " + " | ".join(title for _, title in COLUMNS) + " |",
      "|---|" + "---:|" * len(COLUMNS),
  ]
  for loss, summary in summaries.items():
    cells = [_cell(*summary[key], best=best[key] is not None and summary[key][0] == best[key])
             for key, _ in COLUMNS]
    lines.append(f"| {LOSS_NAMES.get(loss, loss)} (`{loss}`) | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def format_progress(records: dict[str, list[dict]]) -> str:
  """Markdown: mIoU (%) at every evaluation step, mean ± std over the stored seeds."""
  steps = sorted({e["step"] for runs in records.values() for r in runs for e in r["evaluations"]})
  lines = ["mIoU (%) at each evaluation:", "",
           "| Loss | " + " | ".join(f"step {s}" for s in steps) + " |",
           "|---|" + "---:|" * len(steps)]
  for loss, runs in records.items():
    cells = []
    for step in steps:
      at_step = [[e for e in r["evaluations"] if e["step"] == step] for r in runs]
      if any(not found for found in at_step):
        cells.append("n/a")
        continue
      mean, std = summarize([found[-1] for found in at_step])["miou"]
      cells.append(_cell(mean, std, best=False))
    lines.append(f"| {LOSS_NAMES.get(loss, loss)} (`{loss}`) | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def paired_differences(records: dict[str, list[dict]], reference: str = "balanced_bce") -> str:
  """One line per other loss: its final mIoU minus the reference's, seed by seed (points)."""
  if reference not in records:
    return ""
  lines = []
  for loss, runs in records.items():
    if loss == reference:
      continue
    deltas = [100 * (r["final"]["miou"] - ref["final"]["miou"])
              for r, ref in zip(runs, records[reference])]
    per_seed = ", ".join(f"{d:+.2f} (seed {r['seed']})" for d, r in zip(deltas, runs))
    lines.append(f"- {LOSS_NAMES.get(loss, loss)} minus {LOSS_NAMES[reference]}, final mIoU in "
                 f"points: {per_seed}; mean {sum(deltas) / len(deltas):+.2f}.")
  return "\n".join(lines)


def section_from_results(results_dir: str, loss_names, seeds, total_steps: int) -> str:
  """The README section, made from the stored result files only."""
  records = load_results(results_dir, loss_names, seeds, total_steps)
  first = records[loss_names[0]][0]
  dates = sorted({r["date"] for runs in records.values() for r in runs})
  date = dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}"
  table = format_table({loss: [r["final"] for r in runs] for loss, runs in records.items()},
                       config_name=first["config"], total_steps=total_steps, seeds=seeds,
                       date=date)
  where = config_files.relative_to_repo(results_dir)
  m = first["machine"]
  return "\n".join([
      table, "", format_progress(records), "", paired_differences(records), "",
      f"Machine: {m['devices']}, {m['cpus']} CPUs, jax {m['jax']}. Raw results, one file per "
      f"run: `{where}/<loss>_seed<seed>_{total_steps}steps.json`; this section is written by "
      "`python -m brppnet_jax.measure.ablate_loss` from those files."])


def check_readme(path: str) -> None:
  """Fails early (before any training) when `path` cannot take the loss-ablation section."""
  runs_lib.check_readme(path, MARKERS)


def write_readme_section(path: str, table: str) -> None:
  """Replaces only the text between the loss-ablation markers of `path` with `table`."""
  runs_lib.write_readme_section(path, table, MARKERS)
