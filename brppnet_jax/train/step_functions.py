"""The pure step functions, train and predict, and how they are jitted over a mesh.

Importable with jax, flax and optax alone (no TFDS, Grain or clu), so the step can be timed
on any accelerator machine.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from brppnet_jax import models
from brppnet_jax.runtime import sharding
from brppnet_jax.train import losses
from brppnet_jax.train import train_state

CANVAS_VALUE = 0.5  # letterbox.CANVAS_VALUE (not imported: it would bring OpenCV here).
# x / 255 of every uint8 x, rounded once to float32 (numpy divides exactly). Looked up rather
# than divided on the device: XLA turns a division by a constant into a multiplication by
# its reciprocal, which is one float32 ulp off for 126 of the 256 values.
_UINT8_TO_UNIT = np.arange(256, dtype=np.float32) / np.float32(255)


def model_images(batch: dict) -> jax.Array:
  """The network's image input from a batch: float `image` as given; uint8 `image` with its
  letterbox `geometry` [N, 4] (nw, nh, dx, dy) becomes x / 255 in float32 inside the picture
  and CANVAS_VALUE outside, as `letterbox.canvas_to_float` does on the host.

  Done on the device so that images cross to it as uint8 (a quarter of float32's bytes);
  0.5 is no k / 255, hence the geometry rather than a canvas colour.
  """
  images = batch["image"]
  if images.dtype != jnp.uint8:
    return images
  if "geometry" not in batch:
    raise ValueError("a batch of uint8 images needs `geometry` [N, 4] (nw, nh, dx, dy) to "
                     "rebuild the letterbox canvas")
  nw, nh, dx, dy = (batch["geometry"][:, i, None, None] for i in range(4))
  rows = jnp.arange(images.shape[1])[None, :, None]
  cols = jnp.arange(images.shape[2])[None, None, :]
  inside = (rows >= dy) & (rows < dy + nh) & (cols >= dx) & (cols < dx + nw)
  unit = jnp.take(jnp.asarray(_UINT8_TO_UNIT), images.astype(jnp.int32), axis=0,
                  mode="clip")  # uint8 is always in bounds.
  return jnp.where(inside[..., None], unit, jnp.float32(CANVAS_VALUE))


def _guard(ok, state, grads, train_params, batch_stats, tx):
  """(params, batch_stats, opt_state) after the update when `ok`, else unchanged.

  Selected leaf by leaf; XLA drops the selects of leaves that do not change (the frozen
  backbone) and can fuse the others into the optimiser's update. `jax.lax.cond` would skip
  the update on a bad step, but XLA's GPU conditional copies its predicate to the host and
  blocks on it (xla/backends/gpu/runtime/conditional_thunk.cc): a device sync in every step
  that stops the host from queueing the next one, so the select stays.
  """
  updates, opt_state = tx.update(grads, state.opt_state, train_params)
  new_params = train_state.merge_trainable(state.params, optax.apply_updates(train_params, updates))
  keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)
  return (keep(new_params, state.params), keep(batch_stats, state.batch_stats),
          keep(opt_state, state.opt_state))


def train_step(state: train_state.TrainState, batch: dict, *, model, config, tx, lr_fn):
  """One optimisation step on a (global) batch; returns the new state and scalar metrics.

  `batch`: `image` (uint8 with `geometry`, or floats in [0, 1]), `tokens`, `mask`.
  """
  loss_fn = losses.get_loss_fn(config.loss)
  dropout_rng = jax.random.fold_in(state.rng, state.step)
  images = model_images(batch)

  def total_loss(train_params):
    params = train_state.merge_trainable(state.params, train_params)
    logits, updates = model.apply(
        {"params": params, "batch_stats": state.batch_stats},
        images, batch["tokens"], train=True,
        rngs={"dropout": dropout_rng}, mutable=["batch_stats"])
    data_loss = loss_fn(logits, batch["mask"])
    l2 = losses.l2_penalty(train_params, config.loss.l2)
    batch_stats = updates["batch_stats"]
    if config.model.freeze_backbone:  # Frozen statistics never change (also with batch_stats).
      batch_stats = {**batch_stats,
                     train_state.FROZEN_KEY: state.batch_stats[train_state.FROZEN_KEY]}
    return data_loss + l2, (data_loss, l2, batch_stats)

  train_params = train_state.trainable(state.params, config)
  (loss, (data_loss, l2, batch_stats)), grads = jax.value_and_grad(
      total_loss, has_aux=True)(train_params)
  ok = jnp.isfinite(loss) & (state.nonfinite_step < 0)
  params, batch_stats, opt_state = _guard(ok, state, grads, train_params, batch_stats, tx)
  new_state = state.replace(
      step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state,
      nonfinite_step=jnp.where(ok | (state.nonfinite_step >= 0), state.nonfinite_step,
                               state.step))
  metrics = {
      "loss": loss, "data_loss": data_loss, "l2": l2,
      "learning_rate": lr_fn(state.step),
      "grad_norm": optax.tree.norm(grads),
  }
  return new_state, metrics


def predict_step(state: train_state.TrainState, batch: dict, *, model):
  """Mask probabilities [N, H/s, W/s] (float32) in inference mode.

  `batch`: `image` (uint8 with `geometry`, or floats in [0, 1]) and `tokens`.
  """
  logits = model.apply({"params": state.params, "batch_stats": state.batch_stats},
                       model_images(batch), batch["tokens"], train=False)
  return jax.nn.sigmoid(logits[..., 0].astype(jnp.float32))


def make_steps(config, steps_per_epoch: int):
  """The model, optimiser and the two step functions (not yet jitted) for a config."""
  model = models.create_model(config)
  tx = train_state.create_optimizer(config, steps_per_epoch)
  lr_fn = train_state.learning_rate_fn(config, steps_per_epoch)
  train = functools.partial(train_step, model=model, config=config, tx=tx, lr_fn=lr_fn)
  predict = functools.partial(predict_step, model=model)
  return model, tx, train, predict


def jit_train(train_fn, mesh, state_shardings):
  """train_fn jitted with a `data`-sharded batch and the state donated."""
  return jax.jit(train_fn, in_shardings=(state_shardings, sharding.batch_sharding(mesh)),
                 out_shardings=(state_shardings, sharding.replicated(mesh)), donate_argnums=0)


def jit_predict(predict_fn, mesh, state_shardings):
  """predict_fn jitted with a `data`-sharded batch (dict) and probabilities."""
  batch = sharding.batch_sharding(mesh)
  return jax.jit(predict_fn, in_shardings=(state_shardings, batch), out_shardings=batch)
