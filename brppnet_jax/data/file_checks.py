"""Damaged dataset files, found where they can be and named in one line, never read as data.

- vocab.txt, vocab_all_splits.txt, train_expressions.txt: the build records their SHA-256 in
  the dataset's metadata.json (`file_sha256`); loading one compares (datasets built before
  this have no digests and are not checked).
- ArrayRecord shards: opening a split reads every shard's footer and index (a truncated or
  tail-damaged shard fails there, at start); a damaged chunk inside is found by Riegeli's own
  chunk hash when it is read, and `CheckedSource` names the split's files instead of
  returning the record.
"""

from __future__ import annotations

import hashlib
import json

from brppnet_jax.runtime import paths

DIGESTS_KEY = "file_sha256"
METADATA_FILE = "metadata.json"  # TFDS's file of the builder's `info.metadata`.


class DamagedDatasetError(ValueError):
  """A dataset file that does not read back as the build wrote it."""


def sha256_of(path) -> str:
  return hashlib.sha256(paths.absolute(path).read_bytes()).hexdigest()


def digests(directory, names) -> dict[str, str]:
  """{name: SHA-256} of the files `names` that exist in `directory` (for metadata.json)."""
  return {n: sha256_of(paths.join(directory, n)) for n in names
          if paths.join(directory, n).is_file()}


def check_digest(path, rebuild_hint: str = "build the dataset again") -> None:
  """DamagedDatasetError when `path` differs from the digest metadata.json beside it keeps."""
  path = paths.absolute(path)
  metadata = path.parent / METADATA_FILE
  if not metadata.is_file():
    return
  try:
    expected = json.loads(metadata.read_text()).get(DIGESTS_KEY, {}).get(path.name)
  except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
    raise DamagedDatasetError(f"{metadata}: not valid JSON; {rebuild_hint}") from None
  if expected is not None and sha256_of(path) != expected:
    raise DamagedDatasetError(f"{path}: its content differs from the SHA-256 the dataset build "
                              f"recorded in {metadata}; {rebuild_hint}")


def shard_error(files, error: BaseException) -> DamagedDatasetError:
  """The one-line error for a Riegeli/ArrayRecord read failure, naming the damaged shard."""
  reason = " ".join(str(error).split())[:200]
  damaged = [f for f in files if _open_fails(f)] or list(files)
  names = ", ".join(str(f) for f in damaged)
  return DamagedDatasetError(f"{names}: damaged ArrayRecord shard ({reason}); build the "
                             "dataset again")


def check_shards(files) -> None:
  """Opens every shard (its footer and index): a truncated one fails here, before any work."""
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
  for path in files:
    try:
      array_record_module.ArrayRecordReader(str(path)).close()
    except RuntimeError as e:
      raise shard_error([path], e) from None


def _open_fails(path) -> bool:
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
  try:
    reader = array_record_module.ArrayRecordReader(str(path))
    reader.read_all()
    reader.close()
  except RuntimeError:
    return True
  return False


class CheckedSource:
  """A random-access source whose read errors name the shards instead of a traceback."""

  def __init__(self, source, files):
    self._source, self._files = source, list(files)

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index):
    try:
      return self._source[index]
    except RuntimeError as e:  # Riegeli's "Corrupted Riegeli/records file: ..."
      raise shard_error(self._files, e) from None

  def __getattr__(self, name):
    if name.startswith("_"):  # Not forwarded: pickling looks these up before __init__ ran.
      raise AttributeError(name)
    return getattr(self._source, name)
