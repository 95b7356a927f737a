"""Hides the person a request refers to, from typed text or a spoken request.

    python -m brppnet_jax.protect --workdir=DIR --image=photo.jpg \
        --text="protect privacy of man in red shirt" --out=protected.png
    python -m brppnet_jax.protect --workdir=DIR --image=photo.jpg --audio=request.wav \
        --out=protected.png [--method=blur] [--save_mask=mask.png]

Everything a user can get wrong (image, request, audio, output paths, workdir) is checked
before the model loads. Every failure ends with one line on stderr, "error: ...", and exit
status 1; the input image is only read. A request with words the model does not know gets
a "warning: ..." line naming them; one with no known word after "protect privacy of" fails.
"""

import os
import sys
import warnings

from absl import flags
from absl import logging
import numpy as np
from PIL import Image

from brppnet_jax.protect import hiding
from brppnet_jax.protect import photo
from brppnet_jax.runtime import paths

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "A training workdir (its best checkpoint is used).")
flags.DEFINE_integer("step", None, "Checkpoint step instead of the best.")
flags.DEFINE_string("image", None, "Input photo (any format Pillow reads).")
flags.DEFINE_string("text", None, "The request, e.g. 'protect privacy of man in red shirt'.")
flags.DEFINE_string("audio", None, "A 16-bit PCM WAV file with the spoken request, instead "
                    "of --text.")
flags.DEFINE_string("out", None, "Where to write the protected image (.png, .jpg, ...).")
flags.DEFINE_string("method", "pixelate", "|".join(hiding.METHODS))
flags.DEFINE_string("save_mask", None, "Optional .png path for the predicted 0/255 mask.")
flags.DEFINE_float("threshold", 0.5, "Probability at or above which a pixel is protected.")

_REQUIRED = ("workdir", "image", "out")


def _check_output(flag: str, png_only: bool = False) -> None:
  """An output path must not be the input, must name a writable format and an existing folder."""
  path = FLAGS[flag].value
  if os.path.realpath(path) == os.path.realpath(FLAGS.image) or (
      os.path.exists(path) and os.path.samefile(path, FLAGS.image)):
    raise ValueError(f"--{flag}={path} would overwrite the input image")
  if os.path.isdir(path):
    raise ValueError(f"--{flag}={path} is a folder, not a file name")
  extension = os.path.splitext(path)[1].lower()
  image_format = Image.registered_extensions().get(extension)
  if png_only and image_format != "PNG":
    raise ValueError(f"--{flag}={path} must end in .png (a lossless 0/255 mask)")
  if image_format not in Image.SAVE:
    raise ValueError(f"--{flag}={path}: cannot write images of type {extension or '(none)'!r}; "
                     "use .png or .jpg")
  folder = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(folder):
    raise FileNotFoundError(f"--{flag}={path}: folder {folder} does not exist")


def check_inputs() -> np.ndarray:
  """Validates every flag and input file, cheapest first; returns the image (uint8 RGB)."""
  missing = [f"--{name}" for name in _REQUIRED if not FLAGS[name].value]
  if missing:
    raise ValueError(f"missing required flag(s): {' '.join(missing)}")
  if (FLAGS.text is None) == (FLAGS.audio is None):
    raise ValueError("give exactly one of --text and --audio")
  if FLAGS.text is not None and not FLAGS.text.strip():
    raise ValueError("the request text (--text) is empty")
  hiding.check_method(FLAGS.method)
  if not 0.0 < FLAGS.threshold <= 1.0:
    raise ValueError(f"--threshold={FLAGS.threshold} must be in (0, 1]")
  if not paths.is_dir(FLAGS.workdir):  # Local or gs://, as Predictor reads it.
    raise FileNotFoundError(f"workdir not found: {FLAGS.workdir}")
  image = photo.load_rgb(FLAGS.image)
  _check_output("out")
  if FLAGS.save_mask:
    _check_output("save_mask", png_only=True)
    if os.path.abspath(FLAGS.save_mask) == os.path.abspath(FLAGS.out):
      raise ValueError("--out and --save_mask name the same file")
  if FLAGS.audio is not None:
    from brppnet_jax.protect import speech  # pylint: disable=g-import-not-at-top  (slow import)
    speech.load_wav(FLAGS.audio)
  return image


def request_text(predictor) -> str:
  """The typed request, or the transcript of the spoken one (printed)."""
  if FLAGS.text is not None:
    return FLAGS.text
  from brppnet_jax.protect import speech  # pylint: disable=g-import-not-at-top  (slow import)
  transcript = speech.transcribe(FLAGS.audio, sentences=predictor.train_expressions())
  request = speech.restore_prefix(transcript)
  print(f"heard: {transcript!r} -> request: {request!r}")
  return request


def run() -> None:
  image = check_inputs()
  from brppnet_jax.protect import predictor as predictor_lib
  predictor = predictor_lib.Predictor.from_workdir(FLAGS.workdir, step=FLAGS.step)
  text = request_text(predictor)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", predictor_lib.UnknownWordsWarning)
    prob = predictor.predict_mask(image, text)  # No known word: ValueError, nothing written.
  for warning in caught:
    if issubclass(warning.category, predictor_lib.UnknownWordsWarning):
      print(f"warning: {warning.message}", file=sys.stderr)
  mask = prob >= FLAGS.threshold
  Image.fromarray(hiding.protect(image, mask, method=FLAGS.method)).save(FLAGS.out)
  if FLAGS.save_mask:
    Image.fromarray(mask.astype(np.uint8) * 255).save(FLAGS.save_mask)
  print(f"protected {100.0 * mask.mean():.1f}% of the image for {text!r}: wrote {FLAGS.out}"
        + (f" and {FLAGS.save_mask}" if FLAGS.save_mask else ""))


def main(argv):
  if len(argv) > 1:
    sys.exit(f"error: unexpected arguments: {' '.join(argv[1:])}")
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.ERROR)  # Library warnings are not the user's business.
  try:
    run()
  except (OSError, ValueError) as e:
    sys.exit("error: " + " ".join(str(e).split()))

