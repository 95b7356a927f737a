"""What the loss ablation and the text floor share: training runs of a fixed length, the
records stored of them, and the README section each writes between its two marker lines."""

from __future__ import annotations

import datetime
import json
import os

import ml_collections

from brppnet_jax.runtime import devices
from brppnet_jax.train import loop


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


def final_metrics(workdir: str, step: int) -> dict:
  """The last evaluation at `step` recorded in WORKDIR/eval_metrics.jsonl."""
  path = os.path.join(workdir, loop.EVAL_METRICS_FILE)
  records = []
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      records = [json.loads(line) for line in f if line.strip()]
  matching = [r for r in records if r.get("step") == step]
  if not matching:
    raise ValueError(f"{path} has no evaluation at step {step} (a workdir trained past that "
                     "step does not train again: use a fresh --workdir)")
  return matching[-1]


def run_record(run, workdir: str, config_name: str, command: str, **fields) -> dict:
  """What is stored of a finished run: its settings (`fields` among them), the machine, the
  final evaluation and every evaluation of WORKDIR/eval_metrics.jsonl."""
  with open(os.path.join(workdir, loop.EVAL_METRICS_FILE), encoding="utf-8") as f:
    evaluations = [r for r in map(json.loads, filter(str.strip, f)) if "split" not in r]
  return {"date": datetime.date.today().isoformat(), "config": config_name, **fields,
          "seed": run.seed, "total_steps": run.total_steps, "machine": devices.machine(),
          "final": final_metrics(workdir, run.total_steps), "evaluations": evaluations,
          "command": command}


def _marker_span(text: str, path: str, markers: tuple[str, str]) -> tuple[int, int]:
  """Where the section's body starts and ends (after the start line, before the end marker)."""
  start_marker, end_marker = markers
  if text.count(start_marker) != 1 or text.count(end_marker) != 1:
    raise ValueError(f"{path} must contain the lines {start_marker} and {end_marker} exactly "
                     "once each")
  start, end = text.index(start_marker) + len(start_marker), text.index(end_marker)
  if end < start:
    raise ValueError(f"{path}: {end_marker} comes before {start_marker}")
  return start, end


def check_readme(path: str, markers: tuple[str, str]) -> None:
  """Fails early (before any training) when `path` cannot take the section."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path} does not exist; it needs the lines {markers[0]} and "
                            f"{markers[1]} around the generated section")
  with open(path, encoding="utf-8") as f:
    _marker_span(f.read(), path, markers)


def write_readme_section(path: str, section: str, markers: tuple[str, str]) -> None:
  """Replaces only the text between the markers of `path` with `section`."""
  check_readme(path, markers)
  with open(path, encoding="utf-8") as f:
    text = f.read()
  start, end = _marker_span(text, path, markers)
  temp = f"{path}.section.tmp"
  with open(temp, "w", encoding="utf-8") as f:
    f.write(f"{text[:start]}\n{section}\n{text[end:]}")
  os.replace(temp, path)  # Readers never see a half-written README.
