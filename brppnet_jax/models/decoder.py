"""Decoder modules of BRPPNet (spec section 3): MFFM, PSA, ASPP and the mask head.

Plain convs with a bias whose kernels carry the L2 penalty, like Darknet's own output
convs, are named `DarknetConv_*` (the ASPP projection and the logits conv); the PSA convs
are attention projections and are not penalised.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from brppnet_jax.models.layers import DBL
from brppnet_jax.models.layers import KERNEL_INIT
from brppnet_jax.models.layers import upsample

# Up-and-DBL pairs the mask head adds after its stride-8 input, per output stride.
HEAD_UPSAMPLINGS = {8: 0, 4: 1, 2: 2}


def _conv1x1(features: int, use_bias: bool, dtype: Any, name: str) -> nn.Conv:
  return nn.Conv(features, (1, 1), use_bias=use_bias, dtype=dtype, kernel_init=KERNEL_INIT,
                 name=name)


class MFFM(nn.Module):
  """Multi-scale feature fusion M(x, y, d), x at half the resolution of y.

  x' = up(DBL(d,3)(x)); o = DBL(d,1)(concat[x', y]); o + DBL(d,3)(DBL(d/2,1)(o * x')).
  """

  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, y: jnp.ndarray, train: bool) -> jnp.ndarray:
    d = self.features
    x = upsample(DBL(d, 3, dtype=self.dtype, name="DBL_x")(x, train))
    o = DBL(d, 1, dtype=self.dtype, name="DBL_merge")(jnp.concatenate([x, y], axis=-1), train)
    r = DBL(d // 2, 1, dtype=self.dtype, name="DBL_1x1")(o * x, train)
    return o + DBL(d, 3, dtype=self.dtype, name="DBL_3x3")(r, train)


class PSA(nn.Module):
  """Polarised self-attention, parallel form, no normalisation: returns y*w_c + y*w_s.

  The weights w_c (per channel) and w_s (per pixel) come from x; y is what they gate.
  Softmaxes run in float32 (small tensors) so bfloat16 mode stays accurate.
  """

  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
    n, h, w, _ = x.shape
    half = self.features // 2
    # Channel branch: attention-pool the values over the HW positions.
    v = _conv1x1(half, False, self.dtype, "channel_value")(x).reshape(n, h * w, half)
    k = _conv1x1(1, False, self.dtype, "channel_key")(x).reshape(n, h * w)
    k = jax.nn.softmax(k.astype(jnp.float32), axis=-1).astype(v.dtype)
    z = jnp.einsum("npc,np->nc", v, k)
    w_c = nn.sigmoid(_conv1x1(self.features, True, self.dtype, "channel_up")(
        z[:, None, None, :]))
    # Spatial branch: a softmaxed global descriptor scores every position.
    g = _conv1x1(half, False, self.dtype, "spatial_query")(x)
    g = jax.nn.softmax(jnp.mean(g, axis=(1, 2), dtype=jnp.float32), axis=-1).astype(g.dtype)
    t = _conv1x1(half, False, self.dtype, "spatial_value")(x)
    w_s = nn.sigmoid(jnp.einsum("nhwc,nc->nhw", t, g))[..., None]
    return y * w_c + y * w_s


class ASPP(nn.Module):
  """Atrous spatial pyramid pooling: [pool, 1x1, 3x3 d6, d12, d18] -> 1x1 conv, no activation."""

  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    d = self.features
    pooled = jnp.mean(x, axis=(1, 2), keepdims=True)
    pooled = DBL(d, 1, dtype=self.dtype, name="DBL_pool")(pooled, train)
    branches = [jnp.broadcast_to(pooled, x.shape[:3] + (d,)),
                DBL(d, 1, dtype=self.dtype, name="DBL_1x1")(x, train)]
    for rate in (6, 12, 18):
      branches.append(
          DBL(d, 3, dilation=rate, dtype=self.dtype, name=f"DBL_rate{rate}")(x, train))
    x = jnp.concatenate(branches, axis=-1)
    return _conv1x1(d, True, self.dtype, "DarknetConv_project")(x)


class MaskHead(nn.Module):
  """3 x DBL(d,3) at stride 8, then (up, DBL(d,3)) until `out_stride`, then a 3x3 logits conv."""

  features: int
  out_stride: int = 2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    if self.out_stride not in HEAD_UPSAMPLINGS:
      raise ValueError(f"mask head out_stride must be one of {sorted(HEAD_UPSAMPLINGS)}, "
                       f"got {self.out_stride}")
    for i in range(3):
      x = DBL(self.features, 3, dtype=self.dtype, name=f"DBL_{i}")(x, train)
    for i in range(HEAD_UPSAMPLINGS[self.out_stride]):
      x = DBL(self.features, 3, dtype=self.dtype, name=f"DBL_up{i}")(upsample(x), train)
    return nn.Conv(1, (3, 3), padding="SAME", dtype=self.dtype, kernel_init=KERNEL_INIT,
                   name="DarknetConv_logits")(x)
