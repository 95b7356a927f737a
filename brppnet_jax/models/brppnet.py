"""The whole BRPPNet: image [N,H,W,3] in [0,1] and tokens [N,T] -> mask logits [N,H/s,W/s,1].

Parameter tree: `backbone` (Darknet-53 and the first four neck convs, the part a YOLOv3
checkpoint provides and training keeps frozen), `text_encoder` (word vectors and BiGRU) and
the rest at top level. Word vectors go in `params["text_encoder"]["embedding"]["embedding"]`
[vocab_size, embed_dim]; `models.original_weights` loads the original's weight files.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from brppnet_jax.models.darknet import FROZEN_NECK_CONVS
from brppnet_jax.models.darknet import NECK
from brppnet_jax.models.darknet import STAGE_CHANNELS
from brppnet_jax.models.darknet import Backbone
from brppnet_jax.models.decoder import ASPP
from brppnet_jax.models.decoder import HEAD_UPSAMPLINGS
from brppnet_jax.models.decoder import MFFM
from brppnet_jax.models.decoder import PSA
from brppnet_jax.models.decoder import MaskHead
from brppnet_jax.models.layers import DBL
from brppnet_jax.models.layers import Fusion
from brppnet_jax.models.layers import Res
from brppnet_jax.models.layers import scaled_channels
from brppnet_jax.models.text_encoder import PADDING_MODES
from brppnet_jax.models.text_encoder import TextEncoder

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
FROZEN_BN_MODES = ("batch_stats", "stored")


class BRPPNet(nn.Module):
  """Referring segmentation network of spec section 3.

  Channels: `width` scales the backbone's and everything that follows its channel counts
  (C3, C4, C5 fusions, the 26x26 MFFM); `hidden_dim` (256) sets the 52x52 MFFM, the
  localisation fusion, PSA, ASPP and the mask head. With `freeze_backbone` the backbone
  always uses its stored BatchNorm statistics (they are never updated) and no gradient
  flows into it. Images are [N, H, W, 3] with H and W multiples of 32.

  With `freeze_backbone`, `frozen_bn` says how the frozen BatchNorms normalise while
  training: "batch_stats" (the original under Keras 2.3.1: the batch's statistics; the stored
  ones are never updated, see `steps.train_step`) or "stored". `text_padding` is the text
  encoder's padding mode ("original" or "masked", see text_encoder.py).
  """

  vocab_size: int
  embed_dim: int = 300
  rnn_hidden_size: int = 1024
  rnn_dropout: float = 0.1
  hidden_dim: int = 256
  width: float = 1.0
  stage_blocks: Sequence[int] = (1, 2, 8, 8, 4)
  seg_out_stride: int = 2
  freeze_backbone: bool = True
  frozen_bn: str = "batch_stats"
  text_padding: str = "original"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jnp.ndarray, tokens: jnp.ndarray, train: bool = False):
    if images.ndim != 4 or images.shape[-1] != 3 or images.shape[1] % 32 or images.shape[2] % 32:
      raise ValueError(f"images must be [N, H, W, 3] with H, W multiples of 32, "
                       f"got {images.shape}")
    ch = lambda c: scaled_channels(c, self.width)
    dt = self.dtype
    backbone_batch_stats = train and (not self.freeze_backbone or self.frozen_bn == "batch_stats")
    c3, c4, x = Backbone(self.width, tuple(self.stage_blocks), dt, name="backbone")(
        images.astype(dt), backbone_batch_stats)
    if self.freeze_backbone:
      c3, c4, x = jax.lax.stop_gradient((c3, c4, x))
    for i, (channels, kernel) in enumerate(NECK[FROZEN_NECK_CONVS:], start=FROZEN_NECK_CONVS):
      x = DBL(ch(channels), kernel, dtype=dt, name=f"DBL_neck{i}")(x, train)
    q, _ = TextEncoder(self.vocab_size, self.embed_dim, self.rnn_hidden_size, self.rnn_dropout,
                       self.text_padding, name="text_encoder")(tokens, train)
    q = q.astype(dt)

    def fuse(v, level, channels):
      v = Res(channels, dtype=dt, name=f"Res_{level}")(v, train)
      return Fusion(channels, dtype=dt, name=f"Fusion_{level}")(v, q, train)

    f3 = fuse(c3, "c3", ch(STAGE_CHANNELS[2]))
    f2 = fuse(c4, "c4", ch(STAGE_CHANNELS[3]))
    f1 = fuse(x, "c5", ch(NECK[-1][0]))
    m2 = MFFM(ch(STAGE_CHANNELS[3]), dtype=dt, name="MFFM_m2")(f1, f2, train)
    m3 = MFFM(self.hidden_dim, dtype=dt, name="MFFM_m3")(m2, f3, train)
    s = fuse(m3, "loc", self.hidden_dim)
    e = jnp.concatenate([m3, PSA(self.hidden_dim, dtype=dt, name="PSA")(s, m3)], axis=-1)
    e = ASPP(self.hidden_dim, dtype=dt, name="ASPP")(e, train)
    logits = MaskHead(self.hidden_dim, self.seg_out_stride, dtype=dt, name="head")(e, train)
    return logits.astype(jnp.float32)


def _is_int(value: Any) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check(ok: bool, key: str, value: Any, expected: str) -> None:
  if not ok:
    raise ValueError(f"config.model.{key} must be {expected}, got {value!r}")


def create_model(config: ml_collections.ConfigDict) -> BRPPNet:
  """Builds BRPPNet from `config.model` (configs/default.py), validating every field used."""
  m = config.model
  _check(_is_int(m.vocab_size) and m.vocab_size >= 2, "vocab_size", m.vocab_size,
         "an int >= 2 (set it from the vocabulary)")
  _check(m.seg_out_stride in HEAD_UPSAMPLINGS, "seg_out_stride", m.seg_out_stride,
         f"one of {sorted(HEAD_UPSAMPLINGS)}")
  _check(m.dtype in DTYPES, "dtype", m.dtype, f"one of {sorted(DTYPES)}")
  for key in ("embed_dim", "rnn_hidden_size"):
    _check(_is_int(m[key]) and m[key] >= 1, key, m[key], "a positive int")
  _check(_is_int(m.hidden_dim) and m.hidden_dim >= 2 and m.hidden_dim % 2 == 0,
         "hidden_dim", m.hidden_dim, "an even int >= 2")
  _check(0.0 <= m.rnn_dropout < 1.0, "rnn_dropout", m.rnn_dropout, "in [0, 1)")
  _check(m.width > 0, "width", m.width, "> 0")
  blocks = tuple(m.stage_blocks)
  _check(len(blocks) == len(STAGE_CHANNELS) and all(_is_int(b) and b >= 1
                                                    for b in blocks),
         "stage_blocks", m.stage_blocks, f"{len(STAGE_CHANNELS)} ints >= 1")
  _check(isinstance(m.freeze_backbone, bool), "freeze_backbone", m.freeze_backbone, "a bool")
  _check(m.frozen_bn in FROZEN_BN_MODES, "frozen_bn", m.frozen_bn, f"one of {FROZEN_BN_MODES}")
  _check(m.text_padding in PADDING_MODES, "text_padding", m.text_padding,
         f"one of {PADDING_MODES}")
  return BRPPNet(
      vocab_size=int(m.vocab_size), embed_dim=int(m.embed_dim),
      rnn_hidden_size=int(m.rnn_hidden_size), rnn_dropout=float(m.rnn_dropout),
      hidden_dim=int(m.hidden_dim), width=float(m.width),
      stage_blocks=tuple(int(b) for b in blocks), seg_out_stride=int(m.seg_out_stride),
      freeze_backbone=m.freeze_backbone, frozen_bn=m.frozen_bn, text_padding=m.text_padding,
      dtype=DTYPES[m.dtype])
