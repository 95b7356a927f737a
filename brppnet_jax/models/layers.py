"""Building blocks of BRPPNet (spec section 3): DBL, Res, upsampling and text-visual fusion.

Naming is part of the contract: every DBL is a module whose name starts with `DBL` and holds
a `conv` (nn.Conv, no bias) and a `bn` (nn.BatchNorm); `brppnet_jax.train.losses.l2_penalty`
finds the penalised kernels by these names.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

BN_MOMENTUM = 0.99
BN_EPSILON = 1e-3
LEAKY_SLOPE = 0.1
# Keras' default initialiser, which the original network used for convs and dense layers.
KERNEL_INIT = nn.initializers.glorot_uniform()


def scaled_channels(channels: int, width: float) -> int:
  """`channels * width` rounded to a multiple of 8, at least 8."""
  return max(8, int(round(channels * width / 8)) * 8)


def upsample(x: jnp.ndarray) -> jnp.ndarray:
  """2x nearest-neighbour upsampling of an NHWC tensor (broadcast and reshape, no gather)."""
  n, h, w, c = x.shape
  x = jnp.broadcast_to(x[:, :, None, :, None, :], (n, h, 2, w, 2, c))
  return x.reshape(n, 2 * h, 2 * w, c)


def batch_norm(dtype: Any, name: str | None = None) -> nn.BatchNorm:
  """BatchNorm with the original's Keras settings; statistics reduce in float32."""
  return nn.BatchNorm(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, dtype=dtype, name=name)


class DBL(nn.Module):
  """Conv (no bias) -> BatchNorm -> LeakyReLU(0.1).

  Stride 2 pads one zero row on top and one zero column on the left, then convolves
  with 'valid' padding (Darknet's downsampling); stride 1 uses 'same' padding.
  """

  features: int
  kernel_size: int = 3
  strides: int = 1
  dilation: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    if self.strides not in (1, 2):
      raise ValueError(f"DBL strides must be 1 or 2, got {self.strides}")
    padding = ((1, 0), (1, 0)) if self.strides == 2 else "SAME"
    x = nn.Conv(
        self.features, (self.kernel_size, self.kernel_size), strides=self.strides,
        padding=padding, kernel_dilation=self.dilation, use_bias=False, dtype=self.dtype,
        kernel_init=KERNEL_INIT, name="conv")(x)
    x = batch_norm(self.dtype, name="bn")(x, use_running_average=not train)
    return nn.leaky_relu(x, LEAKY_SLOPE)


class Res(nn.Module):
  """Darknet residual block: x + DBL(c, 3)(DBL(c/2, 1)(x))."""

  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    y = DBL(self.features // 2, 1, dtype=self.dtype, name="DBL_1x1")(x, train)
    y = DBL(self.features, 3, dtype=self.dtype, name="DBL_3x3")(y, train)
    return x + y


class Fusion(nn.Module):
  """F(v, q, c): p = LeakyReLU(BN(Dense(c)(q))); LeakyReLU(BN(v * p)), p broadcast over HW."""

  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, v: jnp.ndarray, q: jnp.ndarray, train: bool) -> jnp.ndarray:
    p = nn.Dense(self.features, dtype=self.dtype, kernel_init=KERNEL_INIT, name="dense")(q)
    p = batch_norm(self.dtype, name="bn_text")(p, use_running_average=not train)
    p = nn.leaky_relu(p, LEAKY_SLOPE)
    x = v * p[:, None, None, :]
    x = batch_norm(self.dtype, name="bn_fused")(x, use_running_average=not train)
    return nn.leaky_relu(x, LEAKY_SLOPE)
