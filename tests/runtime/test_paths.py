"""One path layer for local paths and URLs; the package and its configs from any directory;
a missing dataset in one line."""

import os
import subprocess

from brppnet_jax.runtime import compilation_cache
from brppnet_jax.runtime import paths
from brppnet_jax.train import checkpoints as checkpoints_lib
from configs import synthetic as synthetic_config

from conftest import PYTHON
from conftest import REPO


def test_urls_stay_urls_and_local_paths_become_absolute(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert paths.is_url("gs://bucket/run") and not paths.is_url("/data/gs:/x")
  assert os.fspath(paths.absolute("gs://bucket/run")) == "gs://bucket/run"
  assert os.fspath(paths.absolute("run")) == str(tmp_path / "run")
  # os.path.abspath would have made this a local "gs:/bucket/run" folder.
  assert checkpoints_lib.checkpoint_dir("gs://bucket/run") == "gs://bucket/run/checkpoints"
  assert checkpoints_lib.checkpoint_dir("run") == str(tmp_path / "run" / "checkpoints")


def test_text_files_round_trip(tmp_path):
  target = tmp_path / "sub" / "log.jsonl"
  paths.makedirs(target.parent)
  paths.append_text(target, "a\n")
  paths.append_text(target, "b\n")
  assert paths.read_lines(target) == ["a", "b"]
  (tmp_path / "crlf.txt").write_bytes(b"x\r\ny")
  assert paths.read_lines(tmp_path / "crlf.txt") == ["x", "y"]
  with paths.open_text(tmp_path / "crlf.txt") as f:
    assert f.read().splitlines() == ["x", "y"]


def test_compilation_cache_goes_under_the_workdir_unless_configured():
  config = synthetic_config.get_config()
  assert compilation_cache.cache_dir(config, "/w") == "/w/compilation_cache"
  assert compilation_cache.cache_dir(config, "gs://b/w") == "gs://b/w/compilation_cache"
  config.compilation_cache_dir = "gs://b/shared_cache"
  assert compilation_cache.cache_dir(config, "/w") == "gs://b/shared_cache"
  config.compilation_cache_dir = "off"
  assert compilation_cache.cache_dir(config, "/w") is None


def test_config_paths_resolve_against_the_installed_configs(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  expected = str(REPO / "configs" / "rpcocom.py")
  assert paths.resolve_config_file("configs/rpcocom.py") == expected
  assert paths.resolve_config_file("rpcocom.py") == expected
  (tmp_path / "configs").mkdir()
  (tmp_path / "configs" / "rpcocom.py").write_text("")
  assert paths.resolve_config_file("configs/rpcocom.py") == "configs/rpcocom.py"  # Local first.


def run_main_elsewhere(cwd, *args):
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
  return subprocess.run([PYTHON, "-m", "brppnet_jax.main", "--config=configs/synthetic.py",
                         *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_main_runs_from_another_directory_and_a_missing_dataset_is_one_line(tmp_path):
  empty = tmp_path / "no_data"
  empty.mkdir()
  proc = run_main_elsewhere(tmp_path, f"--workdir={tmp_path / 'w'}",
                            f"--config.dataset.data_dir={empty}")
  assert proc.returncode != 0
  last = proc.stderr.strip().splitlines()[-1]
  assert last == (
      f"error: no prepared dataset rpcoco/synthetic in {empty}/rpcoco/synthetic; build it "
      "with: python -m brppnet_jax.data.synthetic --out RAW_DIR && python -m "
      "brppnet_jax.data.build --dataset=synthetic --manual_dir=RAW_DIR "
      f"--data_dir={empty} (or point --config.dataset.data_dir at where it was built)")
  assert "Traceback" not in proc.stderr


def test_training_leaves_its_compiled_steps_in_the_workdir_cache(trained_workdir):
  names = os.listdir(trained_workdir / compilation_cache.DIR_NAME)
  assert any(n.startswith("jit_train_step-") for n in names), names
  assert any(n.startswith("jit_predict_step-") for n in names), names
