"""Darknet-53 (YOLOv3's backbone) and the six-conv neck that turns its last stage into C5.

The `Backbone` module holds Darknet-53 and the first four neck convs: the part loaded from
a COCO-pretrained YOLOv3 and frozen. The last two neck convs (`NECK[4:]`) train and live in
the parent network.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from brppnet_jax.models.layers import DBL
from brppnet_jax.models.layers import Res
from brppnet_jax.models.layers import scaled_channels

STEM_CHANNELS = 32
STAGE_CHANNELS = (64, 128, 256, 512, 1024)
# (channels, kernel size) of the neck: YOLOv3's five-conv block plus its first 3x3 conv.
NECK = ((512, 1), (1024, 3), (512, 1), (1024, 3), (512, 1), (1024, 3))
FROZEN_NECK_CONVS = 4


def conv_order(stage_blocks: Sequence[int]) -> list[tuple[str, ...]]:
  """Module paths (inside `backbone`) of its DBLs in Darknet's file order."""
  paths = [("DBL_stem",)]
  for stage, blocks in enumerate(stage_blocks, start=1):
    paths.append((f"DBL_down{stage}",))
    for block in range(blocks):
      paths += [(f"Res{stage}_{block}", "DBL_1x1"), (f"Res{stage}_{block}", "DBL_3x3")]
  paths += [(f"DBL_neck{i}",) for i in range(FROZEN_NECK_CONVS)]
  return paths


class Backbone(nn.Module):
  """Darknet-53 and the first four neck convs; returns (C3, C4, neck output).

  At width 1 and 416x416 input: C3 52x52x256, C4 26x26x512, neck output 13x13x1024.
  """

  width: float = 1.0
  stage_blocks: Sequence[int] = (1, 2, 8, 8, 4)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jnp.ndarray, train: bool):
    ch = lambda c: scaled_channels(c, self.width)
    x = DBL(ch(STEM_CHANNELS), 3, dtype=self.dtype, name="DBL_stem")(images, train)
    stage_outputs = []
    for stage, (channels, blocks) in enumerate(zip(STAGE_CHANNELS, self.stage_blocks), start=1):
      x = DBL(ch(channels), 3, strides=2, dtype=self.dtype, name=f"DBL_down{stage}")(x, train)
      for block in range(blocks):
        x = Res(ch(channels), dtype=self.dtype, name=f"Res{stage}_{block}")(x, train)
      stage_outputs.append(x)
    for i, (channels, kernel) in enumerate(NECK[:FROZEN_NECK_CONVS]):
      x = DBL(ch(channels), kernel, dtype=self.dtype, name=f"DBL_neck{i}")(x, train)
    return stage_outputs[2], stage_outputs[3], x
