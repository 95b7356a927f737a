"""Segmentation losses of spec section 4 and the L2 weight penalty.

Losses take logits and (soft) masks of the same shape [N, ...], compute in float32 and
return a scalar: the sum over every pixel divided by the batch size N, or with
`average=True` the mean over all pixels.
"""

from __future__ import annotations

from collections.abc import Callable

from flax import traverse_util
import jax
import jax.numpy as jnp
import ml_collections

LossFn = Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]


def _pixel_bce(logits: jnp.ndarray, masks: jnp.ndarray) -> jnp.ndarray:
  """Per-pixel sigmoid cross-entropy, log(1 + e^z) - m z, stable for any |z|."""
  return jax.nn.softplus(logits) - masks * logits


def _reduce(pixel_loss: jnp.ndarray, average: bool) -> jnp.ndarray:
  if average:
    return jnp.mean(pixel_loss)
  return jnp.sum(pixel_loss) / pixel_loss.shape[0]


def _as_f32(logits, masks):
  logits, masks = jnp.asarray(logits, jnp.float32), jnp.asarray(masks, jnp.float32)
  if logits.shape != masks.shape:
    raise ValueError(f"logits {logits.shape} and masks {masks.shape} must have the same shape")
  return logits, masks


def bce(logits: jnp.ndarray, masks: jnp.ndarray, average: bool = False) -> jnp.ndarray:
  """Binary cross-entropy."""
  logits, masks = _as_f32(logits, masks)
  return _reduce(_pixel_bce(logits, masks), average)


def weighted_bce(logits: jnp.ndarray, masks: jnp.ndarray, pos_weight: float = 3.0,
                 average: bool = False) -> jnp.ndarray:
  """BCE weighted 1 + (pos_weight - 1) * m: positives pos_weight, negatives 1."""
  logits, masks = _as_f32(logits, masks)
  return _reduce(_pixel_bce(logits, masks) * (1.0 + (pos_weight - 1.0) * masks), average)


def balanced_bce(logits: jnp.ndarray, masks: jnp.ndarray, eps_pos: float = 1.0,
                 eps_neg: float = -0.4, average: bool = False) -> jnp.ndarray:
  """The paper's Balanced-BCE: bce + eps_pos (1 - m s) + eps_neg (1 - m)(1 - s), s = sigmoid(z).

  Relative to BCE the extra terms add -eps_pos s(1-s) m to the gradient of a positive
  (pushing it up) and -eps_neg s(1-s)(1-m) to a negative (pushing it down for eps_neg < 0).
  """
  logits, masks = _as_f32(logits, masks)
  s = jax.nn.sigmoid(logits)
  pixel = (_pixel_bce(logits, masks) + eps_pos * (1.0 - masks * s)
           + eps_neg * (1.0 - masks) * (1.0 - s))
  return _reduce(pixel, average)


LOSSES = ("balanced_bce", "bce", "weighted_bce")


def get_loss_fn(loss_config: ml_collections.ConfigDict) -> LossFn:
  """Returns (logits, masks) -> scalar for `config.loss` (name, eps_pos, eps_neg, ...)."""
  name, average = loss_config.name, bool(loss_config.average)
  if name == "balanced_bce":
    eps_pos, eps_neg = float(loss_config.eps_pos), float(loss_config.eps_neg)
    return lambda z, m: balanced_bce(z, m, eps_pos=eps_pos, eps_neg=eps_neg, average=average)
  if name == "bce":
    return lambda z, m: bce(z, m, average=average)
  if name == "weighted_bce":
    pos_weight = float(loss_config.pos_weight)
    return lambda z, m: weighted_bce(z, m, pos_weight=pos_weight, average=average)
  raise ValueError(f"loss.name must be one of {', '.join(LOSSES)}, got {name!r}")


def is_penalised_kernel(path: tuple[str, ...]) -> bool:
  """Whether the param at `path` is a kernel that carries the L2 penalty.

  Penalised: the conv kernel of every DBL (`.../DBL_*/conv/kernel`) and of the plain
  Darknet-style convs (`.../DarknetConv_*/kernel`: the ASPP projection and the logits conv).
  Not penalised: biases, BatchNorm scales and offsets, the PSA convs, the fusion dense
  layers, the GRU and the word embedding.
  """
  if len(path) >= 3 and path[-2:] == ("conv", "kernel") and path[-3].startswith("DBL"):
    return True
  return len(path) >= 2 and path[-1] == "kernel" and path[-2].startswith("DarknetConv")


def l2_penalty(params, weight: float = 5e-4) -> jnp.ndarray:
  """weight * sum(w^2) over the penalised kernels of `params` (see `is_penalised_kernel`).

  Pass only the trainable params (without `backbone` when it is frozen).
  """
  flat = traverse_util.flatten_dict(params)
  total = sum((jnp.sum(jnp.square(w.astype(jnp.float32)))
               for path, w in flat.items() if is_penalised_kernel(path)), jnp.float32(0.0))
  return weight * total
