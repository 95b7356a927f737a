"""What the fault tests (tests/train/test_faults*.py) share: the run, its copies, its outcome.

The undisturbed run (fixture `undisturbed`) trains 6 steps of
configs/synthetic.py once per session; each fault test copies it and compares its outcome:
the final evaluation and the SHA-256 of every final state array. Test modules import the
fixtures (`data_dir`, `undisturbed`, `warnings`) from here.
"""

import json
import logging
import os
import pathlib
import re
import shutil
import threading
import time

import pytest

from configs import synthetic as synthetic_config

from conftest import XLA_CACHE
from conftest import build_once
from conftest import run_module

TOTAL = 6
# checkpoint_every_steps and keep_checkpoints may change on resume: the meaning of the run
# (what it computes) is the same with every cadence below, so is its final state.
RUN = {"total_steps": TOTAL, "eval_every_steps": 3, "log_every_steps": 1,
       "eval_max_examples": 16, "num_image_summaries": 0}
EVERY_STEP = {"checkpoint_every_steps": 1, "keep_checkpoints": TOTAL}
SEED = int(os.environ.get("BRPPNET_FAULT_SEED", time.time_ns() % 10_000))


def flags(data_dir, **overrides) -> list[str]:
  settings = {**RUN, **overrides, "dataset.data_dir": str(data_dir)}
  return ["--config=configs/synthetic.py", f"--config.compilation_cache_dir={XLA_CACHE}",
          *(f"--config.{k}={v}" for k, v in settings.items())]


def config_of(data_dir, **overrides):
  config = synthetic_config.get_config()
  for key, value in {**RUN, **overrides, "dataset.data_dir": str(data_dir)}.items():
    node, *rest = key.split(".")
    (config[node] if rest else config)[rest[0] if rest else node] = value
  return config


def copy_of(workdir, tmp_path, steps=None) -> pathlib.Path:
  """A copy of `workdir`, with only checkpoints `steps` if given."""
  target = tmp_path / "workdir"
  keep = None if steps is None else {str(s) for s in steps}
  ignore = lambda d, names: [n for n in names if keep is not None and
                             d.endswith("checkpoints") and n not in keep]
  shutil.copytree(workdir, target, ignore=ignore)
  return target


def final_evaluation(workdir) -> dict:
  lines = (pathlib.Path(workdir) / "eval_metrics.jsonl").read_text().splitlines()
  records = [json.loads(line) for line in lines]
  assert [r["step"] for r in records] == [3, TOTAL], records  # Each step evaluated once.
  return records[-1]


def state_digests(workdir, step=TOTAL) -> dict:
  """SHA-256 of every state array of checkpoint `step` (as the checkpoint stores them)."""
  stored = json.loads((pathlib.Path(workdir) / "checkpoints" / str(step) / "checksums" /
                       "metadata").read_text())
  return {k: v for k, v in stored.items() if not k.startswith("item:")}


def assert_same_outcome(workdir, reference):
  assert final_evaluation(workdir) == final_evaluation(reference)
  assert state_digests(workdir) == state_digests(reference)
  leftovers = [p.name for p in (pathlib.Path(workdir) / "checkpoints").iterdir()
               if "tmp" in p.name]
  assert not leftovers


def listing(workdir) -> list[str]:
  return sorted(p.name for p in (pathlib.Path(workdir) / "checkpoints").iterdir())


def flip_bytes(path: pathlib.Path, every=509):
  data = bytearray(path.read_bytes())
  for i in range(0, len(data), every):
    data[i] ^= 0xFF
  path.write_bytes(bytes(data))


def replace_once(path: pathlib.Path, old: str, new: str):
  text = path.read_text()
  assert old in text, (path, old)
  path.write_text(text.replace(old, new, 1))


def largest_array_file(step_dir: pathlib.Path) -> pathlib.Path:
  return max((step_dir / "state" / "ocdbt.process_0" / "d").iterdir(),
             key=lambda p: p.stat().st_size)


def when_appears(directory: pathlib.Path, pattern: str, action, timeout=300.0):
  """Calls action() as soon as a name matching `pattern` appears in `directory`."""
  def watch():
    deadline = time.time() + timeout
    while time.time() < deadline:
      if directory.is_dir() and any(re.fullmatch(pattern, n) for n in os.listdir(directory)):
        action()
        return
      time.sleep(0.002)
  thread = threading.Thread(target=watch, daemon=True)
  thread.start()
  return thread


# --- Fixtures -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def data_dir(synthetic_dataset):
  return synthetic_dataset / "tfds"


@pytest.fixture(scope="module")
def undisturbed(tmp_path_factory, data_dir) -> pathlib.Path:
  """The undisturbed run, a checkpoint after every step."""
  def build(path):
    run_module("brppnet_jax.main", f"--workdir={path / 'workdir'}",
               *flags(data_dir, **EVERY_STEP))
  return build_once(tmp_path_factory, "faults_undisturbed", build) / "workdir"


@pytest.fixture
def warnings():
  """The absl warnings (and errors) logged while a test runs, as one string each."""
  records = []

  class Keep(logging.Handler):
    def emit(self, record):
      if record.levelno >= logging.WARNING:
        records.append(record.getMessage())

  handler = Keep()
  logging.getLogger("absl").addHandler(handler)
  yield records
  logging.getLogger("absl").removeHandler(handler)
