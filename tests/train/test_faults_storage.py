"""Fault matrix, part 2: a full disk during a save and while writing eval_metrics.jsonl, and
damaged dataset files (see test_faults.py).

Disk full during a save: a real 12 MB tmpfs in a user and mount namespace (`unshare`) where
the machine allows it unprivileged, otherwise a file size limit (RLIMIT_FSIZE: "file too
large"), on a child process. While writing eval_metrics.jsonl: ENOSPC injected in this
process at the file's write call, after half the line.
"""

import errno
import os
import pathlib
import re
import shutil
import subprocess

from fault_runs import EVERY_STEP
from fault_runs import TOTAL
from fault_runs import assert_same_outcome
from fault_runs import config_of
from fault_runs import copy_of
from fault_runs import data_dir
from fault_runs import flags
from fault_runs import listing
from fault_runs import replace_once
from fault_runs import state_digests
from fault_runs import undisturbed
import pytest

from brppnet_jax.runtime import paths
from brppnet_jax.train import checkpoints as checkpoints_lib
from brppnet_jax.train import loop

from conftest import PYTHON
from conftest import REPO


def test_a_full_disk_while_writing_eval_metrics_stops_with_one_line(
    undisturbed, data_dir, tmp_path, monkeypatch):
  workdir = copy_of(undisturbed, tmp_path, steps=[1, 2, 3, 4, 5])
  metrics_file = workdir / "eval_metrics.jsonl"
  before = metrics_file.read_text().splitlines()[0] + "\n"  # The run drops step 6's line.

  class HalfWritten:
    """A file of which one write stores half its text and then finds the disk full."""
    def __init__(self, f):
      self.f = f
    def write(self, text):
      self.f.write(text[:len(text) // 2])
      self.f.flush()
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    def __enter__(self):
      return self
    def __exit__(self, *exc):
      self.f.close()

  real_open = open
  monkeypatch.setattr(paths, "open", lambda f, mode="r", **kw: HalfWritten(
      real_open(f, mode, **kw)) if mode == "a" else real_open(f, mode, **kw), raising=False)
  with pytest.raises(checkpoints_lib.WriteError) as raised:
    loop.train_and_evaluate(config_of(data_dir, **EVERY_STEP), str(workdir))
  assert str(raised.value) == (f"could not write {metrics_file} at step {TOTAL}: no space left "
                               "on device; the newest intact checkpoint is step 5")
  assert metrics_file.read_text() == before  # Not half a line.
  assert listing(workdir) == ["1", "2", "3", "4", "5"]
  monkeypatch.undo()
  loop.train_and_evaluate(config_of(data_dir, **EVERY_STEP), str(workdir))
  assert_same_outcome(workdir, undisturbed)


def _can_mount_tmpfs() -> bool:
  try:
    return subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                           "mount -t tmpfs -o size=1m tmpfs /mnt"],
                          capture_output=True, timeout=30).returncode == 0
  except (OSError, subprocess.TimeoutExpired):
    return False


def _size_mb(directory: pathlib.Path) -> float:
  return sum(f.stat().st_size for f in directory.rglob("*") if f.is_file()) / 2**20


def test_a_full_disk_during_a_save_stops_with_one_line_and_keeps_the_newest_intact(
    undisturbed, data_dir, tmp_path):
  out = tmp_path / "out"
  main = [PYTHON, "-m", "brppnet_jax.main", *flags(data_dir, **EVERY_STEP)]
  if _can_mount_tmpfs():
    # The same run's first checkpoint fits (the undisturbed run wrote it, 11 to 18 MB as the
    # arrays compress), the second not.
    size_mb = int(1.5 * _size_mb(undisturbed / "checkpoints" / "1")) + 1
    mount = tmp_path / "small_disk"
    mount.mkdir()
    script = (f'mount -t tmpfs -o size={size_mb}m tmpfs "{mount}" && "$@" --workdir="{mount}/w"; '
              f'rc=$?; cp -a "{mount}/w" "{out}"; exit $rc')
    cmd = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh", *main]
    workdir_seen, reason, limit = f"{mount}/w", "no space left on device", None
    expected = (2, "1")
  else:  # Each file at most 1 MB: the first array file of the first save is larger.
    cmd, workdir_seen, reason = [*main, f"--workdir={out}"], str(out), "file too large"
    limit = lambda: __import__("resource").setrlimit(
        __import__("resource").RLIMIT_FSIZE, (1 << 20, 1 << 20))
    expected = (1, None)
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
  proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
                        preexec_fn=limit)
  assert proc.returncode == 1, proc.stderr[-3000:]
  last = proc.stderr.strip().splitlines()[-1]
  found = re.fullmatch(rf"error: checkpoint step (\d+) could not be written to "
                       rf"{workdir_seen}/checkpoints/\1: {reason}; (the newest intact "
                       r"checkpoint is step (\d+)|no checkpoint was written before it)", last)
  assert found, last
  assert "Traceback" not in proc.stderr
  failed, newest = int(found.group(1)), found.group(3)
  assert (failed, newest) == expected
  kept = listing(out)
  assert kept == ([newest] if newest else []), kept  # Nothing half written left behind.
  if newest:
    ckpts = checkpoints_lib.Checkpoints(str(out), read_only=True)
    assert ckpts.all_steps() == [int(newest)]
    ckpts.close()


# --- Damaged dataset files ----------------------------------------------------------------

def damaged_copy(data_dir, tmp_path, name, damage) -> pathlib.Path:
  copy = tmp_path / "tfds"
  shutil.copytree(data_dir, copy)
  [target] = (copy / "rpcoco" / "synthetic").glob(f"*/{name}")
  damage(target)
  return copy, target


def flip_one_byte(path: pathlib.Path, at: float):
  data = bytearray(path.read_bytes())
  data[int(len(data) * at)] ^= 0xFF
  path.write_bytes(bytes(data))


@pytest.mark.parametrize("name, damage, reason", [
    ("rpcoco-train.array_record-00000-of-00001",
     lambda p: p.write_bytes(p.read_bytes()[:p.stat().st_size // 2]),
     r"damaged ArrayRecord shard \((Invalid|Corrupted) Riegeli/records file: .*\); build the "
     r"dataset again"),
    ("vocab.txt", lambda p: replace_once(p, "man\n", "men\n"),
     r"its content differs from the SHA-256 the dataset build recorded in \S+/metadata\.json; "
     r"build the dataset again"),
], ids=["truncated shard", "changed vocabulary word"])
def test_a_damaged_dataset_file_is_named_at_start(data_dir, tmp_path, name, damage, reason):
  damaged, target = damaged_copy(data_dir, tmp_path, name, damage)
  workdir = tmp_path / "workdir"
  with pytest.raises(ValueError) as raised:
    loop.train_and_evaluate(config_of(damaged, **EVERY_STEP), str(workdir))
  assert re.fullmatch(rf"{target}: {reason}", str(raised.value)), str(raised.value)
  assert not workdir.exists()  # Stopped before anything was written.


def test_a_damaged_chunk_read_during_the_run_is_named_and_saved_steps_stay(
    undisturbed, data_dir, tmp_path):
  """A chunk inside a shard is checked (by its hash) when read: here by the evaluation."""
  shard = "rpcoco-test.array_record-00000-of-00001"
  damaged, target = damaged_copy(data_dir, tmp_path, shard, lambda p: flip_one_byte(p, 0.01))
  workdir = copy_of(undisturbed, tmp_path, steps=[1, 2, 3, 4, 5])
  with pytest.raises(ValueError) as raised:
    loop.train_and_evaluate(config_of(damaged, **EVERY_STEP), str(workdir))
  assert re.fullmatch(rf"{target}: damaged ArrayRecord shard \(Corrupted Riegeli/records file: "
                      r"chunk data hash mismatch .*\); build the dataset again",
                      str(raised.value)), str(raised.value)
  assert listing(workdir) == ["1", "2", "3", "4", "5"]
  assert state_digests(workdir, 5) == state_digests(undisturbed, 5)
