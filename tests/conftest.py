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
import shutil
import socket
import subprocess
import tempfile
import uuid

import cv2
import jax
import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
PYTHON = sys.executable
# The environment of a subprocess that should see one CPU device, not the 8 set above for
# the sharding tests (a full network or a CLI as a user runs it).
ONE_DEVICE = {"XLA_FLAGS": ""}
# One persistent compilation cache for the whole run, in this process and in every training
# process the tests start: the same steps are compiled once, not once per test (on 2 cores a
# compilation of the synthetic train step takes about 20 s).
def _xla_cache(run_id: str) -> pathlib.Path:
  return pathlib.Path(tempfile.gettempdir()) / f"brppnet-tests-xla-{run_id}"


XLA_CACHE = _xla_cache(os.environ.get("PYTEST_XDIST_TESTRUNUID", str(os.getpid())))
jax.config.update("jax_compilation_cache_dir", str(XLA_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def free_port() -> int:
  """A localhost TCP port that nothing listens on (free until someone binds it)."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


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
               # The default cache, under the workdir: tests/runtime/test_paths.py looks there.
               "--config.compilation_cache_dir=",
               env=ONE_DEVICE, timeout=1200)
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
               f"--out={path / f'model.{fmt}'}", env=ONE_DEVICE)
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
# Tests that took 4 s or more on 2 cores (2026-12-01, `make test`): slow as well.
SLOW_TESTS = (
    "tests/data/test_pipeline.py::test_worker_processes_give_the_same_batches_and_resume",
    "tests/evaluation/test_notebook.py::test_notebook_evaluates_the_workdir_and_protects_a_sentence",
    "tests/measure/test_ablate_loss.py::test_ablation_trains_and_its_table_row_holds_the_final_evaluation",
    "tests/measure/test_ablate_loss.py::test_cli_checks_the_readme_before_training",
    "tests/measure/test_ablate_loss.py::test_table_only_rewrites_the_readme_from_stored_files",
    "tests/measure/test_face_measures.py::test_margin_measure_on_the_trained_workdir",
    "tests/measure/test_text_floor.py::test_table_only_writes_the_readme_section_and_names_missing_files",
    "tests/models/test_models.py::test_bfloat16_forward_is_close_to_float32",
    "tests/models/test_models.py::test_forward_under_jit",
    "tests/models/test_models.py::test_frozen_batchnorm_modes",
    "tests/models/test_models.py::test_gru_dropout_one_mask_per_sentence_and_direction",
    "tests/models/test_models.py::test_original_padding_masks_zero_vectors_and_repeats_outputs",
    "tests/models/test_models.py::test_padding_does_not_change_logits",
    "tests/models/test_original_weights.py::test_darknet_file_fills_the_same_as_its_keras_twin",
    "tests/models/test_original_weights.py::test_darknet_short_or_garbled_file_names_file_and_conv",
    "tests/models/test_original_weights.py::test_parity_logits",
    "tests/models/test_original_weights.py::test_parity_text_encoder",
    "tests/models/test_precision.py::test_bfloat16_step_has_no_float32_conv_or_matmul_outside_the_text_encoder",
    "tests/models/test_precision.py::test_the_check_finds_float32_convolutions_in_a_float32_step",
    "tests/protect/test_app.py::test_api_gives_the_cli_result_and_keeps_nothing",
    "tests/protect/test_app.py::test_page_hears_a_spoken_request",
    "tests/protect/test_batch.py::test_a_request_that_protects_nothing_fails_and_writes_nothing",
    "tests/protect/test_batch.py::test_an_exported_model_protects_a_list_without_jax",
    "tests/protect/test_batch.py::test_folder_run_names_outputs_and_keeps_dates_not_gps",
    "tests/protect/test_batch.py::test_list_run_protects_good_rows_and_reports_bad_ones",
    "tests/protect/test_cli.py::test_spoken_request_is_transcribed_and_protected",
    "tests/protect/test_cli.py::test_typed_request_hides_only_the_predicted_pixels",
    "tests/protect/test_cli.py::test_unknown_words_are_named_and_the_request_still_protected",
    "tests/protect/test_export.py::test_exports_give_the_jax_predictors_masks_on_the_test_split",
    "tests/protect/test_export.py::test_stablehlo_runs_without_flax_for_any_batch_size",
    "tests/protect/test_export_errors.py::test_a_workdir_without_a_good_checkpoint_stops_in_one_line_and_writes_nothing",
    "tests/protect/test_metadata.py::test_cli_output_of_a_gps_photo_is_upright_and_bare",
    "tests/protect/test_predictor.py::test_compiles_once_per_batch_size",
    "tests/runtime/test_bucket.py::test_training_and_evaluation_read_and_write_only_the_bucket",
    "tests/runtime/test_device_input.py::test_train_step_on_uint8_batch_equals_the_float32_batch",
    "tests/runtime/test_paths.py::test_main_runs_from_another_directory_and_a_missing_dataset_is_one_line",
    "tests/test_commands.py::test_every_named_command_answers_help",
    "tests/test_readme.py::test_python_block_runs_as_written",
    "tests/test_scheduling.py::test_a_marked_group_runs_on_one_worker",
    "tests/train/test_checkpoints.py::test_a_restart_with_another_batch_size_stops_with_one_line",
    "tests/train/test_checkpoints.py::test_eval_mode_and_predictor_report_a_damaged_checkpoint_in_one_line",
    "tests/train/test_faults.py::test_a_damaged_best_checkpoint_is_moved_aside_and_the_best_is_chosen_again",
    "tests/train/test_faults.py::test_a_damaged_file_of_each_kind_is_moved_aside_and_the_run_finishes",
    "tests/train/test_faults.py::test_sigterm_during_an_asynchronous_save_saves_the_next_step_and_stops",
    "tests/train/test_faults_kill.py::test_sigkill_at_several_points_and_the_restart_ends_as_the_undisturbed_run",
    "tests/train/test_faults_storage.py::test_a_damaged_chunk_read_during_the_run_is_named_and_saved_steps_stay",
    "tests/train/test_faults_storage.py::test_a_full_disk_during_a_save_stops_with_one_line_and_keeps_the_newest_intact",
    "tests/train/test_faults_storage.py::test_a_full_disk_while_writing_eval_metrics_stops_with_one_line",
    "tests/train/test_import_original.py::test_checkpoint_holds_the_original_weights_and_word_table",
    "tests/train/test_import_original.py::test_evaluate_and_protect_with_the_imported_workdir",
    "tests/train/test_loop.py::test_data_parallel_step_on_8_devices_equals_one_device",
    "tests/train/test_loop.py::test_diverging_run_stops_with_error_and_keeps_last_good_checkpoint",
    "tests/train/test_loop.py::test_eval_mode_reproduces_the_training_evaluation",
    "tests/train/test_loop.py::test_nonfinite_loss_freezes_the_state_and_names_the_step",
    "tests/train/test_multiprocess.py::test_sigterm_to_one_host_stops_all_at_one_step_and_the_resumed_run_is_identical",
    "tests/train/test_multiprocess.py::test_two_processes_of_four_devices_match_one_process_of_eight",
    "tests/train/test_step_functions.py::test_frozen_backbone_and_fixed_word_vectors_stay_as_they_are",
    "tests/train/test_step_functions.py::test_learned_word_vectors_and_unfrozen_backbone_train",
)
# The longest tests, started first so that they do not end the run alone on one worker.
LONG_MODULES = ("train/test_multiprocess.py", "train/test_faults")


@pytest.hookimpl(tryfirst=True)  # Before xdist reads the groups.
def pytest_collection_modifyitems(items):
  """Marks slow tests; puts every test of the trained workdir on one worker (`--dist
  loadgroup`: the other never waits while it trains) and the longest tests first."""
  for item in items:
    fixtures = set(getattr(item, "fixturenames", ()))
    if SLOW_FIXTURES & fixtures or item.nodeid.split("[")[0] in SLOW_TESTS:
      item.add_marker(pytest.mark.slow)
    if "trained_workdir" in fixtures:
      item.add_marker(pytest.mark.xdist_group("trained_workdir"))
  # xdist hands out the trained workdir's group first, to one worker; the other takes single
  # tests in this order: the long modules, then the rest.
  def order(item):
    if "trained_workdir" in getattr(item, "fixturenames", ()):
      return 0
    return 1 if any(m in item.nodeid for m in LONG_MODULES) else 2
  items.sort(key=order)


def pytest_configure(config):
  """The controller names the run itself (xdist names it only for its workers), so that it
  knows which compilation cache the run made."""
  if not hasattr(config, "workerinput") and getattr(config.option, "testrunuid", 0) is None:
    config.option.testrunuid = uuid.uuid4().hex


def pytest_sessionfinish(session):
  """The controller removes the run's compilation cache (about 30 MB a run in the temp dir)."""
  config = session.config
  if hasattr(config, "workerinput"):
    return
  run_id = getattr(config.option, "testrunuid", None)  # None without xdist.
  shutil.rmtree(XLA_CACHE, ignore_errors=True)  # The cache of a run without workers.
  if run_id:
    shutil.rmtree(_xla_cache(run_id), ignore_errors=True)
