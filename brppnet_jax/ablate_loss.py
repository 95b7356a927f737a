"""The paper's loss claim (spec section 4) on our data: one training run per loss and seed.

    python -m brppnet_jax.ablate_loss --workdir=/tmp/ablate --data_dir=data/tfds \
        [--config=configs/synthetic.py] [--total_steps=N] [--seeds=0,1,2] [--losses=bce,...] \
        [--results_dir=benchmarks/results/ablate_loss] [--readme=README.md] [--table_only]

Each (loss, seed) trains in WORKDIR/<loss>/seed<seed> (resumed if it has checkpoints) and its
evaluations go to RESULTS_DIR/<loss>_seed<seed>_<steps>steps.json. The tables (final mIoU,
oIoU, prec@0.5 and F1, mean and std over seeds; mIoU at every evaluation) are then made from
those files alone, printed, and written between the `<!-- loss-ablation:start -->` and
`<!-- loss-ablation:end -->` lines of the README. `--table_only` skips training and remakes
the tables from the stored files.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys

# Config files import `configs.default`; make that work from any directory.
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _REPO)

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags
from absl import logging
import ml_collections
from ml_collections import config_flags
import numpy as np

from brppnet_jax import losses
from brppnet_jax import train

START_MARKER = "<!-- loss-ablation:start -->"
END_MARKER = "<!-- loss-ablation:end -->"
LOSS_NAMES = {"balanced_bce": "Balanced-BCE", "bce": "BCE", "weighted_bce": "Weighted BCE"}
# (eval_metrics.jsonl key, column title); reported in percent.
COLUMNS = (("miou", "mIoU"), ("oiou", "oIoU"), ("prec@0.5", "prec@0.5"), ("f1", "F1"))

FLAGS = flags.FLAGS
_CONFIG = None


def define_flags() -> None:
  """Registers the command-line flags; only when run as a program, so that importing this
  module next to other command-line modules (build, main) defines no clashing flags."""
  global _CONFIG
  _CONFIG = config_flags.DEFINE_config_file(
      "config", os.path.join(_REPO, "configs", "synthetic.py"), "Training configuration file.")
  flags.DEFINE_string("workdir", None, "Root folder: one sub-workdir per loss and seed.")
  flags.DEFINE_string("data_dir", None, "TFDS data_dir (default: the config's).")
  flags.DEFINE_integer("total_steps", None, "Training steps per run (default: the config's).")
  flags.DEFINE_list("seeds", ["0"], "Comma-separated seeds; several give mean ± std.")
  flags.DEFINE_list("losses", list(losses.LOSSES), "Comma-separated losses to compare.")
  flags.DEFINE_string("readme", os.path.join(_REPO, "README.md"),
                      "README whose loss-ablation section is replaced; empty: write none.")
  flags.DEFINE_string("results_dir", os.path.join(_REPO, "benchmarks", "results", "ablate_loss"),
                      "Where each run's evaluations are stored, and the tables read from.")
  flags.DEFINE_bool("table_only", False, "Make the tables from stored results; train nothing.")


def fixed_length_copy(config, *, seed: int | None = None, data_dir: str | None = None,
                      total_steps: int | None = None,
                      what: str = "the ablation") -> ml_collections.ConfigDict:
  """A copy of `config` with seed / data_dir / total_steps set where given; comparing runs
  needs a fixed step count, so one must be positive."""
  config = ml_collections.ConfigDict(config.to_dict())
  if seed is not None:
    config.seed = int(seed)
  if data_dir:
    config.dataset.data_dir = data_dir
  if total_steps:
    config.total_steps = int(total_steps)
  if config.total_steps <= 0:
    raise ValueError(f"{what} needs a fixed step count: set --total_steps or "
                     "config.total_steps to a positive number")
  return config


def run_config(config, loss: str, seed: int, *, data_dir: str | None = None,
               total_steps: int | None = None) -> ml_collections.ConfigDict:
  """A copy of `config` training with `loss` and `seed` (and data_dir / total_steps if given)."""
  if loss not in losses.LOSSES:
    raise ValueError(f"unknown loss {loss!r}; choose from {', '.join(losses.LOSSES)}")
  config = fixed_length_copy(config, seed=seed, data_dir=data_dir, total_steps=total_steps)
  config.loss.name = loss
  return config


def final_metrics(workdir: str, step: int) -> dict:
  """The last evaluation at `step` recorded in WORKDIR/eval_metrics.jsonl."""
  path = os.path.join(workdir, train.EVAL_METRICS_FILE)
  records = []
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      records = [json.loads(line) for line in f if line.strip()]
  matching = [r for r in records if r.get("step") == step]
  if not matching:
    raise ValueError(f"{path} has no evaluation at step {step} (a workdir trained past that "
                     "step does not train again: use a fresh --workdir)")
  return matching[-1]


def result_path(results_dir: str, loss: str, seed: int, total_steps: int) -> str:
  return os.path.join(results_dir, f"{loss}_seed{seed}_{total_steps}steps.json")


def machine() -> dict:
  """What ran it: enough to tell a 2-core CPU from an accelerator."""
  import jax  # pylint: disable=g-import-not-at-top
  return {"host": platform.node(), "processor": platform.processor() or platform.machine(),
          "cpus": os.cpu_count(), "jax": jax.__version__,
          "devices": f"{jax.device_count()} x {jax.devices()[0].device_kind}"}


def write_result(results_dir: str, run, workdir: str, config_name: str) -> str:
  """Stores one finished run: its settings and every evaluation of WORKDIR/eval_metrics.jsonl."""
  path = os.path.join(workdir, train.EVAL_METRICS_FILE)
  with open(path, encoding="utf-8") as f:
    evaluations = [r for r in map(json.loads, filter(str.strip, f)) if "split" not in r]
  record = {
      "date": datetime.date.today().isoformat(), "config": config_name, "loss": run.loss.name,
      "seed": run.seed, "total_steps": run.total_steps, "batch_size": run.batch_size,
      "machine": machine(), "final": final_metrics(workdir, run.total_steps),
      "evaluations": evaluations,
  }
  os.makedirs(results_dir, exist_ok=True)
  out = result_path(results_dir, run.loss.name, run.seed, run.total_steps)
  with open(out, "w", encoding="utf-8") as f:
    json.dump(record, f, indent=1)
  return out


def run_ablation(config, workdir_root: str, loss_names, seeds, *, data_dir: str | None = None,
                 total_steps: int | None = None, results_dir: str | None = None,
                 config_name: str = "") -> dict:
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
      train.train_and_evaluate(run, workdir)
      results[loss].append(final_metrics(workdir, run.total_steps))
      if results_dir:
        write_result(results_dir, run, workdir, config_name)
  return results


def load_results(results_dir: str, loss_names, seeds, total_steps: int) -> dict[str, list[dict]]:
  """{loss: [stored record of each seed]}; an error naming the first missing file."""
  records = {}
  for loss in loss_names:
    records[loss] = []
    for seed in seeds:
      path = result_path(results_dir, loss, seed, total_steps)
      if not os.path.isfile(path):
        raise FileNotFoundError(f"no stored result {path}: train it first (without "
                                "--table_only)")
      with open(path, encoding="utf-8") as f:
        records[loss].append(json.load(f))
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
  where = os.path.relpath(results_dir, _REPO) if results_dir.startswith(_REPO + os.sep) else (
      results_dir)
  m = first["machine"]
  return "\n".join([
      table, "", format_progress(records), "", paired_differences(records), "",
      f"Machine: {m['devices']}, {m['cpus']} CPUs, jax {m['jax']}. Raw results, one file per "
      f"run: `{where}/<loss>_seed<seed>_{total_steps}steps.json`; this section is written by "
      "`python -m brppnet_jax.ablate_loss` from those files."])


def _marker_span(text: str, path: str, markers=(START_MARKER, END_MARKER)) -> tuple[int, int]:
  """Where the section's body starts and ends (after the start line, before the end marker)."""
  start_marker, end_marker = markers
  if text.count(start_marker) != 1 or text.count(end_marker) != 1:
    raise ValueError(f"{path} must contain the lines {start_marker} and {end_marker} exactly "
                     "once each")
  start, end = text.index(start_marker) + len(start_marker), text.index(end_marker)
  if end < start:
    raise ValueError(f"{path}: {end_marker} comes before {start_marker}")
  return start, end


def check_readme(path: str, markers=(START_MARKER, END_MARKER)) -> None:
  """Fails early (before any training) when `path` cannot take the section."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path} does not exist; it needs the lines {markers[0]} and "
                            f"{markers[1]} around the generated section")
  with open(path, encoding="utf-8") as f:
    _marker_span(f.read(), path, markers)


def write_readme_section(path: str, table: str, markers=(START_MARKER, END_MARKER)) -> None:
  """Replaces only the text between the markers of `path` with `table`."""
  check_readme(path, markers)
  with open(path, encoding="utf-8") as f:
    text = f.read()
  start, end = _marker_span(text, path, markers)
  new_text = f"{text[:start]}\n{table}\n{text[end:]}"
  temp = f"{path}.ablate_loss.tmp"
  with open(temp, "w", encoding="utf-8") as f:
    f.write(new_text)
  os.replace(temp, path)  # Readers never see a half-written README.


def _config_name(config_flag) -> str:
  """The config file (relative to the repository when inside it) and any --config.* overrides."""
  path = os.path.abspath(config_flags.get_config_filename(config_flag))
  name = os.path.relpath(path, _REPO) if path.startswith(_REPO + os.sep) else path
  overrides = config_flags.get_override_values(config_flag)
  return " ".join([name] + [f"--config.{k}={v}" for k, v in sorted(overrides.items())])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    unknown = [loss for loss in FLAGS.losses if loss not in losses.LOSSES]
    if unknown or not FLAGS.losses:
      raise ValueError(f"--losses must name some of {', '.join(losses.LOSSES)}, got "
                       f"{','.join(FLAGS.losses)!r}")
    if not all(s.strip().lstrip("-").isdigit() for s in FLAGS.seeds):
      raise ValueError(f"--seeds must be comma-separated integers, got {','.join(FLAGS.seeds)!r}")
    seeds = [int(s) for s in FLAGS.seeds]
    if not FLAGS.table_only and not FLAGS.workdir:
      raise ValueError("--workdir is required to train (or pass --table_only)")
    if FLAGS.readme:
      check_readme(FLAGS.readme)
    config = _CONFIG.value
    total_steps = FLAGS.total_steps or config.total_steps
    if not FLAGS.table_only:
      run_ablation(config, FLAGS.workdir, FLAGS.losses, seeds, data_dir=FLAGS.data_dir,
                   total_steps=FLAGS.total_steps, results_dir=FLAGS.results_dir,
                   config_name=_config_name(FLAGS["config"]))
    section = section_from_results(FLAGS.results_dir, FLAGS.losses, seeds, total_steps)
    print(section)
    if FLAGS.readme:
      write_readme_section(FLAGS.readme, section)
  except (FileNotFoundError, ValueError, train.NonFiniteLossError) as e:
    logging.error("%s", e)
    sys.exit(f"error: {e}")


if __name__ == "__main__":
  define_flags()
  app.run(main)
