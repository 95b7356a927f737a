"""The training state: parameters, BatchNorm statistics, optimiser and its schedule.

Importable with jax, flax and optax alone (no TFDS, Grain or clu), so the step can be timed
on any accelerator machine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from brppnet_jax.runtime import sharding

FROZEN_KEY = "backbone"


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


def merge_trainable(params, new_trainable) -> dict:
  """`params` with the (possibly partial, nested) trainable subtree replaced."""
  out = dict(params)
  for key, value in new_trainable.items():
    out[key] = merge_trainable(params[key], value) if isinstance(value, dict) else value
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


def create_replicated_state(model, config, tx, mesh, rng):
  """A fresh state replicated over `mesh`, its shardings fixed from shapes before anything
  is allocated. Returns (state, shardings)."""
  create = lambda r: create_train_state(model, config, tx, r)
  shardings = jax.tree.map(lambda _: sharding.replicated(mesh), jax.eval_shape(create, rng))
  return jax.jit(create, out_shardings=shardings)(rng), shardings
