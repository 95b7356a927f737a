"""Hides the person a request refers to, from typed text or a spoken request.

    python -m brppnet_jax.protect --workdir=DIR --image=photo.jpg \
        --text="protect privacy of man in red shirt" --out=protected.png
    python -m brppnet_jax.protect --workdir=DIR --image=photo.jpg --audio=request.wav \
        --out=protected.png [--method=blur] [--save_mask=mask.png]

Every failure ends with one line on stderr and a non-zero exit status; the input image is
only read.
"""

import os
import sys

from absl import app
from absl import flags
import numpy as np
from PIL import Image

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "A training workdir (its best checkpoint is used).")
flags.DEFINE_integer("step", None, "Checkpoint step instead of the best.")
flags.DEFINE_string("image", None, "Input photo (any format Pillow reads).")
flags.DEFINE_string("text", None, "The request, e.g. 'protect privacy of man in red shirt'.")
flags.DEFINE_string("audio", None, "A WAV file with the spoken request, instead of --text.")
flags.DEFINE_string("out", None, "Where to write the protected image.")
flags.DEFINE_string("method", "pixelate", "pixelate | blur | fill | box10")
flags.DEFINE_string("save_mask", None, "Optional path for the predicted 0/255 mask (PNG).")
flags.DEFINE_float("threshold", 0.5, "Probability above which a pixel is protected.")
flags.mark_flags_as_required(["workdir", "image", "out"])


def _check_paths() -> None:
  if bool(FLAGS.text) == bool(FLAGS.audio):
    raise ValueError("give exactly one of --text and --audio")
  if FLAGS.text is not None and not FLAGS.text.strip():
    raise ValueError("the request text is empty")
  for out in (FLAGS.out, FLAGS.save_mask):
    if out and os.path.abspath(out) == os.path.abspath(FLAGS.image):
      raise ValueError(f"refusing to overwrite the input image {FLAGS.image}")


def request_text(predictor) -> str:
  """The typed request, or the transcript of the spoken one."""
  if FLAGS.text:
    return FLAGS.text
  from brppnet_jax import speech  # pylint: disable=g-import-not-at-top  (slow import)
  transcript = speech.transcribe(FLAGS.audio, sentences=predictor.train_expressions())
  request = speech.restore_prefix(transcript)
  print(f"heard: {transcript!r} -> request: {request!r}")
  return request


def run() -> None:
  _check_paths()
  from brppnet_jax import inference  # pylint: disable=g-import-not-at-top  (slow import)
  from brppnet_jax import privacy  # pylint: disable=g-import-not-at-top
  image = inference.load_rgb(FLAGS.image)
  privacy.check_method(FLAGS.method)
  predictor = inference.Predictor.from_workdir(FLAGS.workdir, step=FLAGS.step)
  text = request_text(predictor)
  prob = predictor.predict_mask(image, text)
  mask = prob >= FLAGS.threshold
  protected = privacy.protect(image, mask, method=FLAGS.method)
  Image.fromarray(protected).save(FLAGS.out)
  if FLAGS.save_mask:
    Image.fromarray(mask.astype(np.uint8) * 255).save(FLAGS.save_mask)
  share = 100.0 * mask.mean()
  print(f"protected {share:.1f}% of the image for {text!r}: wrote {FLAGS.out}"
        + (f" and {FLAGS.save_mask}" if FLAGS.save_mask else ""))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    run()
  except (FileNotFoundError, ValueError, OSError) as e:
    sys.exit(f"error: {e}")


if __name__ == "__main__":
  app.run(main)
