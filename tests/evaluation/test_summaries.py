"""TensorBoard's image grid: the request above each row, then the four panels."""

import numpy as np

from brppnet_jax.data import letterbox
from brppnet_jax.evaluation import summaries
from brppnet_jax.protect import hiding


def _example(sentence: str, seed: int) -> summaries.Example:
  rng = np.random.default_rng(seed)
  gt = np.zeros((30, 40), np.uint8)
  gt[5:25, 10:30] = 255
  return summaries.Example(rng.integers(0, 256, (30, 40, 3), np.uint8), gt,
                           rng.random((30, 40)).astype(np.float32), sentence)


def test_each_row_has_its_request_written_above_the_panels():
  examples = [_example("protect privacy of man on the left", 0),
              _example("protect privacy of the tallest woman in the red shirt, who stands at "
                       "the back behind everyone else", 1)]
  grid = summaries.example_grid(examples, 64)
  lines = len(summaries.caption_lines(examples[1].sentence, 256))
  assert lines == 3  # The long request wraps; every row gets the same band.
  assert len(summaries.caption_lines(examples[0].sentence, 256)) == 1
  band = lines * summaries.CAPTION_LINE
  assert grid.shape == (2, band + 64, 256, 3) and grid.dtype == np.uint8
  for row, ex in zip(grid, examples):
    np.testing.assert_array_equal(row[:band], summaries.caption_band(ex.sentence, 256, lines))
    assert (row[:band] < 128).any()  # Dark text on the white band.
    panels = row[band:]
    np.testing.assert_array_equal(panels[:, :64], letterbox.letterbox_uint8(ex.image, 64)[0])
    protected = hiding.protect(ex.image, ex.prob >= hiding.MASK_THRESHOLD)
    np.testing.assert_array_equal(panels[:, 192:], letterbox.letterbox_uint8(protected, 64)[0])
  assert not np.array_equal(grid[0, :band], grid[1, :band])


def test_caption_lines_fit_the_width_and_keep_every_word():
  text = "protect privacy of the guy in the middle holding a very long umbrella ü"
  lines = summaries.caption_lines(text, 128)
  assert len(lines) > 1 and " ".join(lines) == text.replace("ü", "?")
  for line in lines + summaries.caption_lines("x" * 80, 128):
    assert summaries.cv2.getTextSize(line, summaries.CAPTION_FONT, summaries.CAPTION_SCALE,
                                     1)[0][0] <= 128 - 8
  assert "".join(summaries.caption_lines("x" * 80, 128)) == "x" * 80  # Cut, not lost.
