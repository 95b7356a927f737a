"""What makes a stored checkpoint trustworthy, and plain words when it is not.

A checkpoint stores, beside its items, a SHA-256 of everything a resumed run depends on
(`digests`): every state array and the content of the config, vocabulary, training
expressions and each process's input position. TensorStore and JSON read damaged bytes
without complaint more often than not (a flipped digit is still a number), so a restore
compares what it read with what was saved. Files that must be JSON are parsed first, so a
damaged one is named by its path rather than by the library that tripped over it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re

import jax
from jax.experimental import multihost_utils
import numpy as np

from brppnet_jax.runtime import paths

# Keys of the digests item that are not state arrays (those are `jax.tree_util.keystr`
# paths, which start with "[" or ".").
ITEM_PREFIX = "item:"
JSON_ITEMS = ("config", "vocab", "expressions")
# Where a damaged step is put: beside the steps, under a name Orbax never takes for a step.
DAMAGED_SUFFIX = ".damaged"


class CorruptCheckpointError(ValueError):
  """A checkpoint that cannot be read back as it was saved; `file` is relative to the
  checkpoint directory (e.g. "20/config/metadata")."""

  def __init__(self, step: int, directory: str, file: str, reason: str):
    super().__init__(f"checkpoint step {step} in {directory} is damaged: {file}: {reason}")
    self.step, self.directory, self.file, self.reason = step, directory, file, reason


def _host_copy(leaf) -> np.ndarray:
  """The value of a (replicated) state leaf, read from this process's own devices."""
  if isinstance(leaf, jax.Array):
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
      leaf = jax.random.key_data(leaf)
    return np.asarray(leaf.addressable_data(0))
  return np.asarray(leaf)


def state_checksums(state) -> dict[str, str]:
  """{leaf path: SHA-256 of its dtype, shape and bytes} for every array of `state`."""
  sums = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
    value = np.ascontiguousarray(_host_copy(leaf))
    digest = hashlib.sha256(f"{value.dtype.str}{value.shape}".encode())
    digest.update(value.tobytes())
    sums[jax.tree_util.keystr(path)] = digest.hexdigest()
  return sums


def content_digest(value) -> str:
  """SHA-256 of a JSON value (bytes or str holding JSON are parsed first)."""
  if isinstance(value, (bytes, str)):
    value = json.loads(value)
  text = json.dumps(value, sort_keys=True, separators=(",", ":"))
  return hashlib.sha256(text.encode()).hexdigest()


def data_file(process_index: int, process_count: int) -> str:
  return f"data/process_{process_index}-of-{process_count}.json"  # Grain's file name.


def data_digests(data_iterator) -> dict[str, str]:
  """{item key: digest} of every process's input position (gathered from all processes)."""
  local = content_digest(data_iterator.get_state())
  count = jax.process_count()
  if count == 1:
    return {ITEM_PREFIX + data_file(0, 1): local}
  gathered = multihost_utils.process_allgather(np.frombuffer(bytes.fromhex(local), np.uint8))
  return {ITEM_PREFIX + data_file(i, count): bytes(np.asarray(row)).hex()
          for i, row in enumerate(np.asarray(gathered))}


def item_digests(config_json: dict, vocab_words, expressions) -> dict[str, str]:
  values = {"config": config_json, "vocab": list(vocab_words), "expressions": list(expressions)}
  return {ITEM_PREFIX + name: content_digest(values[name]) for name in JSON_ITEMS}


def state_mismatch(expected: dict, actual: dict) -> list[str]:
  """Leaf paths whose restored value differs from its saved digest."""
  expected = {k: v for k, v in expected.items() if not k.startswith(ITEM_PREFIX)}
  return sorted(k for k in expected.keys() | actual.keys() if expected.get(k) != actual.get(k))


def _json_files(step_dir) -> list:
  """The files of a step that must parse as JSON (Orbax's and Grain's as well as ours)."""
  names = ["_CHECKPOINT_METADATA", "metrics/metrics", "checksums/metadata", "state/_METADATA",
           "state/_sharding", *(f"{item}/metadata" for item in JSON_ITEMS)]
  found = [step_dir / name for name in names]
  for folder in ("data", "state/array_metadatas"):
    if (step_dir / folder).is_dir():
      found.extend(sorted((step_dir / folder).iterdir()))
  return [f for f in found if f.is_file() and not f.name.startswith("commit_success")]


def check_json_files(step: int, directory: str) -> None:
  """CorruptCheckpointError naming the first file of `step` that is not valid JSON."""
  step_dir = paths.join(directory, str(step))
  for path in _json_files(step_dir):
    relative = os.fspath(path)[len(os.fspath(paths.absolute(directory))) + 1:]
    try:
      json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
      raise CorruptCheckpointError(step, directory, relative,
                                   f"not UTF-8 text (byte {e.start})") from None
    except json.JSONDecodeError as e:
      raise CorruptCheckpointError(step, directory, relative,
                                   f"not valid JSON ({e.msg} at byte {e.pos})") from None


_OS_ERROR_CODE = re.compile(r"os_error_code='?(\d+)")
_ARRAY_KEY = re.compile(r'Error (?:reading|writing) "([^"/]+)[^"]*" in OCDBT')
_STATUS = re.compile(r"\b(DATA_LOSS|FAILED_PRECONDITION|RESOURCE_EXHAUSTED|PERMISSION_DENIED|"
                     r"UNAVAILABLE|DEADLINE_EXCEEDED|NOT_FOUND|INVALID_ARGUMENT|OUT_OF_RANGE|"
                     r"INTERNAL|UNKNOWN|ABORTED): ")
_CORRUPTION_MARKS = ("corrupt", "checksum", "decompress", "frame descriptor", "hash mismatch")
# TensorStore reports a storage it cannot reach (after its retries) under several statuses.
_UNREACHABLE_MARKS = ("could not connect", "couldn't connect", "could not resolve",
                      "couldn't resolve", "connection refused", "retry attempts failed")
# TensorStore appends the spec it was opened with, and sometimes source locations.
_LIBRARY_DETAIL = re.compile(r"\s*\[(tensorstore_spec|source locations)=.*$")
_STATUS_WORDS = {
    "RESOURCE_EXHAUSTED": "out of space or quota",
    "PERMISSION_DENIED": "permission denied",
    "UNAVAILABLE": "storage unreachable",
    "DEADLINE_EXCEEDED": "storage did not answer in time",
    "NOT_FOUND": "a file is missing",
}


def _chain(error: BaseException):
  seen = []
  while error is not None and error not in seen:
    seen.append(error)
    error = error.__cause__ or error.__context__
  return seen


def plain_reason(error: BaseException) -> str:
  """A short reason in words for an I/O error of Orbax, TensorStore or the OS."""
  chain = _chain(error)
  for e in chain:
    if isinstance(e, OSError) and e.errno:
      return os.strerror(e.errno).lower()
  texts = [_LIBRARY_DETAIL.sub("", " ".join(str(e).split()).split(
      " See full TensorStore details")[0]) for e in reversed(chain)]  # Innermost first.
  for text in texts:
    if code := _OS_ERROR_CODE.search(text):
      return os.strerror(int(code.group(1))).lower()
  for text in texts:
    array = _ARRAY_KEY.search(text)
    where = f"array {array.group(1)}: " if array else ""
    if any(mark in text.lower() for mark in _CORRUPTION_MARKS):
      return f"{where}data corruption detected"
    if any(mark in text.lower() for mark in _UNREACHABLE_MARKS):
      return f"{where}storage unreachable"
    if status := _STATUS.search(text):
      words = _STATUS_WORDS.get(status.group(1))
      return where + (words or text[status.end():].rsplit(": ", 1)[-1][:160])
  inner = chain[-1]
  return f"{type(inner).__name__}: {texts[0][:160]}" if texts[0] else type(inner).__name__


def move_aside(directory: str, step: int) -> str:
  """Renames DIR/<step> to DIR/<step>.damaged (or .damaged-2, ...); returns the new path."""
  source = paths.join(directory, str(step))
  target, n = paths.join(directory, f"{step}{DAMAGED_SUFFIX}"), 1
  while target.exists():
    n += 1
    target = paths.join(directory, f"{step}{DAMAGED_SUFFIX}-{n}")
  source.rename(target)
  return os.fspath(target)
