"""uint8 images normalised on the device, and batches staged on the devices ahead of the step."""

import json

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from brppnet_jax.data import letterbox
from brppnet_jax.runtime import prefetch
from brppnet_jax.runtime import sharding
from brppnet_jax.train import step_functions
from brppnet_jax.train import train_state
from configs import synthetic as synthetic_config

SHAPES = [(480, 640), (640, 480), (37, 300), (300, 37), (50, 50), (7, 9)]  # (h, w)


def _letterboxed(size=64, seed=0):
  """uint8 canvases, their geometries and the float32 input the host path makes of them."""
  rng = np.random.default_rng(seed)
  rgbs = [rng.integers(0, 256, (h, w, 3), np.uint8) for h, w in SHAPES]
  boxed = [letterbox.letterbox_uint8(rgb, size) for rgb in rgbs]
  images = np.stack([b[0] for b in boxed] + [np.full((size, size, 3), 128, np.uint8)] * 2)
  geometry = np.asarray([b[1] for b in boxed] + [(0, 0, 0, 0)] * 2, np.int32)  # Two pads.
  host = np.stack([letterbox.letterbox_image(rgb, size) for rgb in rgbs]
                  + [np.full((size, size, 3), 0.5, np.float32)] * 2)
  return images, geometry, host


def test_device_normalised_images_equal_the_float32_host_input_exactly():
  images, geometry, host = _letterboxed()
  device = jax.jit(step_functions.model_images)({"image": images, "geometry": geometry})
  assert device.dtype == np.float32
  np.testing.assert_array_equal(np.asarray(device), host)
  # Every uint8 value: x / 255 rounded once to float32, as numpy does it.
  every = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=-1)
  out = jax.jit(step_functions.model_images)({"image": every, "geometry": np.int32([[16, 16, 0,
                                                                                     0]])})
  expected = np.arange(256, dtype=np.float32).reshape(1, 16, 16, 1) / np.float32(255)
  np.testing.assert_array_equal(np.asarray(out)[..., 0], expected[..., 0])
  assert step_functions.CANVAS_VALUE == letterbox.CANVAS_VALUE


def test_float_images_pass_through_and_uint8_needs_its_geometry():
  floats = np.random.default_rng(1).random((2, 32, 32, 3), np.float32)
  assert step_functions.model_images({"image": floats}) is floats
  with pytest.raises(ValueError, match="uint8 images needs `geometry`"):
    step_functions.model_images({"image": np.zeros((2, 32, 32, 3), np.uint8)})


def test_train_step_on_uint8_batch_equals_the_float32_batch():
  config = synthetic_config.get_config()
  config.dataset.input_size, config.model.vocab_size, config.batch_size = 64, 20, 8
  images, geometry, host = _letterboxed(seed=3)
  rng = np.random.default_rng(0)
  common = {"tokens": rng.integers(1, 20, (8, config.dataset.word_len), np.int32),
            "mask": (rng.random((8, 16, 16, 1)) > 0.7).astype(np.float32)}
  mesh = sharding.make_mesh(jax.devices()[:1])
  model, tx, train_fn, predict_fn = step_functions.make_steps(config, steps_per_epoch=10)
  losses, probs = [], []
  for batch in ({"image": images, "geometry": geometry, **common}, {"image": host, **common}):
    state, shardings = train_state.create_replicated_state(model, config, tx, mesh,
                                                           train_state.prng_key(0))
    probs.append(np.asarray(step_functions.jit_predict(predict_fn, mesh, shardings)(state, batch)))
    _, metrics = step_functions.jit_train(train_fn, mesh, shardings)(state, batch)
    losses.append(float(metrics["loss"]))
  assert losses[0] == losses[1]
  np.testing.assert_array_equal(probs[0], probs[1])


def _host_iterator(start_state=None):
  """A checkpointable grain iterator of 12 batches {"x": [4, 3]} holding 4 * i + row."""
  ds = grain.MapDataset.range(48).map(lambda i: {"x": np.full((3,), i, np.int32)}).batch(4)
  it = iter(ds.to_iter_dataset())
  if start_state is not None:
    it.set_state(start_state)
  return it


class _Counting:
  def __init__(self, it):
    self.it, self.pulled = it, 0

  def __next__(self):
    self.pulled += 1
    return next(self.it)

  def get_state(self):
    return self.it.get_state()


def test_prefetcher_yields_every_batch_in_order_staged_ahead():
  mesh = sharding.make_mesh(jax.devices()[:4])  # One row per device.
  host = _Counting(_host_iterator())
  prefetcher = prefetch.DevicePrefetcher(host, mesh, depth=2)
  first = next(prefetcher)
  assert isinstance(first["x"], jax.Array) and first["x"].sharding == sharding.batch_sharding(mesh)
  assert host.pulled == 3  # The batch returned and two more already on their way.
  rows = [np.asarray(first["x"])[:, 0]] + [np.asarray(b["x"])[:, 0] for b in prefetcher]
  np.testing.assert_array_equal(np.concatenate(rows), np.arange(48))


def test_prefetcher_checkpoint_resumes_after_the_last_batch_stepped_on(tmp_path):
  mesh = sharding.make_mesh(jax.devices()[:1])
  prefetcher = prefetch.DevicePrefetcher(_host_iterator(), mesh, depth=2)
  for _ in range(5):
    next(prefetcher)  # Batches 0..4 used; the host iterator has read 0..6.
  with ocp.CheckpointManager(tmp_path / "ckpt") as manager:
    manager.save(5, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(prefetcher)))
    manager.wait_until_finished()
    fresh = _host_iterator()
    manager.restore(5, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(fresh)))
  assert next(fresh)["x"][0, 0] == 4 * 5
  direct = _host_iterator(start_state=json.loads(prefetcher.get_state()))
  assert next(direct)["x"][0, 0] == 4 * 5


def test_prefetch_depth_must_be_positive():
  with pytest.raises(ValueError, match="prefetch depth must be at least 1, got 0"):
    prefetch.DevicePrefetcher(iter([]), sharding.make_mesh(), depth=0)
