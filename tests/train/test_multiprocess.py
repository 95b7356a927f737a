"""Multi-host training and restarts, with real processes on this machine.

- 2 processes x 4 CPU devices train to the same parameters as 1 process x 8 devices (this
  one, on the run's own batches).
- (A run killed with SIGKILL and restarted: tests/train/test_faults_kill.py, at several points.)
- SIGTERM to one of two processes: both save the same step and exit 0; the resumed run ends
  with the parameters of an uninterrupted one.

Same parameters, across process layouts, means: equal up to float32 summation order. This
network's gradient sums many terms that nearly cancel, so summation order alone moves it by
tenths of a percent (tests/train/test_loop.py measures one step); Adam's first steps are nearly
lr * sign(g) and would flip on such differences. So the comparison uses a large Adam epsilon
(updates proportional to the gradient) and two steps, and allows a few times the measured
difference; a wrong reduction is shown to fail it.
"""

import os
import re
import signal
import subprocess
import time

import jax
import numpy as np
import pytest

from brppnet_jax.protect import predictor as predictor_lib
from brppnet_jax.runtime import sharding
from brppnet_jax.train import checkpoints
from brppnet_jax.train import loop
from brppnet_jax.train import step_functions
from brppnet_jax.train import train_state

from conftest import PYTHON
from conftest import REPO
from conftest import XLA_CACHE
from conftest import free_port

STEPS = 2
pytestmark = pytest.mark.xdist_group("two_processes")  # One worker, one shared run.


def main_command(workdir, data_dir, *extra):
  return [PYTHON, "-m", "brppnet_jax.main", "--config=configs/synthetic.py",
          f"--workdir={workdir}", f"--config.dataset.data_dir={data_dir}",
          "--config.eval_max_examples=24", "--config.eval_batch_size=8",
          "--config.num_image_summaries=0", f"--config.compilation_cache_dir={XLA_CACHE}", *extra]


def start(cmd, devices: int) -> subprocess.Popen:
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
         "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
  return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def finish(procs, timeout=600):
  for proc in procs:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}:\n{out[-2000:]}\n{err[-4000:]}"


def final_params(workdir, step):
  predictor = predictor_lib.Predictor.from_workdir(str(workdir), step=step)
  return jax.device_get(predictor.state.params), predictor


def relative_difference(a, b, start) -> dict:
  """Per top-level module: |a - b| / |a - start| over all its parameters."""
  flat = lambda tree: np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])
  return {k: float(np.linalg.norm(flat(a[k]) - flat(b[k])) /
                   np.linalg.norm(flat(a[k]) - flat(start[k]))) for k in a}


def assert_same_params(a, b, **tol):
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(leaves_a) == len(leaves_b)
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_allclose(x, y, **tol)


# Measured 2026-11-27 (jax 0.12.0.1, 2-core CPU): after STEPS steps, 2 processes x 4 devices
# differ from 1 process x 8 devices by at most PROCESS_LAYOUT_NOISE of a module's update (the
# largest over the top-level modules). Replaying the two global batches in this process with
# device 1's rows replaced by device 0's (one device's rows counted twice) differs by
# WRONG_ROWS_DIFFERENCE.
PROCESS_LAYOUT_NOISE = 0.028
WRONG_ROWS_DIFFERENCE = 1.59
PROCESS_LAYOUT_TOLERANCE = 3 * PROCESS_LAYOUT_NOISE


def assert_same_training(a, b, start):
  differences = relative_difference(a, b, start)
  print(f"largest relative difference: {max(differences.values()):.3g}")
  assert max(differences.values()) < PROCESS_LAYOUT_TOLERANCE, (
      f"parameters differ by up to {max(differences.values()):.3g} of a module's update "
      f"(float32 noise: {PROCESS_LAYOUT_NOISE}): {differences}")


def one_process_of_eight(config):
  """Parameters at the start and after STEPS steps on 8 devices in this process, on the run's
  own global batches (the library's input pipeline, state and step, as `main` runs them):
  with the batches as they are, and with device 1's rows replaced by device 0's."""
  from brppnet_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  from brppnet_jax.data import sources
  config = config.copy_and_resolve_references()
  config.dataset.num_workers = 0
  source = sources.open_source(config, config.dataset.train_split)
  vocab = sources.load_vocab(config)
  batches = pipeline.create_train_iterator(config, source, vocab, seed=config.seed)
  mesh = sharding.make_mesh(jax.devices()[:8])
  model, tx, train_fn, _ = step_functions.make_steps(config, len(source) // config.batch_size)
  start, shardings = loop.create_state(config, model, tx, mesh, train_state.prng_key(config.seed))
  step = step_functions.jit_train(train_fn, mesh, shardings)
  copy = lambda state: jax.tree.map(lambda x: x.copy(), state)  # The step donates its state.
  right, wrong = copy(start), copy(start)
  for _ in range(STEPS):
    batch = next(batches)
    wrong_batch = {k: np.concatenate([v[:2], v[:2], v[4:]]) for k, v in batch.items()}
    right, _ = step(right, sharding.global_batch(batch, mesh))
    wrong, _ = step(wrong, sharding.global_batch(wrong_batch, mesh))
  return jax.device_get((start.params, right.params, wrong.params))


# One run of two processes serves both tests: its step STEPS for the layout comparison, its
# end for the restart's. Every run here has these settings.
TOTAL, EVERY = 6, STEPS
SETTINGS = {"total_steps": TOTAL, "checkpoint_every_steps": EVERY, "keep_checkpoints": 3,
            "eval_every_steps": TOTAL, "log_every_steps": EVERY, "optimizer.eps": 1000.0,
            "optimizer.learning_rate": 0.01, "dataset.num_workers": 0}


def settings(**overrides) -> list[str]:
  return [f"--config.{k}={v}" for k, v in {**SETTINGS, **overrides}.items()]


def start_two_processes(workdir, data_dir):
  port = free_port()
  return [start(main_command(workdir, data_dir, *settings(),
                             f"--coordinator_address=localhost:{port}", "--num_processes=2",
                             f"--process_id={i}"), devices=4)
          for i in range(2)]


@pytest.fixture(scope="module")
def straight(synthetic_dataset, tmp_path_factory):
  """The undisturbed run of 2 processes x 4 devices (checkpoints at 2, 4 and 6)."""
  workdir = tmp_path_factory.mktemp("straight")
  finish(start_two_processes(workdir, synthetic_dataset / "tfds"))
  return workdir


def test_two_processes_of_four_devices_match_one_process_of_eight(straight):
  two, predictor = final_params(straight, STEPS)
  start, one, wrong = one_process_of_eight(predictor.config)
  assert_same_training(one, two, start)
  # The same comparison catches a wrong reduction of the same batches.
  with pytest.raises(AssertionError, match="parameters differ by up to"):
    assert_same_training(one, wrong, start)
  # Evaluation: the two processes scored the 24 expressions, each exactly once.
  assert '"num_expressions": 24' in (straight / "eval_metrics.jsonl").read_text()


def _latest_finished_step(workdir) -> int:
  ckpt_dir = checkpoints.checkpoint_dir(str(workdir))
  if not os.path.isdir(ckpt_dir):
    return 0
  return max([int(n) for n in os.listdir(ckpt_dir) if n.isdigit()], default=0)


def test_sigterm_to_one_host_stops_all_at_one_step_and_the_resumed_run_is_identical(
    straight, synthetic_dataset, tmp_path):
  data_dir, workdir = synthetic_dataset / "tfds", tmp_path / "preempted"
  procs = start_two_processes(workdir, data_dir)
  deadline = time.time() + 600
  while _latest_finished_step(workdir) < EVERY and procs[1].poll() is None:
    assert time.time() < deadline, "no checkpoint appeared"
    time.sleep(0.05)
  procs[1].send_signal(signal.SIGTERM)  # Only one host hears of the preemption.
  outputs = [proc.communicate(timeout=600) for proc in procs]
  assert [proc.returncode for proc in procs] == [0, 0], [err[-3000:] for _, err in outputs]
  stops = [re.findall(r"Preempted at step (\d+): checkpoint saved", err) for _, err in outputs]
  assert stops[0] == stops[1] and len(stops[0]) == 1, stops  # Both stopped, at one step.
  stop = int(stops[0][0])
  assert EVERY < stop < TOTAL and _latest_finished_step(workdir) == stop

  finish(start_two_processes(workdir, data_dir))
  restarted, _ = final_params(workdir, TOTAL)
  assert_same_params(final_params(straight, TOTAL)[0], restarted, rtol=0, atol=0)
