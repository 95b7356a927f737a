"""The training state and the pure, jitted steps: train, predict.

Importable with jax, flax and optax alone (no TFDS, Grain or clu), so the step can be timed
on any accelerator machine.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from brppnet_jax import losses
from brppnet_jax import models
from brppnet_jax import parallel

FROZEN_KEY = "backbone"
CANVAS_VALUE = 0.5  # letterbox.CANVAS_VALUE (not imported: it would bring OpenCV here).
# x / 255 of every uint8 x, rounded once to float32 (numpy divides exactly). Looked up rather
# than divided on the device: XLA turns a division by a constant into a multiplication by
# its reciprocal, which is one float32 ulp off for 126 of the 256 values.
_UINT8_TO_UNIT = np.arange(256, dtype=np.float32) / np.float32(255)


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training, as one pytree.

  `params` holds every parameter; only `trainable(params)` is optimised. `nonfinite_step`
  is -1 until a step sees a non-finite loss; from then on the state no longer changes, so the
  host can check it lazily and the last good parameters survive.
  """
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jax.Array
  nonfinite_step: jax.Array


def prng_key(seed: int) -> jax.Array:
  """The run's root key. RBG rather than threefry: on the CPU, XLA compiles the init of a
  network's many parameters about 6x faster with it (9 s against 53 s for the small config)."""
  return jax.random.key(seed, impl="rbg")


def trainable(params, config) -> dict:
  """The parameters the optimiser updates: all but the frozen backbone when frozen, and but
  the word vectors when they are fixed."""
  out = {k: v for k, v in params.items() if not (k == FROZEN_KEY and config.model.freeze_backbone)}
  if config.model.fixed_word_vectors:
    out["text_encoder"] = {k: v for k, v in out["text_encoder"].items() if k != "embedding"}
  return out


def _merge(params, new_trainable) -> dict:
  """`params` with the (possibly partial, nested) trainable subtree replaced."""
  out = dict(params)
  for key, value in new_trainable.items():
    out[key] = _merge(params[key], value) if isinstance(value, dict) else value
  return out


def learning_rate_fn(config, steps_per_epoch: int) -> Callable[[jax.Array], jax.Array]:
  """Spec section 5 in steps: constant for `constant_epochs`, then halved every `decay_epochs`.

  With epochs counted from 1, epoch e > 10 gets lr * 0.5 ** floor((1 + e - 10) / 10), so the
  first halving is at epoch 19.
  """
  opt = config.optimizer
  base, const, decay = opt.learning_rate, opt.constant_epochs, opt.decay_epochs

  def schedule(step):
    epoch = step // steps_per_epoch + 1
    halvings = jnp.where(epoch <= const, 0, (1 + epoch - const) // decay)
    return base * 0.5 ** halvings.astype(jnp.float32)

  return schedule


def create_optimizer(config, steps_per_epoch: int) -> optax.GradientTransformation:
  opt = config.optimizer
  return optax.adam(learning_rate_fn(config, steps_per_epoch), b1=opt.b1, b2=opt.b2, eps=opt.eps)


def init_variables(model, config, rng):
  """Model variables for dummy inputs of the configured size."""
  size, length = config.dataset.input_size, config.dataset.word_len
  images = jnp.zeros((1, size, size, 3), jnp.float32)
  tokens = jnp.ones((1, length), jnp.int32)
  return model.init(rng, images, tokens, train=False)


def create_train_state(model, config, tx: optax.GradientTransformation, rng) -> TrainState:
  """A fresh state (pure, so it can be jitted with output shardings or eval_shape'd)."""
  init_rng, dropout_rng = jax.random.split(rng)
  return state_from_variables(init_variables(model, config, init_rng), config, tx, dropout_rng)


def state_from_variables(variables, config, tx: optax.GradientTransformation,
                         dropout_rng) -> TrainState:
  """A state at step 0 holding given model variables (fresh or imported) and a new optimiser."""
  params = variables["params"]
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      batch_stats=variables.get("batch_stats", {}),
      opt_state=tx.init(trainable(params, config)),
      rng=dropout_rng,
      nonfinite_step=jnp.full((), -1, jnp.int32))


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
  new_params = _merge(state.params, optax.apply_updates(train_params, updates))
  keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)
  return (keep(new_params, state.params), keep(batch_stats, state.batch_stats),
          keep(opt_state, state.opt_state))


def train_step(state: TrainState, batch: dict, *, model, config, tx, lr_fn):
  """One optimisation step on a (global) batch; returns the new state and scalar metrics.

  `batch`: `image` (uint8 with `geometry`, or floats in [0, 1]), `tokens`, `mask`.
  """
  loss_fn = losses.get_loss_fn(config.loss)
  dropout_rng = jax.random.fold_in(state.rng, state.step)
  images = model_images(batch)

  def total_loss(train_params):
    params = _merge(state.params, train_params)
    logits, updates = model.apply(
        {"params": params, "batch_stats": state.batch_stats},
        images, batch["tokens"], train=True,
        rngs={"dropout": dropout_rng}, mutable=["batch_stats"])
    data_loss = loss_fn(logits, batch["mask"])
    l2 = losses.l2_penalty(train_params, config.loss.l2)
    batch_stats = updates["batch_stats"]
    if config.model.freeze_backbone:  # Frozen statistics never change (also with batch_stats).
      batch_stats = {**batch_stats, FROZEN_KEY: state.batch_stats[FROZEN_KEY]}
    return data_loss + l2, (data_loss, l2, batch_stats)

  train_params = trainable(state.params, config)
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


def predict_step(state: TrainState, batch: dict, *, model):
  """Mask probabilities [N, H/s, W/s] (float32) in inference mode.

  `batch`: `image` (uint8 with `geometry`, or floats in [0, 1]) and `tokens`.
  """
  logits = model.apply({"params": state.params, "batch_stats": state.batch_stats},
                       model_images(batch), batch["tokens"], train=False)
  return jax.nn.sigmoid(logits[..., 0].astype(jnp.float32))


def make_steps(config, steps_per_epoch: int):
  """The model, optimiser and the two step functions (not yet jitted) for a config."""
  model = models.create_model(config)
  tx = create_optimizer(config, steps_per_epoch)
  lr_fn = learning_rate_fn(config, steps_per_epoch)
  train = functools.partial(train_step, model=model, config=config, tx=tx, lr_fn=lr_fn)
  predict = functools.partial(predict_step, model=model)
  return model, tx, train, predict


def create_replicated_state(model, config, tx, mesh, rng):
  """A fresh state replicated over `mesh`, its shardings fixed from shapes before anything
  is allocated. Returns (state, shardings)."""
  create = lambda r: create_train_state(model, config, tx, r)
  shardings = jax.tree.map(lambda _: parallel.replicated(mesh), jax.eval_shape(create, rng))
  return jax.jit(create, out_shardings=shardings)(rng), shardings


def jit_train(train_fn, mesh, state_shardings):
  """train_fn jitted with a `data`-sharded batch and the state donated."""
  return jax.jit(train_fn, in_shardings=(state_shardings, parallel.batch_sharding(mesh)),
                 out_shardings=(state_shardings, parallel.replicated(mesh)), donate_argnums=0)


def jit_predict(predict_fn, mesh, state_shardings):
  """predict_fn jitted with a `data`-sharded batch (dict) and probabilities."""
  batch = parallel.batch_sharding(mesh)
  return jax.jit(predict_fn, in_shardings=(state_shardings, batch), out_shardings=batch)
