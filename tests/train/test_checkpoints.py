"""Checkpoint retention (latest and best by mIoU), what a checkpoint carries, damaged
checkpoints and resuming with a changed config."""

import logging
import pathlib
import shutil

import jax.numpy as jnp
import numpy as np
import pytest

from brppnet_jax.protect import predictor
from brppnet_jax.train import checkpoints as checkpoints_lib
from brppnet_jax.train import resume
from configs import synthetic as synthetic_config

from conftest import ONE_DEVICE
from conftest import TRAIN_STEPS
from conftest import run_module


def small_state(value: float):
  return {"w": jnp.full((3,), value, jnp.float32), "step": jnp.asarray(int(value))}


def save(ckpts, step, miou=None, config=None):
  config = config or synthetic_config.get_config()
  metrics = None if miou is None else {"miou": miou}
  ckpts.save(step, small_state(step), config=config, vocab_words=["<pad>", "<unk>", "man"],
             expressions=["protect privacy of man"], metrics=metrics, force=True)
  ckpts.wait()


def test_keeps_the_latest_and_the_best_even_when_the_latest_is_worse(tmp_path):
  ckpts = checkpoints_lib.Checkpoints(str(tmp_path), keep=1)
  save(ckpts, 1, miou=0.5)
  save(ckpts, 2, miou=0.3)
  save(ckpts, 3)  # Not evaluated.
  save(ckpts, 4, miou=0.2)
  assert ckpts.all_steps() == [1, 4]
  assert ckpts.best_step() == 1 and ckpts.latest_step() == 4
  save(ckpts, 5, miou=0.9)
  assert ckpts.all_steps() == [5] and ckpts.best_step() == 5
  ckpts.close()
  # A restarted run reads the stored metrics: the best survives a worse new checkpoint.
  reopened = checkpoints_lib.Checkpoints(str(tmp_path), keep=1)
  assert reopened.best_step() == 5
  save(reopened, 6, miou=0.1)
  save(reopened, 7, miou=0.2)
  assert reopened.all_steps() == [5, 7] and reopened.best_step() == 5
  reopened.close()


def test_restores_state_config_vocabulary_and_expressions(tmp_path):
  config = synthetic_config.get_config()
  config.batch_size = 12
  ckpts = checkpoints_lib.Checkpoints(str(tmp_path))
  save(ckpts, 7, miou=0.4, config=config)
  state = ckpts.restore_state(7, small_state(0))
  np.testing.assert_array_equal(state["w"], np.full((3,), 7.0))
  restored_config, words, expressions = ckpts.restore_metadata(7)
  assert restored_config.batch_size == 12
  assert list(restored_config.model.stage_blocks) == list(config.model.stage_blocks)
  assert words == ["<pad>", "<unk>", "man"] and expressions == ["protect privacy of man"]
  ckpts.close()


def test_resolve_step_names_the_directory_and_the_available_steps(tmp_path):
  ckpts = checkpoints_lib.Checkpoints(str(tmp_path))
  with pytest.raises(FileNotFoundError, match="no checkpoint in .*checkpoints"):
    checkpoints_lib.resolve_step(ckpts, None, str(tmp_path))
  save(ckpts, 3, miou=0.1)
  assert checkpoints_lib.resolve_step(ckpts, None, str(tmp_path)) == 3
  with pytest.raises(FileNotFoundError, match=r"no checkpoint for step 9 .*available steps: \[3\]"):
    checkpoints_lib.resolve_step(ckpts, 9, str(tmp_path))
  ckpts.close()


def flip_byte_in_state_data(workdir, step):
  """Flips one byte in the middle of the largest array file of checkpoint `step`'s state."""
  state_dir = pathlib.Path(checkpoints_lib.checkpoint_dir(str(workdir))) / str(step) / "state"
  files = [p for p in state_dir.rglob("*") if p.is_file() and p.parent.name == "d"]
  target = max(files, key=lambda p: p.stat().st_size)
  data = bytearray(target.read_bytes())
  data[len(data) // 2] ^= 0xFF
  target.write_bytes(bytes(data))


def big_state(value: float):
  return {"w": jnp.arange(4096, dtype=jnp.float32) * value, "step": jnp.asarray(int(value))}


def save_big(ckpts, step, config):
  ckpts.save(step, big_state(step), config=config, vocab_words=["<pad>", "<unk>", "man"],
             force=True)
  ckpts.wait()


def test_a_flipped_byte_is_caught_and_the_restart_falls_back_to_the_older_checkpoint(
    tmp_path, caplog):
  config = synthetic_config.get_config()
  words = ["<pad>", "<unk>", "man"]
  ckpts = checkpoints_lib.Checkpoints(str(tmp_path))
  save_big(ckpts, 10, config)
  save_big(ckpts, 20, config)
  flip_byte_in_state_data(tmp_path, 20)
  # TensorStore reads the damaged file without complaint; the checksum does not match.
  with pytest.raises(checkpoints_lib.CorruptCheckpointError,
                     match=r"^checkpoint step 20 in .*/checkpoints is damaged: 20/state: 1 "
                           r"array\(s\) differ from their saved SHA-256, first \['w'\]$"):
    ckpts.restore_state(20, big_state(0))
  with caplog.at_level(logging.WARNING):
    step, state = resume.restore_latest(ckpts, big_state(0), None, config, words)
  assert step == 10
  np.testing.assert_array_equal(state["w"], np.arange(4096, dtype=np.float32) * 10)
  warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
  assert warnings == [
      "Checkpoint step 20 is damaged: 20/state: 1 array(s) differ from their saved SHA-256, "
      f"first ['w']. Moved aside to {tmp_path}/checkpoints/20.damaged; trying the next older "
      "one."]
  # Moved aside, not deleted; neither retention nor resume counts it as a step.
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["10", "20.damaged"]
  assert ckpts.all_steps() == [10]
  flip_byte_in_state_data(tmp_path, 10)
  # Nothing readable left: the run starts again from step 0, the damaged ones kept aside.
  assert resume.restore_latest(ckpts, big_state(0), None, config, words) == (0, None)
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
      "10.damaged", "20.damaged"]
  ckpts.close()


def test_unreadable_metadata_is_one_line(tmp_path):
  ckpts = checkpoints_lib.Checkpoints(str(tmp_path))
  save_big(ckpts, 5, synthetic_config.get_config())
  (tmp_path / "checkpoints" / "5" / "state" / "_METADATA").write_bytes(b"\x9e\x00garbage")
  with pytest.raises(checkpoints_lib.CorruptCheckpointError) as raised:
    ckpts.restore_state(5, big_state(0))
  assert str(raised.value) == (f"checkpoint step 5 in {tmp_path}/checkpoints is damaged: "
                               "5/state/_METADATA: not UTF-8 text (byte 0)")
  ckpts.close()


def test_resume_refuses_a_changed_meaning_and_names_the_keys(tmp_path):
  stored = synthetic_config.get_config()
  current = synthetic_config.get_config()
  current.batch_size, current.loss.name, current.seed = 8, "bce", 3
  # Allowed: longer, other cadences and evaluation, faster input, another data location.
  current.total_steps, current.log_every_steps, current.eval_every_steps = 4000, 7, 9
  current.checkpoint_every_steps, current.eval_batch_size, current.compute_tdir = 3, 4, True
  current.dataset.num_workers, current.dataset.prefetch = 2, 8
  current.dataset.data_dir = "gs://bucket/tfds"
  assert resume.config_changes(stored, current) == [
      "batch_size: 16 -> 8", "loss.name: 'balanced_bce' -> 'bce'", "seed: 0 -> 3"]
  words = ["<pad>", "<unk>", "man"]
  with pytest.raises(resume.ConfigChangeError) as raised:
    resume.check_config(stored, current, words, words, step=20, directory="/w/checkpoints")
  assert str(raised.value) == (
      "the checkpoint at step 20 in /w/checkpoints was trained with another config: "
      "batch_size: 16 -> 8; loss.name: 'balanced_bce' -> 'bce'; seed: 0 -> 3. Use a new "
      "workdir, or pass --config.allow_config_change=True to resume anyway")
  with pytest.raises(resume.ConfigChangeError, match=r"vocabulary: 3 words -> 4 words"):
    resume.check_config(stored, stored, words, words + ["woman"], step=20, directory="/w")
  current.allow_config_change = True
  resume.check_config(stored, current, words, words, step=20, directory="/w/checkpoints")


def test_a_changed_config_stops_the_restart_before_anything_is_restored(tmp_path):
  config = synthetic_config.get_config()
  ckpts = checkpoints_lib.Checkpoints(str(tmp_path))
  save_big(ckpts, 10, config)
  config.model.hidden_dim = 64
  with pytest.raises(resume.ConfigChangeError, match=r"model.hidden_dim: 32 -> 64\. Use"):
    resume.restore_latest(ckpts, big_state(0), None, config, ["<pad>", "<unk>", "man"])
  ckpts.close()


def test_eval_mode_and_predictor_report_a_damaged_checkpoint_in_one_line(
    trained_workdir, synthetic_dataset, tmp_path):
  workdir = tmp_path / "workdir"
  shutil.copytree(trained_workdir / "checkpoints", workdir / "checkpoints")
  ckpts = checkpoints_lib.Checkpoints(str(workdir), read_only=True)
  best = ckpts.best_step()
  ckpts.close()
  flip_byte_in_state_data(workdir, best)
  expected = (f"checkpoint step {best} in {workdir}/checkpoints is damaged: {best}/state: 1 "
              "array(s) differ from their saved SHA-256, first ")
  with pytest.raises(checkpoints_lib.CorruptCheckpointError) as raised:
    predictor.Predictor.from_workdir(str(workdir))
  assert str(raised.value).startswith(expected) and "\n" not in str(raised.value)
  proc = run_module("brppnet_jax.main", "--config=configs/synthetic.py", f"--workdir={workdir}",
                    "--mode=eval", f"--config.dataset.data_dir={synthetic_dataset / 'tfds'}",
                    env=ONE_DEVICE, check=False)
  assert proc.returncode != 0
  assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {expected}")
  assert "Traceback" not in proc.stderr


def test_a_restart_with_another_batch_size_stops_with_one_line(
    trained_workdir, synthetic_dataset, tmp_path):
  workdir = tmp_path / "workdir"
  shutil.copytree(trained_workdir / "checkpoints", workdir / "checkpoints")
  proc = run_module("brppnet_jax.main", "--config=configs/synthetic.py", f"--workdir={workdir}",
                    f"--config.dataset.data_dir={synthetic_dataset / 'tfds'}",
                    f"--config.total_steps={TRAIN_STEPS + 10}", "--config.batch_size=8",
                    env=ONE_DEVICE, check=False)
  assert proc.returncode != 0
  assert proc.stderr.strip().splitlines()[-1] == (
      f"error: the checkpoint at step {TRAIN_STEPS} in {workdir}/checkpoints was trained with "
      "another config: batch_size: 16 -> 8. Use a new workdir, or pass "
      "--config.allow_config_change=True to resume anyway")
  assert "Traceback" not in proc.stderr
