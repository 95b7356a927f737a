"""The training step keeps what the original keeps fixed: frozen weights, their BatchNorm
statistics, and fixed word vectors; everything else moves."""

from flax import traverse_util
import jax
import numpy as np
import pytest

from brppnet_jax.runtime import sharding
from brppnet_jax.train import step_functions
from brppnet_jax.train import train_state
from configs import synthetic

SIZE, BATCH = 64, 8


def small_config(**model):
  config = synthetic.get_config()
  config.dataset.input_size = SIZE
  config.model.vocab_size = 20
  config.model.update(model)
  return config


def one_step(config):
  """The state before and after one step on one device, and the step's metrics. (With the
  synthetic model, the step tests/runtime/test_device_input.py compiles for float32 input.)"""
  mesh = sharding.make_mesh(jax.devices()[:1])
  model, tx, train_fn, _ = step_functions.make_steps(config, steps_per_epoch=10)
  state, shardings = train_state.create_replicated_state(model, config, tx, mesh,
                                                         train_state.prng_key(0))
  rng = np.random.default_rng(0)
  words = config.dataset.word_len
  batch = {"image": rng.uniform(size=(BATCH, SIZE, SIZE, 3)).astype(np.float32),
           "tokens": rng.integers(1, 20, (BATCH, words)).astype(np.int32),
           "mask": (rng.uniform(size=(BATCH, SIZE // 4, SIZE // 4, 1)) > 0.5).astype(np.float32)}
  step = step_functions.jit_train(train_fn, mesh, shardings)
  new_state, metrics = step(jax.tree.map(lambda x: x.copy(), state), batch)  # It donates.
  return state, new_state, metrics


def changed(before, after):
  a, b = traverse_util.flatten_dict(before), traverse_util.flatten_dict(after)
  return {k: not np.array_equal(a[k], b[k]) for k in a}


def test_frozen_backbone_and_fixed_word_vectors_stay_as_they_are():
  """Also with frozen_bn="batch_stats", where the model itself updates the frozen statistics
  (test_models covers "stored", where it does not)."""
  config = small_config(freeze_backbone=True, fixed_word_vectors=True, frozen_bn="batch_stats")
  before, after, metrics = one_step(config)
  params = changed(before.params, after.params)
  stats = changed(before.batch_stats, after.batch_stats)
  for path, moved in params.items():
    fixed = path[0] == "backbone" or path[:2] == ("text_encoder", "embedding")
    assert moved != fixed, path
  for path, moved in stats.items():
    assert moved != (path[0] == "backbone"), path
  # The optimiser keeps no moments for what stays fixed.
  moments = str(jax.tree_util.tree_structure(before.opt_state))
  assert "backbone" not in moments and "embedding" not in moments
  assert int(after.step) == 1 and float(metrics["l2"]) > 0


def test_learned_word_vectors_and_unfrozen_backbone_train():
  before, after, _ = one_step(small_config(freeze_backbone=False, fixed_word_vectors=False))
  assert all(changed(before.params, after.params).values())
  assert all(changed(before.batch_stats, after.batch_stats).values())


def test_training_a_random_frozen_backbone_needs_saying_so(tmp_path):
  from brppnet_jax.train import loop  # pylint: disable=g-import-not-at-top
  config = small_config(freeze_backbone=True, allow_random_backbone=False)
  with pytest.raises(ValueError) as error:
    loop.setup(config, str(tmp_path))
  message = str(error.value)
  assert message.startswith("config.model.freeze_backbone=True but no "
                            "config.model.backbone_weights: pass the original's COCO-trained "
                            "YOLOv3 (yolov3_480000.h5")
  assert "config.model.allow_random_backbone=True" in message and "\n" not in message
