"""Text encoder: word vectors -> bidirectional GRU (Keras 2.3.1 form), directions summed -> q.

Parameters: `embedding/embedding` [vocab_size, embed_dim] (fixed word vectors or learned), and
per direction `gru_forward` / `gru_backward` with Keras' own layout, so an original weight
file loads without reshaping: `kernel` [E, 3U], `recurrent_kernel` [U, 3U], `bias` [3U], the
columns ordered [z | r | h].

Two padding modes (spec section 3):
- "original": every step whose word vector is all zeros is masked (padding, and words without
  a vector, anywhere in the sentence); a masked step keeps the state and repeats the previous
  output; the backward direction runs over the whole reversed sequence; q sums all T steps.
- "masked": tokens != 0 count as the sentence length (trailing padding only); each direction
  runs over the valid steps (the backward one reversed within them) and q sums those steps
  only, so padding never changes q.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

PADDING_MODES = ("original", "masked")


def _time_order(valid: jnp.ndarray, padding: str) -> jnp.ndarray:
  """[N, T] indices that put each sentence's steps in backward-direction order.

  The permutation is its own inverse, so it also puts backward outputs back in time order.
  """
  n, t = valid.shape
  steps = jnp.arange(t)[None, :]
  if padding == "original":
    return jnp.broadcast_to(t - 1 - steps, (n, t))
  lengths = jnp.sum(valid, axis=-1, keepdims=True)
  return jnp.where(steps < lengths, lengths - 1 - steps, steps)


def bigru_sequence(x: jnp.ndarray, valid: jnp.ndarray, order: jnp.ndarray,
                   kernel: jnp.ndarray, recurrent_kernel: jnp.ndarray,
                   bias: jnp.ndarray) -> jnp.ndarray:
  """Both directions of a `reset_after=False` GRU in one unrolled scan; returns fw + bw [N, T, U].

  x [2, N, T, E] (per direction, dropout applied), valid [N, T] bool, order [N, T] from
  `_time_order`; kernel [2, E, 3U], recurrent_kernel [2, U, 3U], bias [2, 3U].
  The input projection of every step is one matmul before the recurrence.
  """
  units = recurrent_kernel.shape[1]
  x = jnp.stack([x[0], jnp.take_along_axis(x[1], order[..., None], axis=1)])
  steps_valid = jnp.stack([valid, jnp.take_along_axis(valid, order, axis=1)])  # [2, N, T]
  projected = jnp.einsum("dnte,dek->tdnk", x, kernel) + bias[None, :, None, :]
  recurrent_zr, recurrent_h = recurrent_kernel[..., :2 * units], recurrent_kernel[..., 2 * units:]

  def step(h, inputs):
    xw, keep = inputs  # [2, N, 3U], [2, N, 1]
    zr = jax.nn.sigmoid(xw[..., :2 * units] + jnp.einsum("dnu,duk->dnk", h, recurrent_zr))
    z, r = zr[..., :units], zr[..., units:]
    candidate = jnp.tanh(xw[..., 2 * units:] + jnp.einsum("dnu,duk->dnk", r * h, recurrent_h))
    h = jnp.where(keep, z * h + (1.0 - z) * candidate, h)
    return h, h

  h0 = jnp.zeros(x.shape[:2] + (units,), x.dtype)
  keep = jnp.moveaxis(steps_valid, -1, 0)[..., None]  # [T, 2, N, 1]
  _, outputs = jax.lax.scan(step, h0, (projected, keep), unroll=True)  # [T, 2, N, U]
  forward = jnp.moveaxis(outputs[:, 0], 0, 1)
  backward = jnp.take_along_axis(jnp.moveaxis(outputs[:, 1], 0, 1), order[..., None], axis=1)
  return forward + backward


class GRUWeights(nn.Module):
  """One direction's Keras GRU weights (Keras' default initialisers)."""

  embed_dim: int
  units: int

  @nn.compact
  def __call__(self):
    kernel = self.param("kernel", nn.initializers.glorot_uniform(),
                        (self.embed_dim, 3 * self.units))
    recurrent = self.param("recurrent_kernel", nn.initializers.orthogonal(column_axis=-1),
                           (self.units, 3 * self.units))
    bias = self.param("bias", nn.initializers.zeros, (3 * self.units,))
    return kernel, recurrent, bias


class TextEncoder(nn.Module):
  """Maps tokens [N, T] (0 = `<pad>`) to (q [N, U], the summed GRU outputs h [N, T, U]).

  Runs in float32 whatever the network's dtype: it is cheap, and a recurrence in bfloat16
  would lose precision at every step. Input dropout draws one mask per sentence and
  direction, shared by all steps, as Keras' GRU does.
  """

  vocab_size: int
  embed_dim: int = 300
  hidden_size: int = 1024
  dropout_rate: float = 0.1
  padding: str = "original"

  @nn.compact
  def __call__(self, tokens: jnp.ndarray, train: bool) -> tuple[jnp.ndarray, jnp.ndarray]:
    if self.padding not in PADDING_MODES:
      raise ValueError(f"text padding must be one of {PADDING_MODES}, got {self.padding!r}")
    x = nn.Embed(self.vocab_size, self.embed_dim, name="embedding")(tokens).astype(jnp.float32)
    x = jnp.where(tokens[..., None] == 0, 0.0, x)  # `<pad>` is the all-zero vector.
    if self.padding == "original":
      valid = jnp.any(x != 0, axis=-1)
    else:
      lengths = jnp.sum(tokens != 0, axis=-1, keepdims=True)
      valid = jnp.arange(tokens.shape[-1])[None, :] < lengths
    x = jnp.broadcast_to(x[None], (2,) + x.shape)
    if train and self.dropout_rate > 0:
      keep = 1.0 - self.dropout_rate
      mask = jax.random.bernoulli(self.make_rng("dropout"), keep, (2, x.shape[1], 1, x.shape[3]))
      x = jnp.where(mask, x / keep, 0.0)
    weights = [GRUWeights(self.embed_dim, self.hidden_size, name=f"gru_{d}")()
               for d in ("forward", "backward")]
    kernel, recurrent, bias = (jnp.stack(w) for w in zip(*weights))
    h = bigru_sequence(x, valid, _time_order(valid, self.padding), kernel, recurrent, bias)
    if self.padding == "masked":
      h = jnp.where(valid[..., None], h, 0.0)
    return jnp.sum(h, axis=1), h
