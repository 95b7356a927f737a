"""The protect CLI end to end: typed and spoken requests, and one-line errors for bad input."""

import hashlib
import json
import re
import shutil

import numpy as np
from PIL import Image
import pytest

from brppnet_jax.protect import hiding

from conftest import ONE_DEVICE
from conftest import run_module
import espeak_voice


@pytest.fixture(scope="module")
def request_image(synthetic_dataset, tmp_path_factory):
  """A copy of the first test image with two or more people, and a sentence about one of them."""
  raw = synthetic_dataset / "raw"
  refs = json.loads((raw / "anns" / "synthetic" / "test.json").read_text())
  people = {}
  for ref in refs:
    people.setdefault(ref["img_name"], []).append(ref)
  name, image_refs = next((n, r) for n, r in people.items() if len(r) >= 2)
  path = tmp_path_factory.mktemp("cli") / name
  shutil.copy(raw / "images" / "train2014" / name, path)
  return path, image_refs[0]["sentences"][0]["sent"]


def digest(path) -> str:
  return hashlib.sha256(path.read_bytes()).hexdigest()


def protect(workdir, image, *args):
  return run_module("brppnet_jax.protect", f"--workdir={workdir}", f"--image={image}", *args,
                    env=ONE_DEVICE)


def check_protected(image, out, mask_path=None):
  """`out` is `image` except where the mask is; returns the mask (bool [h, w])."""
  original = np.asarray(Image.open(image).convert("RGB"))
  protected = np.asarray(Image.open(out))
  assert protected.shape == original.shape and protected.dtype == np.uint8
  if mask_path is None:
    return None
  saved = np.asarray(Image.open(mask_path))
  assert saved.shape == original.shape[:2] and set(np.unique(saved)) <= {0, 255}
  mask = saved == 255
  assert mask.any(), "the model protected nothing"
  region = hiding.dilate_mask(mask, hiding.DEFAULT_MARGIN)  # The CLI's default margin.
  np.testing.assert_array_equal(protected[~region], original[~region])
  assert (protected[mask] != original[mask]).any()
  return mask


def test_typed_request_hides_only_the_predicted_pixels(trained_workdir, request_image, tmp_path):
  image, sentence = request_image
  before = digest(image)
  out, mask = tmp_path / "protected.png", tmp_path / "mask.png"
  proc = protect(trained_workdir, image, f"--text={sentence}", f"--out={out}",
                 f"--save_mask={mask}")
  assert f"for {sentence!r}: wrote {out} and {mask}" in proc.stdout
  check_protected(image, out, mask)
  assert digest(image) == before


def test_spoken_request_is_transcribed_and_protected(trained_workdir, request_image, tmp_path):
  """The request comes back word for word: espeak-ng + pocketsphinx with the language model of
  the workdir's training expressions gave this sentence ("protect privacy of guy in the
  center" for the fixture's data) exactly; over the first 41 test expressions of that data
  they made 16 word errors in 302 words (measured 2026-11-27, espeak-ng 1.51).
  """
  image, sentence = request_image
  wav = tmp_path / "request.wav"
  espeak_voice.speak(sentence, wav)
  out = tmp_path / "protected.jpg"
  proc = protect(trained_workdir, image, f"--audio={wav}", f"--out={out}", "--method=blur")
  heard = re.search(r"heard: '(.*)' -> request: '(.*)'", proc.stdout)
  assert heard, proc.stdout
  assert heard.group(2).split() == sentence.split(), (sentence, heard.groups())
  assert f"for {sentence!r}: wrote {out}" in proc.stdout
  check_protected(image, out)


def test_unknown_words_are_named_and_the_request_still_protected(trained_workdir, request_image,
                                                                tmp_path):
  """Typed without the "protect privacy of" prefix, as a person would: read with it."""
  image, sentence = request_image
  bare = sentence[len("protect privacy of "):]
  out, text = tmp_path / "protected.png", f"{bare} zorbly"
  proc = protect(trained_workdir, image, f"--text={text}", f"--out={out}")
  assert proc.stderr.strip().splitlines() == [
      f"warning: request {text!r}: unknown words read as <unk>: zorbly"]
  assert (f"for {text!r} (read as {'protect privacy of ' + text!r}): wrote {out}"
          in proc.stdout)
  check_protected(image, out)


def test_a_request_without_a_known_word_fails_and_writes_nothing(trained_workdir, request_image,
                                                                 tmp_path):
  image, _ = request_image
  out, mask = tmp_path / "protected.png", tmp_path / "mask.png"
  proc = run_module("brppnet_jax.protect", f"--workdir={trained_workdir}", f"--image={image}",
                    "--text=protect privacy of zorbly glimp", f"--out={out}",
                    f"--save_mask={mask}", env=ONE_DEVICE, check=False)
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines() == [
      "error: the request 'protect privacy of zorbly glimp' has no word the model knows "
      "(unknown: zorbly, glimp)"]
  assert not out.exists() and not mask.exists()


def write_text(path):
  path.write_text("not what it claims to be\n")
  return path


def write_tiny_image(path):
  Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path)
  return path


# case: (flags that make it, given tmp_path and the valid photo; what the error line says).
ERROR_CASES = {
    "text file named .jpg": (lambda tmp, photo: [f"--image={write_text(tmp / 'notes.jpg')}"],
                             r"notes\.jpg is not a readable image"),
    "4x4 image": (lambda tmp, photo: [f"--image={write_tiny_image(tmp / 'tiny.png')}"],
                  r"tiny\.png is too small: 4x4 pixels"),
    "blank text": (lambda tmp, photo: ["--text= "], r"request text \(--text\) is empty"),
    "workdir without checkpoint": (lambda tmp, photo: [],
                                   r"no checkpoint in .*workdir/checkpoints"),
    "text file named .wav": (lambda tmp, photo: [f"--audio={write_text(tmp / 'request.wav')}"],
                             r"unsupported audio: .*request\.wav is not a PCM WAV file"),
    "out is the input": (lambda tmp, photo: [f"--out={photo}"],
                         r"--out=.*photo\.png would overwrite the input image"),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_bad_input_fails_with_one_line_and_touches_nothing(case, tmp_path):
  """Each fails before the model loads: a valid photo, a workdir without checkpoints."""
  photo, workdir, out = tmp_path / "photo.png", tmp_path / "workdir", tmp_path / "out.png"
  Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 60, 3), np.uint8)).save(photo)
  workdir.mkdir()
  make_flags, expected = ERROR_CASES[case]
  args = [f"--workdir={workdir}", f"--image={photo}", f"--out={out}"]
  args += make_flags(tmp_path, photo)  # Later flags win.
  if not any(a.startswith("--audio") for a in args):
    args.insert(0, "--text=protect privacy of man")
  before = {p: digest(p) for p in tmp_path.rglob("*") if p.is_file()}
  proc = run_module("brppnet_jax.protect", *args, env=ONE_DEVICE, check=False)
  assert proc.returncode != 0
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
  assert re.search(expected, lines[0]), lines[0]
  assert "Traceback" not in proc.stderr + proc.stdout
  assert {p: digest(p) for p in tmp_path.rglob("*") if p.is_file()} == before
  assert not out.exists()
