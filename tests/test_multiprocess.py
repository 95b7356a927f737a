"""Multi-host training and restarts, with real processes on this machine.

- 2 processes x 4 CPU devices train to the same parameters as 1 process x 8 devices.
- A run killed with SIGKILL and restarted ends with the parameters of an uninterrupted run.

Same parameters, across process layouts, means: equal up to float32 summation order. This
network's gradient is very sensitive to it (even 1 vs 8 devices in one process, same data,
differ by ~1% of a step's update after one step, and training amplifies it; Adam's first
steps are nearly lr * sign(g) and flip on tiny gradients). So the comparison uses a large Adam
epsilon (updates proportional to the gradient), two steps, and asks the difference to be a
few percent of the update; different data or a wrong reduction gives a difference of the
order of the update itself.
"""

import os
import signal
import socket
import subprocess
import time

import jax
import numpy as np

from brppnet_jax import checkpointing
from brppnet_jax import inference
from brppnet_jax import parallel
from brppnet_jax import steps
from brppnet_jax import train
from conftest import PYTHON, REPO

STEPS = 2


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def main_command(workdir, data_dir, *extra):
  return [PYTHON, "-m", "brppnet_jax.main", "--config=configs/synthetic.py",
          f"--workdir={workdir}", f"--config.dataset.data_dir={data_dir}",
          "--config.eval_max_examples=24", "--config.eval_batch_size=8",
          "--config.num_image_summaries=0", *extra]


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
  predictor = inference.Predictor.from_workdir(str(workdir), step=step)
  return jax.device_get(predictor.state.params), predictor


def initial_params(config):
  model, tx, _, _ = steps.make_steps(config, steps_per_epoch=1)
  state, _ = train.create_state(config, model, tx, parallel.make_mesh(jax.devices()[:1]),
                                steps.prng_key(config.seed))
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
  differences = relative_difference(one, two, initial_params(predictor.config))
  assert max(differences.values()) < 0.05, differences
  # Evaluation: both runs scored the same 24 expressions, each exactly once.
  lines = [(tmp_path / d / "eval_metrics.jsonl").read_text() for d in ("one", "two")]
  assert all('"num_expressions": 24' in line for line in lines)


def _latest_finished_step(workdir) -> int:
  ckpt_dir = checkpointing.checkpoint_dir(str(workdir))
  if not os.path.isdir(ckpt_dir):
    return 0
  return max([int(n) for n in os.listdir(ckpt_dir) if n.isdigit()], default=0)


def test_sigkill_and_restart_ends_with_the_uninterrupted_parameters(synthetic_dataset, tmp_path):
  data_dir, total = synthetic_dataset / "tfds", 40
  common = (f"--config.total_steps={total}", "--config.checkpoint_every_steps=5",
            f"--config.eval_every_steps={total}", "--config.log_every_steps=5")
  finish([start(main_command(tmp_path / "straight", data_dir, *common), devices=1)])

  killed = start(main_command(tmp_path / "killed", data_dir, *common), devices=1)
  deadline = time.time() + 600
  while _latest_finished_step(tmp_path / "killed") < 10 and killed.poll() is None:
    assert time.time() < deadline, "no checkpoint appeared"
    time.sleep(0.05)
  killed.send_signal(signal.SIGKILL)
  killed.communicate()
  assert killed.returncode == -signal.SIGKILL, "the run finished before it could be killed"
  assert _latest_finished_step(tmp_path / "killed") < total

  resumed = start(main_command(tmp_path / "killed", data_dir, *common), devices=1)
  out, err = resumed.communicate(timeout=600)
  assert resumed.returncode == 0, err[-4000:]
  assert "Resuming from checkpoint step" in err
  straight, _ = final_params(tmp_path / "straight", total)
  restarted, _ = final_params(tmp_path / "killed", total)
  assert_same_params(straight, restarted, rtol=0, atol=0)
