"""What a person looks at after an evaluation: an image grid of examples and a metric table."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from brppnet_jax.data import letterbox
from brppnet_jax.protect import hiding

CAPTION_FONT = cv2.FONT_HERSHEY_SIMPLEX
CAPTION_SCALE = 0.4
CAPTION_LINE = 14  # Pixels per caption line at CAPTION_SCALE.


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


def _text_width(text: str) -> int:
  return cv2.getTextSize(text, CAPTION_FONT, CAPTION_SCALE, 1)[0][0]


def caption_lines(text: str, width: int) -> list[str]:
  """`text` wrapped into lines that fit `width` pixels (OpenCV's font: ASCII, others '?');
  a word wider than a line is cut."""
  lines = []
  for word in text.encode("ascii", "replace").decode("ascii").split():
    candidate = f"{lines[-1]} {word}" if lines else word
    if lines and _text_width(candidate) <= width - 8:
      lines[-1] = candidate
    else:
      while _text_width(word) > width - 8 and len(word) > 1:
        cut = max(1, len(word) * (width - 8) // _text_width(word))
        lines.append(word[:cut])
        word = word[cut:]
      lines.append(word)
  return lines or [""]


def caption_band(text: str, width: int, lines: int) -> np.ndarray:
  """[lines * CAPTION_LINE, width, 3] uint8: `text` wrapped, black on white."""
  band = np.full((lines * CAPTION_LINE, width, 3), 255, np.uint8)
  for k, line in enumerate(caption_lines(text, width)[:lines]):
    cv2.putText(band, line, (4, (k + 1) * CAPTION_LINE - 4), CAPTION_FONT, CAPTION_SCALE,
                (0, 0, 0), 1, cv2.LINE_AA)
  return band


def example_grid(examples: list[Example], size: int) -> np.ndarray:
  """[N, band + size, 4 * size, 3] uint8 rows: the request written above
  image | ground truth | prediction | protected image (at hiding.MASK_THRESHOLD).

  The band holds as many caption lines as the longest request needs.
  """
  width = 4 * size
  lines = max(len(caption_lines(ex.sentence, width)) for ex in examples)
  rows = []
  for ex in examples:
    gray = lambda m: np.repeat(np.asarray(m, np.uint8)[..., None], 3, axis=-1)
    protected = hiding.protect(ex.image, ex.prob >= hiding.MASK_THRESHOLD)
    tiles = [ex.image, gray((ex.gt_mask > 0) * 255), gray(np.round(ex.prob * 255)), protected]
    row = np.concatenate([_panel(t, size) for t in tiles], axis=1)
    rows.append(np.concatenate([caption_band(ex.sentence, width, lines), row], axis=0))
  return np.stack(rows)


def format_table(result: dict) -> str:
  """The metrics as an aligned two-column text table."""
  width = max(len(k) for k in result)
  lines = []
  for key, value in result.items():
    text = "n/a" if value is None else (f"{value:.4f}" if isinstance(value, float) else value)
    lines.append(f"{key:<{width}}  {text}")
  return "\n".join(lines)
