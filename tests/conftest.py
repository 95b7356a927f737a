"""Test setup: eight CPU devices, so sharding and data-parallel code runs as on a pod."""

import os
import sys

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Let `import configs` work from the repository root.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fcntl
import pathlib
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def run_module(module: str, *args: str, env: dict | None = None, timeout: int = 600,
               check: bool = True) -> subprocess.CompletedProcess:
  """Runs `python -m module args` from the repository root and returns its output."""
  full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
  proc = subprocess.run([PYTHON, "-m", module, *args], cwd=REPO, env=full_env,
                        capture_output=True, text=True, timeout=timeout)
  if check and proc.returncode != 0:
    raise AssertionError(f"python -m {module} failed ({proc.returncode}):\n"
                         f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
  return proc


def _shared_root(tmp_path_factory) -> pathlib.Path:
  """A folder every xdist worker of this run sees (for expensive, shared fixtures)."""
  run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID")
  if run_id is None:
    return tmp_path_factory.getbasetemp()
  root = tmp_path_factory.getbasetemp().parent / f"shared-{run_id}"
  root.mkdir(exist_ok=True)
  return root


def build_once(tmp_path_factory, name: str, build) -> pathlib.Path:
  """Calls build(path) once per test run, whichever worker asks first; others wait."""
  path = _shared_root(tmp_path_factory) / name
  with open(f"{path}.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not (path / "DONE").exists():
      path.mkdir(exist_ok=True)
      build(path)
      (path / "DONE").touch()
  return path


# The synthetic twin as `make demo` makes it, only smaller.
SYNTHETIC_TRAIN, SYNTHETIC_TEST = 1000, 150
TRAIN_STEPS = 1000


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory) -> pathlib.Path:
  """Generated and built synthetic data: `raw/` (released layout) and `tfds/` (data_dir)."""
  def build(path):
    run_module("brppnet_jax.data.synthetic", "--out", str(path / "raw"), "--seed", "0",
               "--num_train", str(SYNTHETIC_TRAIN), "--num_test", str(SYNTHETIC_TEST))
    run_module("brppnet_jax.data.build", "--dataset=synthetic", f"--manual_dir={path / 'raw'}",
               f"--data_dir={path / 'tfds'}")
  return build_once(tmp_path_factory, "synthetic", build)


@pytest.fixture(scope="session")
def trained_workdir(tmp_path_factory, synthetic_dataset) -> pathlib.Path:
  """A workdir that configs/synthetic.py trained briefly (single CPU device)."""
  def build(path):
    run_module("brppnet_jax.main", "--config=configs/synthetic.py", f"--workdir={path}",
               f"--config.dataset.data_dir={synthetic_dataset / 'tfds'}",
               f"--config.total_steps={TRAIN_STEPS}", f"--config.eval_every_steps={TRAIN_STEPS}",
               f"--config.checkpoint_every_steps={TRAIN_STEPS // 2}",
               env={"XLA_FLAGS": ""}, timeout=1200)
  return build_once(tmp_path_factory, "trained", build)
