"""Reads a user's photo upright as RGB uint8, and writes protected images without its metadata.

Light on imports (numpy, Pillow and etils.epath only), so the protect CLI can check its input
before it imports JAX and loads a checkpoint.

Reading applies the EXIF orientation to the pixels, so what is predicted and written is upright
without an orientation tag. Writing starts from bare pixels: no EXIF (GPS included), XMP, IPTC,
comment or text chunk of the input reaches an output. Only the colour profile may travel, and,
when asked for (`--keep_metadata`), the input's EXIF without its GPS block.
"""

from __future__ import annotations

import dataclasses
import io
import os
import tempfile
import warnings

import numpy as np
from PIL import Image
from PIL import ImageOps

MIN_IMAGE_SIDE = 8  # Pixels; below this nothing recognisable is left to protect.
# Above a 48-megapixel phone camera; larger files are refused before their pixels are decoded
# (a decompression bomb is a small file that claims a huge size).
MAX_PIXELS = 50_000_000
_GPS_IFD = 0x8825
_EXIF_IFD = 0x8769
_ORIENTATION = 0x0112


@dataclasses.dataclass
class Photo:
  """An upright photo: pixels, and what of its metadata an output may carry."""
  rgb: np.ndarray  # uint8 [h, w, 3].
  icc_profile: bytes | None = None
  exif_without_gps: bytes | None = None  # Orientation reset too: the pixels are upright.


def load_rgb(image, max_pixels: int = MAX_PIXELS) -> np.ndarray:
  """An RGB uint8 [h, w, 3] array from a path or an array ([h, w] grey or [h, w, 3] uint8).

  Files are turned upright by their EXIF orientation, as image viewers show them.
  """
  if isinstance(image, (str, os.PathLike)):
    return read_photo(image, max_pixels).rgb
  array = np.asarray(image)
  if array.ndim == 2:
    array = np.repeat(array[..., None], 3, axis=-1)
  if array.ndim != 3 or array.shape[-1] != 3 or array.dtype != np.uint8:
    raise ValueError(f"image array must be uint8 [h, w, 3] RGB, got {array.dtype} {array.shape}")
  _check_size("image array", array.shape[1], array.shape[0], max_pixels)
  return array


def read_photo(path, max_pixels: int = MAX_PIXELS) -> Photo:
  """The upright pixels of an image file with its colour profile and GPS-free EXIF.

  FileNotFoundError if missing; ValueError (one line naming the file) if it is not a readable
  image, too small, or over `max_pixels` (checked from the header, before decoding).
  """
  name = os.fspath(path)
  from brppnet_jax.runtime import paths  # pylint: disable=g-import-not-at-top  (etils)
  if not paths.is_file(name):  # Local, or a URL such as gs://bucket/photo.jpg.
    raise FileNotFoundError(f"image file not found: {name}")
  try:
    with paths.absolute(name).open("rb") as f:
      with warnings.catch_warnings():
        # Pillow warns from 89 MP and raises from 179 MP; the limit here is max_pixels.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        im = Image.open(f)
      with im:
        _check_size(name, im.width, im.height, max_pixels)
        upright = ImageOps.exif_transpose(im)
        return Photo(np.asarray(upright.convert("RGB")), im.info.get("icc_profile"),
                     _exif_without_gps(upright))
  except Image.UnidentifiedImageError:
    raise ValueError(f"{name} is not a readable image: not a format Pillow knows") from None
  except Image.DecompressionBombError:
    raise ValueError(f"{name} is over the limit of {max_pixels} pixels "
                     "(its header claims a size Pillow refuses to decode)") from None
  except (OSError, ValueError, SyntaxError) as e:
    if str(e).startswith(name):  # Our own size messages.
      raise
    detail = " ".join(str(e).split())
    raise ValueError(f"{name} is not a readable image: {detail}") from None


def _check_size(name: str, width: int, height: int, max_pixels: int) -> None:
  if min(width, height) < MIN_IMAGE_SIDE:
    raise ValueError(f"{name} is too small: {width}x{height} pixels "
                     f"(at least {MIN_IMAGE_SIDE} on each side)")
  if width * height > max_pixels:
    raise ValueError(f"{name} is too large: {width}x{height} pixels is over the limit of "
                     f"{max_pixels} pixels")


def _exif_without_gps(im: Image.Image) -> bytes | None:
  """The EXIF block without GPS and orientation, for --keep_metadata; None if unreadable."""
  try:
    exif = im.getexif()
    if not exif:
      return None
    if _EXIF_IFD in exif:
      exif.get_ifd(_EXIF_IFD)  # Loaded sub-IFDs are written back; unloaded ones would be lost.
    exif.pop(_GPS_IFD, None)
    exif.pop(_ORIENTATION, None)
    return exif.tobytes()
  except Exception:  # pylint: disable=broad-except  (damaged EXIF: keep none rather than fail)
    return None


def encode(rgb: np.ndarray, image_format: str = "PNG", photo: Photo | None = None,
           keep_metadata: bool = False) -> bytes:
  """`rgb` as an image file's bytes, with no metadata but `photo`'s colour profile (and its
  GPS-free EXIF if `keep_metadata`)."""
  options = {}
  if photo is not None and photo.icc_profile:
    options["icc_profile"] = photo.icc_profile
  if keep_metadata and photo is not None and photo.exif_without_gps:
    options["exif"] = photo.exif_without_gps
  if image_format == "JPEG":
    options["quality"] = 95
  buffer = io.BytesIO()
  Image.fromarray(np.asarray(rgb, np.uint8)).save(buffer, format=image_format, **options)
  return buffer.getvalue()


def output_format(path) -> str:
  """Pillow's format name for an output path's extension; ValueError if it cannot be written."""
  extension = os.path.splitext(os.fspath(path))[1].lower()
  image_format = Image.registered_extensions().get(extension)
  if image_format not in Image.SAVE:
    raise ValueError(f"{path}: cannot write images of type {extension or '(none)'!r}; "
                     "use .png or .jpg")
  return image_format


def write_image(path, rgb: np.ndarray, photo: Photo | None = None,
                keep_metadata: bool = False) -> None:
  """Writes `rgb` to `path` (format from its extension) via a temporary file, so a failed
  write leaves nothing half written."""
  data = encode(rgb, output_format(path), photo, keep_metadata)
  folder = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=".protect-", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
