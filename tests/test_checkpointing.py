"""Checkpoint retention (latest and best by mIoU) and what a checkpoint carries."""

import jax.numpy as jnp
import numpy as np
import pytest

from brppnet_jax import checkpointing
from configs import synthetic as synthetic_config


def small_state(value: float):
  return {"w": jnp.full((3,), value, jnp.float32), "step": jnp.asarray(int(value))}


def save(ckpts, step, miou=None, config=None):
  config = config or synthetic_config.get_config()
  metrics = None if miou is None else {"miou": miou}
  ckpts.save(step, small_state(step), config=config, vocab_words=["<pad>", "<unk>", "man"],
             expressions=["protect privacy of man"], metrics=metrics, force=True)
  ckpts.wait()


def test_keeps_the_latest_and_the_best_even_when_the_latest_is_worse(tmp_path):
  ckpts = checkpointing.Checkpoints(str(tmp_path), keep=1)
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
  reopened = checkpointing.Checkpoints(str(tmp_path), keep=1)
  assert reopened.best_step() == 5
  save(reopened, 6, miou=0.1)
  save(reopened, 7, miou=0.2)
  assert reopened.all_steps() == [5, 7] and reopened.best_step() == 5
  reopened.close()


def test_restores_state_config_vocabulary_and_expressions(tmp_path):
  config = synthetic_config.get_config()
  config.batch_size = 12
  ckpts = checkpointing.Checkpoints(str(tmp_path))
  save(ckpts, 7, miou=0.4, config=config)
  state = ckpts.restore_state(7, small_state(0))
  np.testing.assert_array_equal(state["w"], np.full((3,), 7.0))
  restored_config, words, expressions = ckpts.restore_metadata(7)
  assert restored_config.batch_size == 12
  assert list(restored_config.model.stage_blocks) == list(config.model.stage_blocks)
  assert words == ["<pad>", "<unk>", "man"] and expressions == ["protect privacy of man"]
  ckpts.close()


def test_resolve_step_names_the_directory_and_the_available_steps(tmp_path):
  ckpts = checkpointing.Checkpoints(str(tmp_path))
  with pytest.raises(FileNotFoundError, match="no checkpoint in .*checkpoints"):
    checkpointing.resolve_step(ckpts, None, str(tmp_path))
  save(ckpts, 3, miou=0.1)
  assert checkpointing.resolve_step(ckpts, None, str(tmp_path)) == 3
  with pytest.raises(FileNotFoundError, match=r"no checkpoint for step 9 .*available steps: \[3\]"):
    checkpointing.resolve_step(ckpts, 9, str(tmp_path))
  ckpts.close()
