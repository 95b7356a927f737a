"""Loads a Darknet `yolov3.weights` file into the `backbone` of BRPPNet's variables.

File layout: a header of int32 major, minor, revision, then `seen` (int64 when
major * 10 + minor >= 2, else int32); then for every conv in network order its BatchNorm
beta, gamma, running mean and running variance (float32, out_channels each) followed by
its kernel (float32, [out, in, kh, kw]). The first 52 convs are Darknet-53, the next ones
YOLOv3's large-scale head, whose first four are BRPPNet's frozen neck convs. Only those
56 convs are read; the rest of the file is ignored.
"""

from __future__ import annotations

import re

import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from brppnet_jax.models.darknet import STAGE_CHANNELS, conv_order

_MAX_VERSION = 1000  # A real header has small version numbers; more means another format.


def _stage_blocks(backbone_params) -> tuple[int, ...]:
  """Residual blocks per stage, read from the `Res{stage}_{block}` module names."""
  counts = [0] * len(STAGE_CHANNELS)
  for name in backbone_params:
    match = re.fullmatch(r"Res(\d+)_\d+", name)
    if match:
      counts[int(match.group(1)) - 1] += 1
  return tuple(counts)


class _Reader:
  """Reads float32 arrays from an open file, naming the file and layer when it runs short."""

  def __init__(self, f, path: str):
    self._f, self._path = f, path

  def read(self, dtype, count: int, what: str) -> np.ndarray:
    data = self._f.read(np.dtype(dtype).itemsize * count)
    if len(data) != np.dtype(dtype).itemsize * count:
      raise ValueError(f"{self._path}: file ends while reading {what}")
    return np.frombuffer(data, dtype=dtype)


def _read_header(reader: _Reader, path: str) -> None:
  major, minor, revision = reader.read("<i4", 3, "the header")
  if not all(0 <= v < _MAX_VERSION for v in (major, minor, revision)):
    raise ValueError(f"{path}: not a Darknet weights file (header version "
                     f"{major}.{minor}.{revision})")
  reader.read("<i8" if major * 10 + minor >= 2 else "<i4", 1, "the header")


def load_darknet_weights(path: str, params, batch_stats):
  """Returns (params, batch_stats) with `backbone` filled from the Darknet weights at `path`.

  `params` and `batch_stats` are BRPPNet's full trees; nothing outside `backbone` changes.
  Errors name the file and the layer for a short or garbled file.
  """
  if "backbone" not in params or "backbone" not in batch_stats:
    raise ValueError(f"{path}: params and batch_stats must be BRPPNet's full trees with a "
                     "'backbone' entry")
  backbone = traverse_util.flatten_dict(params["backbone"])
  stats = traverse_util.flatten_dict(batch_stats["backbone"])
  with open(path, "rb") as f:
    reader = _Reader(f, path)
    _read_header(reader, path)
    for index, module in enumerate(conv_order(_stage_blocks(params["backbone"]))):
      layer = f"layer {index} (backbone/{'/'.join(module)})"
      kh, kw, cin, cout = backbone[module + ("conv", "kernel")].shape
      beta, gamma, mean, var = (reader.read("<f4", cout, f"{name} of {layer}")
                                for name in ("beta", "gamma", "mean", "variance"))
      kernel = reader.read("<f4", cout * cin * kh * kw, f"the kernel of {layer}")
      finite = all(np.all(np.isfinite(a)) for a in (beta, gamma, mean, var, kernel))
      if not (finite and np.all(var >= 0)):
        raise ValueError(f"{path}: garbled values in {layer} (non-finite weights or negative "
                         "variance); wrong file or wrong network size?")
      backbone[module + ("bn", "bias")] = jnp.asarray(beta)
      backbone[module + ("bn", "scale")] = jnp.asarray(gamma)
      stats[module + ("bn", "mean")] = jnp.asarray(mean)
      stats[module + ("bn", "var")] = jnp.asarray(var)
      backbone[module + ("conv", "kernel")] = jnp.asarray(
          kernel.reshape(cout, cin, kh, kw).transpose(2, 3, 1, 0))
  return ({**params, "backbone": traverse_util.unflatten_dict(backbone)},
          {**batch_stats, "backbone": traverse_util.unflatten_dict(stats)})
