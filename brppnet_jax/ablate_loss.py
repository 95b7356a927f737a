"""The paper's loss claim (spec section 4) on our data: one training run per loss and seed.

    python -m brppnet_jax.ablate_loss --workdir=/tmp/ablate --data_dir=data/tfds \
        [--config=configs/synthetic.py] [--total_steps=N] [--seeds=0,1,2] [--losses=bce,...] \
        [--readme=README.md] [--json=ablation.json]

Each (loss, seed) trains in WORKDIR/<loss>/seed<seed> (resumed if it has checkpoints); the final
evaluation's mIoU, oIoU, prec@0.5 and F1 go into a markdown table that is printed and written
between the `<!-- loss-ablation:start -->` and `<!-- loss-ablation:end -->` lines of the README.
"""

from __future__ import annotations

import datetime
import json
import os
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
  flags.DEFINE_string("json", "", "Also write the results to this JSON file.")
  flags.mark_flags_as_required(["workdir"])


def run_config(config, loss: str, seed: int, *, data_dir: str | None = None,
               total_steps: int | None = None) -> ml_collections.ConfigDict:
  """A copy of `config` training with `loss` and `seed` (and data_dir / total_steps if given)."""
  if loss not in losses.LOSSES:
    raise ValueError(f"unknown loss {loss!r}; choose from {', '.join(losses.LOSSES)}")
  config = ml_collections.ConfigDict(config.to_dict())
  config.loss.name, config.seed = loss, int(seed)
  if data_dir:
    config.dataset.data_dir = data_dir
  if total_steps:
    config.total_steps = int(total_steps)
  if config.total_steps <= 0:
    raise ValueError("the ablation needs a fixed step count: set --total_steps or "
                     "config.total_steps to a positive number")
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


def run_ablation(config, workdir_root: str, loss_names, seeds, *, data_dir: str | None = None,
                 total_steps: int | None = None) -> dict:
  """Trains every (loss, seed); returns {loss: [final metrics of each seed]}."""
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
  return results


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


def _marker_span(text: str, path: str) -> tuple[int, int]:
  """Where the section's body starts and ends (after the start line, before the end marker)."""
  if text.count(START_MARKER) != 1 or text.count(END_MARKER) != 1:
    raise ValueError(f"{path} must contain the lines {START_MARKER} and {END_MARKER} exactly "
                     "once each")
  start, end = text.index(START_MARKER) + len(START_MARKER), text.index(END_MARKER)
  if end < start:
    raise ValueError(f"{path}: {END_MARKER} comes before {START_MARKER}")
  return start, end


def check_readme(path: str) -> None:
  """Fails early (before any training) when `path` cannot take the table."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path} does not exist; it needs the lines {START_MARKER} and "
                            f"{END_MARKER} around the loss-ablation section")
  with open(path, encoding="utf-8") as f:
    _marker_span(f.read(), path)


def write_readme_section(path: str, table: str) -> None:
  """Replaces only the text between the markers of `path` with `table`."""
  check_readme(path)
  with open(path, encoding="utf-8") as f:
    text = f.read()
  start, end = _marker_span(text, path)
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
    if FLAGS.readme:
      check_readme(FLAGS.readme)
    config = _CONFIG.value
    results = run_ablation(config, FLAGS.workdir, FLAGS.losses, seeds,
                           data_dir=FLAGS.data_dir, total_steps=FLAGS.total_steps)
    total_steps = FLAGS.total_steps or config.total_steps
    date = datetime.date.today().isoformat()
    config_name = _config_name(FLAGS["config"])
    table = format_table(results, config_name=config_name, total_steps=total_steps,
                         seeds=seeds, date=date)
    print(table)
    if FLAGS.readme:
      write_readme_section(FLAGS.readme, table)
    if FLAGS.json:
      with open(FLAGS.json, "w", encoding="utf-8") as f:
        json.dump({"date": date, "config": config_name, "total_steps": total_steps,
                   "seeds": seeds, "results": results}, f, indent=2)
  except (FileNotFoundError, ValueError, train.NonFiniteLossError) as e:
    logging.error("%s", e)
    sys.exit(f"error: {e}")


if __name__ == "__main__":
  define_flags()
  app.run(main)
