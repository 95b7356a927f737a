"""No output carries the input's metadata; orientation is applied to the pixels; bombs refused."""

import io

import numpy as np
from PIL import Image
import pytest

from brppnet_jax.protect import photo

from conftest import run_module
import protect_helpers as helpers


@pytest.fixture(scope="module")
def gps_photo(synthetic_dataset, tmp_path_factory):
  """A sideways JPEG with GPS, orientation 6, XMP and a comment; its upright source; a request."""
  (source, sentences), = helpers.people_photos(synthetic_dataset)
  path = helpers.write_gps_jpeg(source, tmp_path_factory.mktemp("gps") / "camera.jpg")
  return path, source, sentences[0]


def test_the_test_photo_does_carry_gps_orientation_and_xmp(gps_photo):
  """Else the tests below would pass on a photo with nothing to leak."""
  path, _, _ = gps_photo
  found = helpers.metadata(path)
  assert found["gps"][2] == helpers.GPS_LATITUDE and found["exif"][0x0112] == 6
  assert {"xmp", "comment", "exif"} <= set(found["info"])


@pytest.mark.parametrize("image_format", ["PNG", "JPEG", "WEBP"])
def test_encoded_outputs_are_upright_and_bare(gps_photo, image_format):
  path, source, _ = gps_photo
  read = photo.read_photo(path)
  upright = np.asarray(Image.open(source).convert("RGB"))
  assert read.rgb.shape == upright.shape  # Stored sideways, read upright.
  assert np.abs(read.rgb.astype(int) - upright).mean() < 3  # JPEG's loss only.
  helpers.assert_no_metadata(Image.open(io.BytesIO(photo.encode(read.rgb, image_format, read))))


def test_keep_metadata_copies_the_date_but_not_gps_or_orientation(gps_photo):
  path, _, _ = gps_photo
  read = photo.read_photo(path)
  found = helpers.metadata(Image.open(io.BytesIO(photo.encode(read.rgb, "JPEG", read, True))))
  assert found["exif_ifd"][0x9003] == helpers.TAKEN_AT and found["exif"][0x010F] == "TestCam"
  assert found["gps"] == {} and 0x8825 not in found["exif"] and 0x0112 not in found["exif"]
  assert "xmp" not in found["info"] and "comment" not in found["info"]


@pytest.mark.parametrize("width,height,expected", [
    (8000, 7000, r"too large: 8000x7000 pixels is over the limit of 50000000 pixels"),
    (40000, 40000, r"over the limit of 50000000 pixels"),  # Pillow itself refuses this one.
])
def test_huge_images_are_refused_before_decoding(tmp_path, width, height, expected):
  path = tmp_path / "bomb.png"
  path.write_bytes(helpers.png_claiming(width, height))
  with pytest.raises(ValueError, match=expected):
    photo.read_photo(path)


def test_cli_output_of_a_gps_photo_is_upright_and_bare(trained_workdir, gps_photo, tmp_path):
  path, source, sentence = gps_photo
  out = tmp_path / "protected.jpg"
  run_module("brppnet_jax.protect", f"--workdir={trained_workdir}", f"--image={path}",
             f"--text={sentence}", f"--out={out}", env=helpers.ONE_DEVICE)
  assert np.asarray(Image.open(out)).shape == np.asarray(Image.open(source)).shape
  helpers.assert_no_metadata(out)
