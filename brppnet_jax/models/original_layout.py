"""Keras layer names of the original BRPPNet and of keras-yolo3, and where their weights live here.

Keras names a layer `<class>_<k>`, k counting the layers of that class in creation order, so
both tables follow from the order in which the two Keras programs create their layers:
- the original BRPPNet (lab206/BRPPNet): Darknet-53, the six neck convs, then for C3, C4 and
  C5 a Res block and a fusion (Dense, two BatchNorms), the two MFFMs, the localisation Res and
  fusion, PSA, ASPP and the mask head; the text encoder is `bidirectional_1`.
- keras-yolo3's `yolo_body` (the layout of `yolo3_480000.h5` and, conv for conv, of Darknet's
  `yolov3.weights`): Darknet-53, then three output blocks of five DBLs, a 3x3 DBL and a biased
  1x1 conv to 255 channels, joined by a 1x1 DBL and an upsampling.
Both are generated for any channel widths, `stage_blocks` and `seg_out_stride`, so the small
test networks have their own consistent tables.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import dataclasses
import re

from brppnet_jax.models.darknet import NECK
from brppnet_jax.models.darknet import STAGE_CHANNELS
from brppnet_jax.models.darknet import STEM_CHANNELS
from brppnet_jax.models.darknet import conv_order
from brppnet_jax.models.decoder import HEAD_UPSAMPLINGS

CONV, BN, DENSE, BIGRU = "Conv2D", "BatchNormalization", "Dense", "Bidirectional"
_PREFIX = {CONV: "conv2d", BN: "batch_normalization", DENSE: "dense", BIGRU: "bidirectional"}
# keras-yolo3's output convs predict 3 anchors x (4 box + 1 objectness + 80 COCO classes).
YOLO_OUTPUTS = 255


@dataclasses.dataclass(frozen=True)
class KerasLayer:
  """One weighted Keras layer and the module (path in the Flax variables) holding its weights."""
  name: str
  kind: str
  path: tuple[str, ...]


def _dbl(path: tuple[str, ...]) -> list[tuple[str, tuple[str, ...]]]:
  return [(CONV, path + ("conv",)), (BN, path + ("bn",))]


def _fusion(level: str) -> list[tuple[str, tuple[str, ...]]]:
  res = _dbl((f"Res_{level}", "DBL_1x1")) + _dbl((f"Res_{level}", "DBL_3x3"))
  return res + [(DENSE, (f"Fusion_{level}", "dense")), (BN, (f"Fusion_{level}", "bn_text")),
                (BN, (f"Fusion_{level}", "bn_fused"))]


def _name(kinds: list[tuple[str, tuple[str, ...]]]) -> list[KerasLayer]:
  counts: dict[str, int] = {}
  layers = []
  for kind, path in kinds:
    counts[kind] = counts.get(kind, 0) + 1
    layers.append(KerasLayer(f"{_PREFIX[kind]}_{counts[kind]}", kind, path))
  return layers


def brppnet_layers(stage_blocks: Sequence[int] = (1, 2, 8, 8, 4),
                   seg_out_stride: int = 2) -> list[KerasLayer]:
  """The original BRPPNet's weighted layers in creation order, each with its module here."""
  kinds = []
  for module in conv_order(stage_blocks):
    kinds += _dbl(("backbone",) + module)
  kinds += _dbl(("DBL_neck4",)) + _dbl(("DBL_neck5",))
  kinds += [(BIGRU, ("text_encoder",))]
  for level in ("c3", "c4", "c5"):
    kinds += _fusion(level)
  for mffm in ("MFFM_m2", "MFFM_m3"):
    for dbl in ("DBL_x", "DBL_merge", "DBL_1x1", "DBL_3x3"):
      kinds += _dbl((mffm, dbl))
  kinds += _fusion("loc")
  kinds += [(CONV, ("PSA", name)) for name in
            ("channel_value", "channel_key", "channel_up", "spatial_query", "spatial_value")]
  for dbl in ("DBL_1x1", "DBL_rate6", "DBL_rate12", "DBL_rate18", "DBL_pool"):
    kinds += _dbl(("ASPP", dbl))
  kinds += [(CONV, ("ASPP", "DarknetConv_project"))]
  head = [f"DBL_{i}" for i in range(3)]
  head += [f"DBL_up{i}" for i in range(HEAD_UPSAMPLINGS[seg_out_stride])]
  for dbl in head:
    kinds += _dbl(("head", dbl))
  kinds += [(CONV, ("head", "DarknetConv_logits"))]
  return _name(kinds)


@dataclasses.dataclass(frozen=True)
class YoloConv:
  """One conv of keras-yolo3 / Darknet in file order: names, kernel [k, k, cin, cout], BN or
  bias."""
  conv_name: str
  bn_name: str | None  # None: a biased output conv without BatchNorm.
  kernel: tuple[int, int, int, int]


def yolo3_convs(stage_blocks: Sequence[int] = (1, 2, 8, 8, 4),
                ch: Callable[[int], int] = lambda c: c) -> list[YoloConv]:
  """Every conv of YOLOv3 (`yolo_body`, 80 classes) in creation order = Darknet file order.

  `ch` maps the published channel counts (32 ... 1024) to the network's own.
  """
  specs = [(3, 3, ch(STEM_CHANNELS))]  # (kernel, cin, cout); cout < 0 marks an output conv.
  cin = ch(STEM_CHANNELS)
  for channels, blocks in zip(STAGE_CHANNELS, stage_blocks):
    c = ch(channels)
    specs.append((3, cin, c))
    specs += [(1, c, c // 2), (3, c // 2, c)] * blocks
    cin = c
  skips = [ch(STAGE_CHANNELS[3]), ch(STAGE_CHANNELS[2])]  # C4 and C3 join blocks 2 and 3.
  for block in range(3):
    filters, wide = ch(NECK[0][0] >> block), ch(NECK[1][0] >> block)
    if block:
      specs.append((1, cin, filters))  # The 1x1 DBL before the upsampling ...
      cin = filters + skips[block - 1]  # ... whose output is concatenated with the skip.
    for kernel, c in [(1, filters), (3, wide)] * 3:
      specs.append((kernel, cin, c))
      cin = c
    specs.append((1, wide, -YOLO_OUTPUTS))
    cin = filters  # The next block starts from the fifth DBL's output.
  convs, bns = 0, 0
  out = []
  for kernel, c_in, c_out in specs:
    convs += 1
    if c_out < 0:
      out.append(YoloConv(f"conv2d_{convs}", None, (kernel, kernel, c_in, -c_out)))
    else:
      bns += 1
      out.append(YoloConv(f"conv2d_{convs}", f"batch_normalization_{bns}",
                          (kernel, kernel, c_in, c_out)))
  return out


def canonical_names(names: Sequence[str]) -> dict[str, str]:
  """Maps each Keras layer name to the name it has in a model built first in its session.

  Keras keeps counting across models of one session, so the same network may be saved as
  `conv2d_92..` instead of `conv2d_1..`; every class's counter is shifted back to start at 1.
  """
  parsed = {n: re.fullmatch(r"(.+)_(\d+)", n) for n in names}
  first: dict[str, int] = {}
  for match in parsed.values():
    if match:
      prefix, k = match.group(1), int(match.group(2))
      first[prefix] = min(first.get(prefix, k), k)
  return {n: f"{m.group(1)}_{int(m.group(2)) - first[m.group(1)] + 1}" if m else n
          for n, m in parsed.items()}
