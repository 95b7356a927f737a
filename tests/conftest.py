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
import tempfile

import cv2
import jax
import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
PYTHON = sys.executable
# One persistent compilation cache for the whole run, in this process and in every training
# process the tests start: the same steps are compiled once, not once per test (on 2 cores a
# compilation of the synthetic train step takes about 20 s).
XLA_CACHE = pathlib.Path(tempfile.gettempdir()) / (
    "brppnet-tests-xla-" + os.environ.get("PYTEST_XDIST_TESTRUNUID", str(os.getpid())))
jax.config.update("jax_compilation_cache_dir", str(XLA_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def run_module(module: str, *args: str, env: dict | None = None, timeout: int = 600,
               check: bool = True) -> subprocess.CompletedProcess:
  """Runs `python -m module args` from the repository root and returns its output."""
  full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
  if module == "brppnet_jax.main" and not any("compilation_cache_dir" in a for a in args):
    args = (*args, f"--config.compilation_cache_dir={XLA_CACHE}")
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


# An in-memory source of encoded RPCOCO records, for the input pipeline and evaluation tests.
NUM_RECORDS = 10  # 19 expressions.
RECORD_SIZES = [(40, 30), (30, 44), (36, 36), (50, 20), (24, 48)]  # (w, h), wide and tall.


def encoded_record(i: int) -> dict:
  """Record i: a random JPEG, a PNG mask and 1 + i % 3 expressions naming the ref."""
  w, h = RECORD_SIZES[i % len(RECORD_SIZES)]
  rng = np.random.default_rng(i)
  rgb = rng.integers(0, 256, (h, w, 3), np.uint8)
  mask = np.zeros((h, w), np.uint8)
  mask[h // 4:3 * h // 4, w // 5:w // 2 + i] = 255
  return {
      "image": cv2.imencode(".jpg", rgb[..., ::-1])[1].tobytes(),
      "mask": cv2.imencode(".png", mask)[1].tobytes(),
      "sentences": np.array([f"protect privacy of ref{i} s{j}".encode()
                             for j in range(1 + i % 3)], dtype=object),
      "ref_id": np.int64(100 + i),
      "image_name": f"img{i}.jpg".encode(),
      "bbox": np.zeros((4,), np.int32),
  }


@pytest.fixture(scope="module")
def record_source() -> list[dict]:
  return [encoded_record(i) for i in range(NUM_RECORDS)]


@pytest.fixture(scope="module")
def record_vocab(record_source):
  from brppnet_jax.data import transforms  # pylint: disable=g-import-not-at-top
  from brppnet_jax.data import vocab as vocab_lib  # pylint: disable=g-import-not-at-top
  return vocab_lib.Vocabulary.build(
      transforms.as_text(s) for r in record_source for s in r["sentences"])


@pytest.fixture
def record_config():
  """The paper's config at 32 px, batches of 4, in-process loading."""
  from configs import default  # pylint: disable=g-import-not-at-top
  config = default.get_config()
  config.dataset.input_size, config.dataset.word_len = 32, 8
  config.model.seg_out_stride = 2
  config.batch_size = config.eval_batch_size = 4
  config.dataset.num_workers, config.dataset.prefetch = 0, 2
  return config


@pytest.fixture(scope="session")
def trained_predictor(trained_workdir):
  """The JAX `Predictor` of trained_workdir's best checkpoint (one per test process)."""
  from brppnet_jax.protect import predictor  # pylint: disable=g-import-not-at-top
  return predictor.Predictor.from_workdir(str(trained_workdir))


def _exported(tmp_path_factory, trained_workdir, fmt: str) -> pathlib.Path:
  """trained_workdir's best checkpoint exported once per run by the export command."""
  def build(path):
    run_module("brppnet_jax.protect.export", f"--workdir={trained_workdir}", f"--format={fmt}",
               f"--out={path / f'model.{fmt}'}", env={"XLA_FLAGS": ""})
  return build_once(tmp_path_factory, f"exported_{fmt}", build) / f"model.{fmt}"


@pytest.fixture(scope="session")
def exported_tflite(tmp_path_factory, trained_workdir) -> pathlib.Path:
  """model.tflite (float32) of trained_workdir, beside its sidecar model.tflite.json."""
  return _exported(tmp_path_factory, trained_workdir, "tflite")


@pytest.fixture(scope="session")
def exported_stablehlo(tmp_path_factory, trained_workdir) -> pathlib.Path:
  """model.stablehlo (jax.export, symbolic batch) of trained_workdir, beside its sidecar."""
  return _exported(tmp_path_factory, trained_workdir, "stablehlo")


# Fixtures that train a network or build a dataset: a test that asks for one is slow.
SLOW_FIXTURES = {"synthetic_dataset", "trained_workdir"}


def pytest_collection_modifyitems(items):
  for item in items:
    if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
      item.add_marker(pytest.mark.slow)
