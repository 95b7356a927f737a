"""What a person looks at after an evaluation: an image grid of examples and a metric table."""

from __future__ import annotations

import dataclasses

import numpy as np

from brppnet_jax.data import letterbox
from brppnet_jax.protect import hiding


@dataclasses.dataclass
class Example:
  """One evaluated expression kept for image summaries."""
  image: np.ndarray  # uint8 [h, w, 3], original.
  gt_mask: np.ndarray  # uint8 [h, w].
  prob: np.ndarray  # float32 [h, w].
  sentence: str


def _panel(image: np.ndarray, size: int) -> np.ndarray:
  """An image letterboxed into a size x size uint8 tile."""
  return letterbox.letterbox_uint8(np.ascontiguousarray(image, np.uint8), size)[0]


def example_grid(examples: list[Example], size: int) -> np.ndarray:
  """[N, size, 4 * size, 3] uint8 rows: image | ground truth | prediction | protected image."""
  rows = []
  for ex in examples:
    gray = lambda m: np.repeat(np.asarray(m, np.uint8)[..., None], 3, axis=-1)
    protected = hiding.protect(ex.image, ex.prob >= 0.5)
    tiles = [ex.image, gray((ex.gt_mask > 0) * 255), gray(np.round(ex.prob * 255)), protected]
    rows.append(np.concatenate([_panel(t, size) for t in tiles], axis=1))
  return np.stack(rows)


def format_table(result: dict) -> str:
  """The metrics as an aligned two-column text table."""
  width = max(len(k) for k in result)
  lines = []
  for key, value in result.items():
    text = "n/a" if value is None else (f"{value:.4f}" if isinstance(value, float) else value)
    lines.append(f"{key:<{width}}  {text}")
  return "\n".join(lines)
