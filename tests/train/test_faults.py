"""Fault matrix, part 1: damaged checkpoints, another config, SIGTERM during a save.

Each fault is injected on a copy of one undisturbed run of configs/synthetic.py (see
fault_runs.py) and the run, in this process, must end as the undisturbed one did, or stop
with one line and lose nothing saved. Parts 2 and 3: test_faults_storage.py (full disks,
damaged dataset files), test_faults_kill.py (SIGKILL at several points). The README's
Reliability section lists the matrix.
"""

import json
import os
import re
import signal

from fault_runs import EVERY_STEP
from fault_runs import TOTAL
from fault_runs import assert_same_outcome
from fault_runs import config_of
from fault_runs import copy_of
from fault_runs import data_dir
from fault_runs import flip_bytes
from fault_runs import largest_array_file
from fault_runs import listing
from fault_runs import replace_once
from fault_runs import state_digests
from fault_runs import undisturbed
from fault_runs import warnings
from fault_runs import when_appears
import pytest

from brppnet_jax.train import checkpoints as checkpoints_lib
from brppnet_jax.train import loop
from brppnet_jax.train import resume

# (step damaged, damage, the file and reason the warning names). Each damage sits in another
# step, newest first, so one resume meets them all and falls back to step 1.
DAMAGES = [
    (6, lambda d: flip_bytes(largest_array_file(d)),
     r"6/state: (array \S+: data corruption detected|\d+ array\(s\) differ from their saved "
     r"SHA-256, first \S+)"),
    (5, lambda d: flip_bytes(d / "state" / "array_metadatas" / "process_0", every=97),
     r"5/state/array_metadatas/process_0: not (UTF-8 text|valid JSON) \(.*\)"),
    (4, lambda d: replace_once(d / "data" / "process_0-of-1.json", '"next_index": 4',
                               '"next_index": 5'),
     r"4/data/process_0-of-1\.json: the input position differs from its saved SHA-256"),
    (3, lambda d: replace_once(d / "config" / "metadata", '"batch_size": 16', '"batch_size": 8'),
     r"3/config/metadata: its content differs from its saved SHA-256"),
    (2, lambda d: replace_once(d / "vocab" / "metadata", '"man"', '"men"'),
     r"2/vocab/metadata: its content differs from its saved SHA-256"),
]


def test_a_damaged_file_of_each_kind_is_moved_aside_and_the_run_finishes(
    undisturbed, data_dir, tmp_path, warnings):
  workdir = copy_of(undisturbed, tmp_path)
  for step, damage, _ in DAMAGES:
    damage(workdir / "checkpoints" / str(step))
  loop.train_and_evaluate(config_of(data_dir, **EVERY_STEP), str(workdir))
  ckpt_dir = workdir / "checkpoints"
  moved = [w for w in warnings if w.startswith("Checkpoint step ")]
  assert len(moved) == len(DAMAGES), warnings
  for line, (step, _, named) in zip(moved, DAMAGES):
    assert re.fullmatch(rf"Checkpoint step {step} is damaged: {named}\. Moved aside to "
                        rf"{ckpt_dir}/{step}\.damaged; trying the next older one\.", line), line
    assert "\n" not in line and "TensorStore" not in line
  # Moved aside, not deleted; the run went on from step 1 and saved steps 2-6 anew.
  assert listing(workdir) == sorted(
      [str(s) for s in range(1, TOTAL + 1)] + [f"{s}.damaged" for s, _, _ in DAMAGES])
  assert_same_outcome(workdir, undisturbed)


def test_a_damaged_best_checkpoint_is_moved_aside_and_the_best_is_chosen_again(
    undisturbed, data_dir, tmp_path, warnings):
  workdir = copy_of(undisturbed, tmp_path)
  metrics = workdir / "checkpoints" / "3" / "metrics" / "metrics"
  metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "miou": 0.99}))
  ckpts = checkpoints_lib.Checkpoints(str(workdir), read_only=True)
  assert ckpts.best_step() == 3
  ckpts.close()
  flip_bytes(largest_array_file(workdir / "checkpoints" / "3"))
  loop.train_and_evaluate(config_of(data_dir, **EVERY_STEP), str(workdir))  # Already at 6.
  [moved] = [w for w in warnings if w.startswith("Checkpoint step ")]
  assert re.fullmatch(rf"Checkpoint step 3 is damaged: 3/state: array \S+: data corruption "
                      rf"detected\. Moved aside to {workdir}/checkpoints/3\.damaged; the best "
                      r"by mIoU is chosen among the others\.", moved), moved
  assert "3.damaged" in listing(workdir)
  ckpts = checkpoints_lib.Checkpoints(str(workdir), read_only=True)
  assert ckpts.best_step() == TOTAL
  ckpts.close()
  assert not [w for w in warnings if "read only" in w]  # Orbax's, for a writable folder.
  assert_same_outcome(workdir, undisturbed)


def test_a_newest_step_of_another_config_stops_with_one_line_and_nothing_is_moved(
    undisturbed, data_dir, tmp_path):
  workdir = copy_of(undisturbed, tmp_path)
  before = listing(workdir)
  with pytest.raises(resume.ConfigChangeError) as raised:
    loop.train_and_evaluate(config_of(data_dir, batch_size=8, **EVERY_STEP), str(workdir))
  assert str(raised.value) == (
      f"the checkpoint at step {TOTAL} in {workdir}/checkpoints was trained with another "
      "config: batch_size: 16 -> 8. Use a new workdir, or pass "
      "--config.allow_config_change=True to resume anyway")
  assert listing(workdir) == before
  assert state_digests(workdir) == state_digests(undisturbed)


def test_sigterm_during_an_asynchronous_save_saves_the_next_step_and_stops(
    undisturbed, data_dir, tmp_path, warnings):
  workdir = copy_of(undisturbed, tmp_path, steps=[3])
  config = config_of(data_dir, **EVERY_STEP)
  watcher = when_appears(workdir / "checkpoints", r"4\.orbax-checkpoint-tmp.*",
                         lambda: os.kill(os.getpid(), signal.SIGTERM))
  loop.train_and_evaluate(config, str(workdir))
  watcher.join()
  assert "Preempted at step 5: checkpoint saved, stopping." in warnings
  assert listing(workdir) == ["3", "4", "5"]
  loop.train_and_evaluate(config, str(workdir))
  assert_same_outcome(workdir, undisturbed)
