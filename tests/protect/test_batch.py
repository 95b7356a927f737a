"""Folder and list runs of the protect CLI, and the request rules they share with the app."""

import hashlib
import json

import numpy as np
from PIL import Image
import pytest

from brppnet_jax.protect import requests as requests_lib

from conftest import ONE_DEVICE
from conftest import run_module
import protect_helpers as helpers


def digest(path) -> str:
  return hashlib.sha256(path.read_bytes()).hexdigest()


class FakePredictor:
  """Knows a few words, as Predictor.unknown_words reports them."""
  words = {"man", "in", "red", "shirt", "the", "of", "on", "left"}

  def unknown_words(self, text):
    words = requests_lib.content_words(text)
    unknown = [w for w in words if w not in self.words]
    if len(unknown) == len(words):
      raise ValueError(f"the request {text!r} has no word the model knows")
    return unknown


@pytest.mark.parametrize("text,expected", [
    ("protect privacy of man in red shirt zorbly", None),
    ("protect privacy of the", r"names nobody: its only known words are function words \(the\)"),
    ("protect privacy of the of on zorbly", r"only known words are function words"),
    ("protect privacy of zorbly", r"has no word the model knows"),
    ("   ", r"the request is empty"),
])
def test_requests_that_name_nobody_are_refused(text, expected):
  if expected is None:
    assert requests_lib.check_request(FakePredictor(), text) == ["zorbly"]
  else:
    with pytest.raises(ValueError, match=expected):
      requests_lib.check_request(FakePredictor(), text)


def test_list_files_csv_and_json_lines(tmp_path):
  csv_file = tmp_path / "rows.csv"
  csv_file.write_text('image,request\na.jpg,protect privacy of man\n\n"b, c.jpg","of the, man"\n')
  rows = requests_lib.read_rows(str(csv_file))
  assert [(r.image, r.request, r.where) for r in rows] == [
      (str(tmp_path / "a.jpg"), "protect privacy of man", "rows.csv line 2"),
      (str(tmp_path / "b, c.jpg"), "of the, man", "rows.csv line 4")]
  jsonl = tmp_path / "rows.jsonl"
  jsonl.write_text('{"image": "a.jpg", "request": "protect privacy of man"}\n{"image": 3}\n')
  with pytest.raises(ValueError, match=r"rows.jsonl line 2: want \{\"image\""):
    requests_lib.read_rows(str(jsonl))
  bad = tmp_path / "rows.csv"
  bad.write_text("a.jpg\n")
  with pytest.raises(ValueError, match=r"rows.csv line 1: want two fields"):
    requests_lib.read_rows(str(bad))


@pytest.fixture(scope="module")
def album(synthetic_dataset, tmp_path_factory):
  """Three photos of people (one a sideways GPS JPEG in a subfolder), a broken one, a note."""
  folder = tmp_path_factory.mktemp("album")
  photos = helpers.people_photos(synthetic_dataset, 3)
  helpers.copy(photos[0][0], folder / "a.png")
  helpers.copy(photos[1][0], folder / "b.png")
  (folder / "sub").mkdir()
  helpers.write_gps_jpeg(photos[2][0], folder / "sub" / "c.jpg")
  (folder / "broken.jpg").write_text("not a photo\n")
  (folder / "notes.txt").write_text("not an image extension: skipped\n")
  return folder, [sentences for _, sentences in photos]


def test_list_run_protects_good_rows_and_reports_bad_ones(trained_workdir, album, tmp_path):
  folder, sentences = album
  rows = tmp_path / "rows.jsonl"
  lines = [("a.png", sentences[0][0]), ("a.png", sentences[0][1]),  # Two people, one photo.
           ("b.png", sentences[1][0]), ("sub/c.jpg", sentences[2][0]),
           ("missing.jpg", sentences[0][0]), ("broken.jpg", sentences[0][0]),
           ("b.png", "protect privacy of zorbly glimp")]
  rows.write_text("".join(json.dumps({"image": i, "request": r}) + "\n" for i, r in lines))
  out = tmp_path / "out"
  out.mkdir()
  (out / "b.png").write_bytes(b"an earlier result")  # Kept: no --overwrite.
  before = {p: digest(p) for p in folder.rglob("*") if p.is_file()}
  proc = run_module("brppnet_jax.protect", f"--workdir={trained_workdir}", f"--requests={rows}",
                    f"--input_dir={folder}", f"--out_dir={out}", env=ONE_DEVICE,
                    check=False)
  assert proc.returncode == 1, proc.stderr
  failures = sorted(line for line in proc.stderr.splitlines() if line.startswith("failed: "))
  assert len(failures) == 3, proc.stderr
  assert "b.png (rows.jsonl line 3, rows.jsonl line 7): " in failures[0]
  assert "has no word the model knows" in failures[0]  # Checked before the existing output.
  assert "broken.jpg (rows.jsonl line 6): " in failures[1] and "not a readable image" in failures[1]
  assert "missing.jpg (rows.jsonl line 5): image file not found" in failures[2]
  assert "wrote 2 of 5 photos" in proc.stdout and "photos/s" in proc.stdout
  assert helpers.files_under(out) == ["a.png", "b.png", "protect_report.json", "sub/c.png"]
  assert (out / "b.png").read_bytes() == b"an earlier result"
  assert {p: digest(p) for p in folder.rglob("*") if p.is_file()} == before
  report = json.loads((out / "protect_report.json").read_text())
  assert (report["written"], report["failed"]) == (2, 3)
  a = next(p for p in report["photos"] if p["image"].endswith("a.png"))
  assert a["status"] == "written" and len(a["shares"]) == 2 and min(a["shares"]) > 0
  original = np.asarray(Image.open(folder / "a.png").convert("RGB"))
  protected = np.asarray(Image.open(out / "a.png"))
  assert protected.shape == original.shape and (protected != original).any()
  c_upright = np.asarray(Image.open(folder / "sub" / "c.jpg")).shape[:2][::-1]
  assert np.asarray(Image.open(out / "sub" / "c.png")).shape[:2] == c_upright
  helpers.assert_no_metadata(out / "sub" / "c.png")


def test_folder_run_names_outputs_and_keeps_dates_not_gps(trained_workdir, album, tmp_path):
  folder, sentences = album
  out = tmp_path / "out"
  proc = run_module("brppnet_jax.protect", f"--workdir={trained_workdir}",
                    f"--input_dir={folder}", f"--out_dir={out}", f"--text={sentences[0][0]}",
                    f"--text={sentences[0][1]}", "--format=jpg", "--keep_metadata",
                    "--allow_empty", env=ONE_DEVICE, check=False)
  assert proc.returncode == 1  # broken.jpg
  assert [l for l in proc.stderr.splitlines() if l.startswith("failed: ")] == [
      f"failed: {folder / 'broken.jpg'} (broken.jpg): {folder / 'broken.jpg'} is not a readable "
      "image: not a format Pillow knows"]
  assert helpers.files_under(out) == ["a.jpg", "b.jpg", "protect_report.json", "sub/c.jpg"]
  found = helpers.metadata(out / "sub" / "c.jpg")
  assert found["exif_ifd"][0x9003] == helpers.TAKEN_AT
  assert found["gps"] == {} and 0x0112 not in found["exif"] and "xmp" not in found["info"]
  helpers.assert_no_metadata(out / "a.jpg")  # Its input had none.


def test_folder_run_refuses_to_write_into_its_input(trained_workdir, album):
  folder, _ = album
  proc = run_module("brppnet_jax.protect", f"--workdir={trained_workdir}",
                    f"--input_dir={folder}", f"--out_dir={folder}", "--text=protect privacy of man",
                    env=ONE_DEVICE, check=False)
  assert proc.returncode == 1
  assert proc.stderr.strip() == "error: --out_dir must not be --input_dir: inputs are never written"


def test_an_exported_model_protects_a_list_without_jax(exported_tflite, album, tmp_path):
  """--model=FILE.tflite: a `jax` that cannot be imported stands first on the path."""
  folder, sentences = album
  blocker = tmp_path / "no_jax" / "jax"
  blocker.mkdir(parents=True)
  (blocker / "__init__.py").write_text("raise ImportError('jax must not be imported')\n")
  rows = tmp_path / "rows.csv"
  rows.write_text(f"image,request\na.png,{sentences[0][0]}\n")
  out = tmp_path / "out"
  proc = run_module("brppnet_jax.protect", f"--model={exported_tflite}", f"--requests={rows}",
                    f"--input_dir={folder}", f"--out_dir={out}",
                    env={"PYTHONPATH": str(blocker.parent)})
  assert "wrote 1 of 1 photos" in proc.stdout
  assert "trained on the synthetic twin" in proc.stdout
  protected = np.asarray(Image.open(out / "a.png"))
  assert (protected != np.asarray(Image.open(folder / "a.png").convert("RGB"))).any()


def test_a_request_that_protects_nothing_fails_and_writes_nothing(trained_workdir, album,
                                                                  tmp_path):
  """At threshold 1.0 no pixel is protected (a float32 sigmoid reaches 1.0 only past a logit
  of about 17, which the demo's network does not produce)."""
  folder, sentences = album
  out, mask = tmp_path / "protected.png", tmp_path / "mask.png"
  proc = run_module("brppnet_jax.protect", f"--workdir={trained_workdir}",
                    f"--image={folder / 'a.png'}", f"--text={sentences[0][0]}", f"--out={out}",
                    f"--save_mask={mask}", "--threshold=1.0", env=ONE_DEVICE, check=False)
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines() == [
      f"error: nothing was protected for {sentences[0][0]!r}: no pixel reached the threshold "
      "1.0; the person stays visible (rephrase the request, lower the threshold, or accept an "
      "unprotected result with --allow_empty)"]
  assert not out.exists() and not mask.exists()
