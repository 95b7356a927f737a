"""Shared by the app, folder and metadata tests: sample photos, metadata checks, the app server
and the browser."""

import contextlib
import importlib.util
import json
import os
import pathlib
import shutil
import struct
import subprocess
import sys
import time
import urllib.request
import zlib

import numpy as np
from PIL import Image
import pytest

from conftest import ONE_DEVICE
from conftest import REPO
from conftest import free_port

# Chromium as Debian ships it (.ci/run installs it); Playwright's own browser download cannot
# work offline. Nothing in the background may reach out (updates, sync, safe browsing).
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
GPS_LATITUDE = (51.0, 30.0, 0.0)
XMP_PACKET = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/'
              b'02/22-rdf-syntax-ns#"><rdf:Description xmlns:exif="http://ns.adobe.com/exif/1.0/"'
              b' exif:GPSLatitude="51,30.0N"/></rdf:RDF></x:xmpmeta>')
TAKEN_AT = "2026:11:30 12:34:56"


def people_photos(synthetic_dataset, count: int = 1) -> list[tuple[pathlib.Path, list[str]]]:
  """The first `count` test images with two or more people, and their sentences."""
  raw = synthetic_dataset / "raw"
  refs = json.loads((raw / "anns" / "synthetic" / "test.json").read_text())
  people = {}
  for ref in refs:
    people.setdefault(ref["img_name"], []).append(ref["sentences"][0]["sent"])
  chosen = [(n, s) for n, s in people.items() if len(s) >= 2][:count]
  return [(raw / "images" / "train2014" / name, sentences) for name, sentences in chosen]


def write_gps_jpeg(source, path) -> pathlib.Path:
  """`source`'s pixels stored sideways as a camera does (orientation 6: rotate 90 degrees
  clockwise to view), with a GPS position, a capture date, an XMP packet and a comment."""
  upright = np.asarray(Image.open(source).convert("RGB"))
  stored = np.rot90(upright, k=1)  # Orientation 6 turns this back to `upright`.
  exif = Image.Exif()
  exif[0x0112] = 6
  exif[0x010F] = "TestCam"
  exif.get_ifd(0x8769)[0x9003] = TAKEN_AT
  gps = exif.get_ifd(0x8825)
  gps[1], gps[2] = "N", GPS_LATITUDE
  Image.fromarray(np.ascontiguousarray(stored)).save(
      path, exif=exif.tobytes(), xmp=XMP_PACKET, comment=b"home address", quality=95)
  return pathlib.Path(path)


# Keys of Image.info that describe the file's structure, not the photo or its owner.
FORMAT_KEYS = {"jfif", "jfif_version", "jfif_unit", "jfif_density", "dpi", "background", "loop",
               "duration", "progressive", "progression", "adobe", "adobe_transform"}


def metadata(path_or_image) -> dict:
  """What a reader finds in an image file: other info keys (EXIF, XMP, IPTC, comments, text
  chunks), EXIF tags, and the GPS and Exif sub-IFDs."""
  image = path_or_image if isinstance(path_or_image, Image.Image) else Image.open(path_or_image)
  exif = image.getexif()
  return {"info": sorted(k for k in image.info if k not in FORMAT_KEYS),
          "exif": dict(exif), "gps": dict(exif.get_ifd(0x8825)),
          "exif_ifd": dict(exif.get_ifd(0x8769))}


def assert_no_metadata(path_or_image) -> None:
  found = metadata(path_or_image)
  assert found == {"info": [], "exif": {}, "gps": {}, "exif_ifd": {}}, found


def png_claiming(width: int, height: int) -> bytes:
  """A PNG whose header claims width x height but holds no pixels (a decompression bomb's
  header; Pillow's open reads the size without decoding)."""
  def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
  header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
  return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b""))
          + chunk(b"IEND", b""))


@contextlib.contextmanager
def app_server(workdir, temp_dir, *flags: str, timeout: float = 300):
  """Runs `python -m brppnet_jax.protect.app` on a free port; yields its URL."""
  port = free_port()
  log = open(pathlib.Path(temp_dir) / "server.log", "w+")
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **ONE_DEVICE}
  proc = subprocess.Popen([sys.executable, "-m", "brppnet_jax.protect.app", f"--workdir={workdir}",
                           f"--port={port}", f"--temp_dir={temp_dir}", *flags],
                          cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
  url = f"http://127.0.0.1:{port}/"
  try:
    deadline = time.monotonic() + timeout
    while True:
      if proc.poll() is not None:
        log.seek(0)
        raise AssertionError(f"the app exited ({proc.returncode}):\n{log.read()[-3000:]}")
      try:
        urllib.request.urlopen(url, timeout=2).close()
        break
      except OSError:
        if time.monotonic() > deadline:
          raise
        time.sleep(0.5)
    yield url
  finally:
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def require_browser() -> None:
  """Skips without Playwright or Debian's chromium; fails instead in CI (CI=true)."""
  missing = None
  if importlib.util.find_spec("playwright") is None:
    missing = "the playwright package is not installed"
  elif not os.path.exists(CHROMIUM):
    missing = f"{CHROMIUM} is missing (apt-get install chromium)"
  if missing:
    if os.environ.get("CI", "").lower() == "true":
      pytest.fail(f"{missing}; CI must run the browser tests")
    pytest.skip(missing)


def files_under(folder) -> list[str]:
  return sorted(str(p.relative_to(folder)) for p in pathlib.Path(folder).rglob("*") if p.is_file())


def copy(path, folder) -> pathlib.Path:
  return pathlib.Path(shutil.copy(path, folder))
