"""The one way this project reads and writes files: local paths and cloud URLs alike.

Everything goes through etils `epath`, which Orbax and TFDS use too, so `gs://bucket/dir`
(TensorFlow's gfile, or fsspec/gcsfs with EPATH_USE_TF=false) and `/local/dir` behave the
same. Local paths are made absolute (Orbax requires it); URLs are left untouched, never
passed through `os.path`, which would turn `gs://b/x` into a local `gs:/b/x` folder.
"""

from __future__ import annotations

import contextlib
import io
import os
import re

from etils import epath

PathLike = str | os.PathLike

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def is_url(path: PathLike) -> bool:
  """True for `scheme://...` (gs://, s3://, ...), False for local paths."""
  return bool(_URL.match(os.fspath(path)))


def absolute(path: PathLike) -> epath.Path:
  """`path` as an epath.Path: URLs as given, local paths made absolute."""
  text = os.fspath(path)
  return epath.Path(text if is_url(text) else os.path.abspath(os.path.expanduser(text)))


def join(path: PathLike, *parts: str) -> epath.Path:
  return absolute(path).joinpath(*parts)


def makedirs(path: PathLike) -> epath.Path:
  directory = absolute(path)
  directory.mkdir(parents=True, exist_ok=True)
  return directory


def is_file(path: PathLike) -> bool:
  return absolute(path).is_file()


def is_dir(path: PathLike) -> bool:
  return absolute(path).is_dir()


def read_text(path: PathLike) -> str:
  return absolute(path).read_text(encoding="utf-8")


def read_lines(path: PathLike) -> list[str]:
  """The lines of a UTF-8 text file, without their line ends (as iterating a text file)."""
  text = read_text(path).replace("\r\n", "\n")
  lines = text.split("\n")
  return lines[:-1] if text.endswith("\n") or not text else lines


def append_text(path: PathLike, text: str) -> None:
  """Appends `text` to a file, creating it. Object stores cannot append: there the whole
  (small) file is read and written again, which only one writer (process 0) may do."""
  target = absolute(path)
  if not is_url(target):
    local = os.fspath(target)
    size = os.path.getsize(local) if os.path.exists(local) else 0
    try:
      with open(local, "a", encoding="utf-8") as f:
        f.write(text)
    except OSError:  # A full disk: all or nothing, no half line for the next append to join.
      with contextlib.suppress(OSError):
        os.truncate(local, size)
      raise
    return
  before = target.read_text(encoding="utf-8") if target.exists() else ""
  target.write_text(before + text, encoding="utf-8")


def write_text_atomically(path: PathLike, text: str) -> None:
  """Replaces a file's content: readers see the old or the new file, never a part. (Object
  stores replace an object whole anyway.)"""
  target = absolute(path)
  if is_url(target):
    target.write_text(text, encoding="utf-8")
    return
  partial = f"{os.fspath(target)}.partial"
  try:
    with open(partial, "w", encoding="utf-8") as f:
      f.write(text)
    os.replace(partial, os.fspath(target))
  finally:
    with contextlib.suppress(FileNotFoundError):
      os.remove(partial)


def open_text(path: PathLike, errors: str = "strict") -> io.TextIOBase:
  """A UTF-8 text stream of a local or remote file (epath's own `open` has no `errors`)."""
  target = absolute(path)
  if not is_url(target):
    return open(os.fspath(target), encoding="utf-8", errors=errors)
  return io.TextIOWrapper(target.open("rb"), encoding="utf-8", errors=errors)


def resolve_config_file(path: str) -> str:
  """`path` if it exists; else the installed configs' file of that name, so that
  `--config=configs/rpcocom.py` (or `rpcocom.py`) works from any directory."""
  if os.path.exists(path) or os.path.isabs(path):
    return path
  import configs  # pylint: disable=g-import-not-at-top  (installed with the package)
  configs_dir = os.path.dirname(os.path.abspath(configs.__file__))
  for candidate in (os.path.join(os.path.dirname(configs_dir), path),
                    os.path.join(configs_dir, path)):
    if os.path.isfile(candidate):
      return candidate
  return path  # config_flags reports it.
