"""Multi-host training and restarts, with real processes on this machine.

- 2 processes x 4 CPU devices train to the same parameters as 1 process x 8 devices.
- (A run killed with SIGKILL and restarted: tests/train/test_faults_kill.py, at several points.)
- SIGTERM to one of two processes: both save the same step and exit 0; the resumed run ends
  with the parameters of an uninterrupted one.

Same parameters, across process layouts, means: equal up to float32 summation order. This
network's gradient sums many terms that nearly cancel, so summation order alone moves it by
tenths of a percent (tests/test_train.py measures one step); Adam's first steps are nearly
lr * sign(g) and would flip on such differences. So the comparison uses a large Adam epsilon
(updates proportional to the gradient) and two steps, and allows a few times the measured
difference; a wrong reduction is shown to fail it.
"""

import os
import re
import signal
import socket
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

STEPS = 2


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


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


def initial_params(config):
  model, tx, _, _ = step_functions.make_steps(config, steps_per_epoch=1)
  state, _ = loop.create_state(config, model, tx, sharding.make_mesh(jax.devices()[:1]),
                                train_state.prng_key(config.seed))
  return jax.device_get(state.params)


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


def replay_in_process(config, *, wrong_rows: bool):
  """Parameters after STEPS steps on 8 devices here, on the run's own global batches."""
  from brppnet_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  from brppnet_jax.data import sources
  config = config.copy_and_resolve_references()
  config.dataset.num_workers = 0
  source = sources.open_source(config, config.dataset.train_split)
  vocab = sources.load_vocab(config)
  batches = pipeline.create_train_iterator(config, source, vocab, seed=config.seed)
  mesh = sharding.make_mesh(jax.devices()[:8])
  model, tx, train_fn, _ = step_functions.make_steps(config, len(source) // config.batch_size)
  state, shardings = loop.create_state(config, model, tx, mesh, train_state.prng_key(config.seed))
  step = step_functions.jit_train(train_fn, mesh, shardings)
  for _ in range(STEPS):
    batch = next(batches)
    if wrong_rows:  # 8 devices x 2 rows: device 1's rows become device 0's.
      batch = {k: np.concatenate([v[:2], v[:2], v[4:]]) for k, v in batch.items()}
    state, _ = step(state, sharding.global_batch(batch, mesh))
  return jax.device_get(state.params)


def test_two_processes_of_four_devices_match_one_process_of_eight(synthetic_dataset, tmp_path):
  data_dir = synthetic_dataset / "tfds"
  common = (f"--config.total_steps={STEPS}", f"--config.eval_every_steps={STEPS}",
            f"--config.checkpoint_every_steps={STEPS}", "--config.optimizer.eps=1000.0",
            "--config.optimizer.learning_rate=0.01")
  single = start(main_command(tmp_path / "one", data_dir, *common), devices=8)
  port = _free_port()
  multi = [start(main_command(tmp_path / "two", data_dir, *common,
                              f"--coordinator_address=localhost:{port}", "--num_processes=2",
                              f"--process_id={i}"), devices=4) for i in range(2)]
  finish([single, *multi])
  one, predictor = final_params(tmp_path / "one", STEPS)
  two, _ = final_params(tmp_path / "two", STEPS)
  start_params = initial_params(predictor.config)
  assert_same_training(one, two, start_params)
  # The same comparison catches a wrong reduction of the same batches.
  wrong = replay_in_process(predictor.config, wrong_rows=True)
  with pytest.raises(AssertionError, match="parameters differ by up to"):
    assert_same_training(one, wrong, start_params)
  # Evaluation: both runs scored the same 24 expressions, each exactly once.
  lines = [(tmp_path / d / "eval_metrics.jsonl").read_text() for d in ("one", "two")]
  assert all('"num_expressions": 24' in line for line in lines)


def _latest_finished_step(workdir) -> int:
  ckpt_dir = checkpoints.checkpoint_dir(str(workdir))
  if not os.path.isdir(ckpt_dir):
    return 0
  return max([int(n) for n in os.listdir(ckpt_dir) if n.isdigit()], default=0)


def start_two_processes(workdir, data_dir, *extra):
  port = _free_port()
  return [start(main_command(workdir, data_dir, *extra, f"--coordinator_address=localhost:{port}",
                             "--num_processes=2", f"--process_id={i}"), devices=4)
          for i in range(2)]


def test_sigterm_to_one_host_stops_all_at_one_step_and_the_resumed_run_is_identical(
    synthetic_dataset, tmp_path):
  data_dir, total, every = synthetic_dataset / "tfds", 9, 3
  # One compilation cache for the three runs: the later ones skip compiling (and it is
  # exercised under two processes). In-process input: no worker processes to start.
  common = (f"--config.total_steps={total}", f"--config.checkpoint_every_steps={every}",
            f"--config.eval_every_steps={total}", f"--config.log_every_steps={every}",
            f"--config.compilation_cache_dir={tmp_path / 'cache'}",
            "--config.dataset.num_workers=0")
  finish(start_two_processes(tmp_path / "straight", data_dir, *common))

  procs = start_two_processes(tmp_path / "preempted", data_dir, *common)
  deadline = time.time() + 600
  while _latest_finished_step(tmp_path / "preempted") < every and procs[1].poll() is None:
    assert time.time() < deadline, "no checkpoint appeared"
    time.sleep(0.05)
  procs[1].send_signal(signal.SIGTERM)  # Only one host hears of the preemption.
  outputs = [proc.communicate(timeout=600) for proc in procs]
  assert [proc.returncode for proc in procs] == [0, 0], [err[-3000:] for _, err in outputs]
  stops = [re.findall(r"Preempted at step (\d+): checkpoint saved", err) for _, err in outputs]
  assert stops[0] == stops[1] and len(stops[0]) == 1, stops  # Both stopped, at one step.
  stop = int(stops[0][0])
  assert every < stop < total and _latest_finished_step(tmp_path / "preempted") == stop

  resumed = start_two_processes(tmp_path / "preempted", data_dir, *common)
  finish(resumed)
  straight, _ = final_params(tmp_path / "straight", total)
  restarted, _ = final_params(tmp_path / "preempted", total)
  assert_same_params(straight, restarted, rtol=0, atol=0)
