"""Stored results of the measurements: the command that made one, where it goes, JSON files."""

from __future__ import annotations

import json
import os
import shlex
import sys

from brppnet_jax.runtime import config_files


def command(module: str, argv: list[str] | None = None) -> str:
  """The command line a result was made with, e.g. `python -m brppnet_jax.measure.step_speed
  --size=416` (`argv`: the arguments after the program; default: this process's)."""
  argv = sys.argv[1:] if argv is None else argv
  return shlex.join(["python", "-m", module, *argv])


def results_path(name: str) -> str:
  """benchmarks/results/<platform>_<name>.json in the checkout."""
  import jax  # pylint: disable=g-import-not-at-top
  return config_files.repo_path("benchmarks", "results",
                                f"{jax.devices()[0].platform}_{name}.json")


def write_json(path: str, record: dict, indent: int = 2) -> str:
  """Writes `record` to `path` (making its folder); returns `path`."""
  folder = os.path.dirname(path)
  if folder:
    os.makedirs(folder, exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    json.dump(record, f, indent=indent)
  return path


def read_json(path: str, missing: str) -> dict:
  """The record stored at `path`; FileNotFoundError `no stored result PATH: <missing>`."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"no stored result {path}: {missing}")
  with open(path, encoding="utf-8") as f:
    return json.load(f)
