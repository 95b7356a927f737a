r"""Hides the people requests refer to: in one photo, a folder of photos, or a list of rows.

    python -m brppnet_jax.protect --workdir=DIR --image=photo.jpg \
        --text="protect privacy of man in red shirt" [--text="protect privacy of ..."] \
        --out=protected.png [--method=blur] [--save_mask=mask.png]
    python -m brppnet_jax.protect --workdir=DIR --image=photo.jpg --audio=request.wav \
        --out=protected.png
    python -m brppnet_jax.protect --workdir=DIR --input_dir=PHOTOS --out_dir=OUT --text=...
    python -m brppnet_jax.protect --workdir=DIR --requests=rows.csv --out_dir=OUT
    (--model=FILE.tflite instead of --workdir runs an exported network without jax)

Everything a user can get wrong (image, request, audio, output paths, workdir) is checked
before the model loads. Every failure ends with one line on stderr, "error: ...", and exit
status 1; inputs are only read, and an existing output is kept unless --overwrite. A request
with words the model does not know gets a "warning: ..." line naming them; one with no known
word after "protect privacy of", or only function words, fails. So does a request whose mask
is empty (nothing would be hidden), unless --allow_empty. Outputs carry no metadata of the
input (no EXIF, GPS, XMP, IPTC, comments); --keep_metadata copies its EXIF except GPS.
"""

import os
import sys

from absl import flags
import numpy as np

from brppnet_jax.protect import batch
from brppnet_jax.protect import hiding
from brppnet_jax.protect import network
from brppnet_jax.protect import people
from brppnet_jax.protect import photo
from brppnet_jax.protect import requests as requests_lib
from brppnet_jax.runtime import cli

FLAGS = flags.FLAGS
network.define_network_flags(exported=True)
flags.adopt_module_key_flags(network)
flags.DEFINE_string("image", None, "Input photo (any format Pillow reads).")
flags.DEFINE_multi_string("text", None, "The request, e.g. 'protect privacy of man in red "
                          "shirt'; repeat it for several people in one photo.")
flags.DEFINE_string("audio", None, "A 16-bit PCM WAV file with the spoken request, instead "
                    "of --text.")
flags.DEFINE_string("out", None, "Where to write the protected image (.png, .jpg, ...).")
flags.DEFINE_string("input_dir", None, "Protect every image in this folder (and below it).")
flags.DEFINE_string("requests", None, "A CSV (image,request) or JSON Lines "
                    "({\"image\": ..., \"request\": ...}) file of rows to protect.")
flags.DEFINE_string("out_dir", None, "Output folder of --input_dir or --requests.")
flags.DEFINE_enum("format", "png", list(batch.FORMATS), "Output format of --out_dir files.")
flags.DEFINE_string("report", None, "Where the folder run's JSON report goes (default "
                    f"OUT_DIR/{batch.REPORT_FILE}).")
flags.DEFINE_string("method", hiding.DEFAULT_METHOD, "|".join(hiding.METHODS))
flags.DEFINE_float("margin", None, "Grow each mask by this share of the person's size before "
                   f"hiding, so hair and outline are covered (default {hiding.DEFAULT_MARGIN}).")
flags.DEFINE_string("save_mask", None, "Optional .png path for the predicted 0/255 mask.")
flags.DEFINE_float("threshold", hiding.MASK_THRESHOLD, "Probability at or above which a pixel "
                   "is protected.")
flags.DEFINE_bool("allow_empty", False, "Write the output even if a request protected "
                  "nothing (by default that is an error: the person would stay visible).")
flags.DEFINE_bool("overwrite", False, "Replace outputs that already exist.")
flags.DEFINE_bool("keep_metadata", False, "Copy the input's EXIF (dates, camera) into the "
                  "output, without its GPS position. By default outputs carry no metadata.")
flags.DEFINE_integer("max_pixels", photo.MAX_PIXELS, "Larger images are refused before "
                     "decoding (decompression bombs).")


def _check_output(flag: str, png_only: bool = False) -> None:
  """An output path must not be the input, must name a writable format and an existing folder."""
  path = FLAGS[flag].value
  if os.path.realpath(path) == os.path.realpath(FLAGS.image) or (
      os.path.exists(path) and os.path.samefile(path, FLAGS.image)):
    raise ValueError(f"--{flag}={path} would overwrite the input image")
  if os.path.isdir(path):
    raise ValueError(f"--{flag}={path} is a folder, not a file name")
  if png_only and not path.lower().endswith(".png"):
    raise ValueError(f"--{flag}={path} must end in .png (a lossless 0/255 mask)")
  photo.output_format(path)  # ValueError for an extension Pillow cannot write.
  folder = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(folder):
    raise FileNotFoundError(f"--{flag}={path}: folder {folder} does not exist")
  if os.path.exists(path) and not FLAGS.overwrite:
    raise ValueError(f"--{flag}={path} exists (use --overwrite to replace it)")


def _check_common() -> None:
  hiding.check_method(FLAGS.method)
  if not 0.0 < FLAGS.threshold <= 1.0:
    raise ValueError(f"--threshold={FLAGS.threshold} must be in (0, 1]")
  if FLAGS.margin is not None and FLAGS.margin < 0:
    raise ValueError(f"--margin={FLAGS.margin} must be >= 0 (a share of the person's size)")
  if FLAGS.text is not None and any(not t.strip() for t in FLAGS.text):
    raise ValueError("the request text (--text) is empty")
  network.check_source(FLAGS.workdir, FLAGS.model)


def check_single() -> photo.Photo:
  """Validates the one-photo flags and files, cheapest first; returns the photo."""
  missing = [f"--{name}" for name in ("image", "out") if not FLAGS[name].value]
  if missing:
    raise ValueError(f"missing required flag(s): {' '.join(missing)}")
  if (FLAGS.text is None) == (FLAGS.audio is None):
    raise ValueError("give exactly one of --text and --audio")
  _check_common()
  image = photo.read_photo(FLAGS.image, FLAGS.max_pixels)
  _check_output("out")
  if FLAGS.save_mask:
    _check_output("save_mask", png_only=True)
    if os.path.abspath(FLAGS.save_mask) == os.path.abspath(FLAGS.out):
      raise ValueError("--out and --save_mask name the same file")
  if FLAGS.audio is not None:
    from brppnet_jax.protect import speech  # pylint: disable=g-import-not-at-top  (slow import)
    speech.load_wav(FLAGS.audio)
  return image


def request_texts(predictor) -> list[str]:
  """The typed requests, or the transcript of the spoken one (printed)."""
  if FLAGS.text is not None:
    return list(FLAGS.text)
  from brppnet_jax.protect import speech  # pylint: disable=g-import-not-at-top  (slow import)
  transcript = speech.transcribe(FLAGS.audio, sentences=predictor.train_expressions())
  request = speech.restore_prefix(transcript)
  print(f"heard: {transcript!r} -> request: {request!r}")
  return [request]


def _options() -> batch.Options:
  return batch.Options(method=FLAGS.method, threshold=FLAGS.threshold, margin=FLAGS.margin,
                       allow_empty=FLAGS.allow_empty, overwrite=FLAGS.overwrite,
                       keep_metadata=FLAGS.keep_metadata, max_pixels=FLAGS.max_pixels)


def _note(predictor) -> None:
  if network.is_synthetic(predictor):
    print(f"note: {network.description(predictor)}")


def run_single() -> None:
  image = check_single()
  predictor = network.open_predictor(FLAGS.workdir, FLAGS.model, FLAGS.step)
  _note(predictor)
  texts = request_texts(predictor)
  unknown = people.check_requests(predictor, texts)  # Unusable request: nothing written.
  for text, words in zip(texts, unknown):
    if words:
      print(f"warning: request {text!r}: unknown words read as <unk>: {', '.join(words)}",
            file=sys.stderr)
  options = _options()
  probs = people.predict(predictor, [image.rgb], [texts])[0]
  result = people.hide(image.rgb, probs, texts, unknown, method=options.method,
                       threshold=options.threshold, margin=options.margin)
  if result.empty() and not options.allow_empty:
    raise ValueError(people.nothing_protected_message(result.empty(), options.threshold))
  photo.write_image(FLAGS.out, result.rgb, image, options.keep_metadata)
  if FLAGS.save_mask:
    photo.write_image(FLAGS.save_mask, result.mask.astype(np.uint8) * 255)
  shares = ", ".join(f"{100.0 * r.share:.1f}%" + (" of the image" if i == 0 else "") +
                     f" for {r.name()}" for i, r in enumerate(result.requests))
  print(f"protected {shares}: wrote {FLAGS.out}"
        + (f" and {FLAGS.save_mask}" if FLAGS.save_mask else ""))


def run_folder() -> int:
  if not FLAGS.out_dir:
    raise ValueError("--input_dir and --requests need --out_dir")
  if FLAGS.image or FLAGS.out or FLAGS.audio or FLAGS.save_mask:
    raise ValueError("--image, --out, --audio and --save_mask are for one photo; a folder "
                     "run takes --input_dir or --requests with --out_dir")
  if FLAGS.requests and FLAGS.text:
    raise ValueError("--requests rows carry their own requests; drop --text")
  if FLAGS.input_dir and not FLAGS.requests and not FLAGS.text:
    raise ValueError("--input_dir needs --text (the request for every photo)")
  _check_common()
  if FLAGS.input_dir and not os.path.isdir(FLAGS.input_dir):
    raise FileNotFoundError(f"--input_dir={FLAGS.input_dir} is not a folder")
  if FLAGS.input_dir and os.path.realpath(FLAGS.input_dir) == os.path.realpath(FLAGS.out_dir):
    raise ValueError("--out_dir must not be --input_dir: inputs are never written")
  extension = FLAGS.format
  if FLAGS.requests:
    base = FLAGS.input_dir or os.path.dirname(os.path.abspath(FLAGS.requests))
    rows = requests_lib.read_rows(FLAGS.requests, base)
    jobs = batch.list_jobs(rows, base, FLAGS.out_dir, extension)
  else:
    jobs = batch.folder_jobs(FLAGS.input_dir, FLAGS.text, FLAGS.out_dir, extension)
  os.makedirs(FLAGS.out_dir, exist_ok=True)
  predictor = network.open_predictor(FLAGS.workdir, FLAGS.model, FLAGS.step)
  _note(predictor)
  report = FLAGS.report or os.path.join(FLAGS.out_dir, batch.REPORT_FILE)
  return batch.run(predictor, jobs, _options(), report)


def main(argv):
  if len(argv) > 1:
    sys.exit(f"error: unexpected arguments: {' '.join(argv[1:])}")
  cli.quiet_library_logs()
  with cli.one_line_errors(OSError, log=False):
    if FLAGS.input_dir or FLAGS.requests:
      sys.exit(run_folder())
    run_single()
