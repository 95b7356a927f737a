"""Fault matrix, part 3: SIGKILL at several points of one run, and the restart (see
test_faults.py). The points vary with BRPPNET_FAULT_SEED (printed; set it to replay a failure).
"""

import os
import queue
import random
import re
import signal
import subprocess
import threading
import time

from fault_runs import SEED
from fault_runs import assert_same_outcome
from fault_runs import data_dir
from fault_runs import flags
from fault_runs import undisturbed
from fault_runs import when_appears

from conftest import PYTHON
from conftest import REPO


class Child:
  """A training process whose log lines arrive in a queue as they are written."""

  def __init__(self, workdir, data_dir, **overrides):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    self.proc = subprocess.Popen(
        [PYTHON, "-m", "brppnet_jax.main", f"--workdir={workdir}",
         *flags(data_dir, **overrides)], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    self.lines, self.log = queue.Queue(), []
    threading.Thread(target=self._read, daemon=True).start()

  def _read(self):
    for line in self.proc.stderr:
      self.log.append(line)
      self.lines.put(line)
    self.lines.put(None)

  def wait_for_line(self, pattern: str, timeout=300.0) -> bool:
    """True once a line matches; False if the run ended first (it must have succeeded)."""
    deadline = time.time() + timeout
    while (line := self.lines.get(timeout=max(0.0, deadline - time.time()))) is not None:
      if re.search(pattern, line):
        return True
    self.finish()
    return False

  def kill(self) -> None:
    self.proc.send_signal(signal.SIGKILL)
    code = self.proc.wait(timeout=60)
    assert code in (-signal.SIGKILL, 0), "".join(self.log)[-4000:]

  def finish(self):
    assert self.proc.wait(timeout=600) == 0, "".join(self.log)[-4000:]


def after_step(step: int) -> str:
  return rf"\] \[{step}\] train/"  # clu's log line of the step's training scalars.


def test_sigkill_at_several_points_and_the_restart_ends_as_the_undisturbed_run(
    undisturbed, data_dir, tmp_path):
  """Checkpoints at 3 and 6 (evaluated before each is saved); one process killed per point."""
  rng = random.Random(SEED)
  print(f"BRPPNET_FAULT_SEED={SEED}")
  workdir = tmp_path / "killed"
  cadence = {"checkpoint_every_steps": 3}
  ckpt_dir = workdir / "checkpoints"

  child = Child(workdir, data_dir, **cadence)  # Before the first save.
  child.wait_for_line(after_step(rng.choice([1, 2])))
  child.kill()
  assert not ckpt_dir.exists() or not [n for n in os.listdir(ckpt_dir) if n.isdigit()]

  child = Child(workdir, data_dir, **cadence)  # During the evaluation of step 3.
  if child.wait_for_line(after_step(3)):
    time.sleep(rng.uniform(0.0, 0.3))
    child.kill()

  child = Child(workdir, data_dir, **cadence)  # During the next asynchronous save.
  saving = threading.Event()
  when_appears(ckpt_dir, r"[36]\.orbax-checkpoint-tmp.*", saving.set, timeout=600)
  while not saving.wait(timeout=0.05):
    assert child.proc.poll() in (None, 0), "".join(child.log)[-4000:]
    if child.proc.poll() == 0:
      break
  time.sleep(rng.uniform(0.0, 0.05))
  child.kill()

  child = Child(workdir, data_dir, **cadence)  # Between the saves (when 6 is not saved yet).
  if child.wait_for_line(after_step(rng.choice([4, 5]))):
    child.kill()

  child = Child(workdir, data_dir, **cadence)
  child.finish()
  assert_same_outcome(workdir, undisturbed)
  # Quiet logs: the config once, no library warning per save.
  log = "".join(child.log)
  assert log.count("] Config:") == 1 and "[Hyperparameters]" not in log
  assert "tracked_metric" not in log and "Traceback" not in log
