"""Requests: which words of one a network can use, and the (image, request) rows of a list file.

A request that the network cannot read is refused before anything is predicted: empty, no
known word after "protect privacy of", or only function words ("the", "of", "a"...), which
name nobody, so the network would protect an arbitrary region.

A list file (`--requests=FILE`) is CSV with the columns `image,request` (a header row with
those names is optional) or JSON Lines of {"image": ..., "request": ...} objects. Relative
image paths are read from --input_dir if given, else from the list file's folder.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os

from brppnet_jax.data import vocab
from brppnet_jax.protect import request_text

# Words that name nobody. A request of known words from this set only is refused.
FUNCTION_WORDS = frozenset("""
a an the this that these those of in on at to from with by for and or but as into onto over
under near next behind between is are was were be been being has have had his her its their
my your our me him them it he she they who whom which what there here
""".split())


@dataclasses.dataclass(frozen=True)
class Row:
  """One (image, request) pair of a list file, with where it came from for messages."""
  image: str
  request: str
  where: str  # "requests.csv line 3"


def check_request(predictor, text: str) -> list[str]:
  """The words of `text` the network does not know; ValueError if it cannot be used.

  `predictor` is a Predictor or LitePredictor (its `unknown_words` raises for a request with
  no known word after the prefix).
  """
  if not isinstance(text, str) or not text.strip():
    raise ValueError("the request is empty")
  unknown = predictor.unknown_words(text)
  words = content_words(text)
  known = [w for w in words if w not in unknown]
  if known and all(w in FUNCTION_WORDS for w in known):
    raise ValueError(f"the request {text!r} names nobody: its only known words are function "
                     f"words ({', '.join(known)})")
  return unknown


def content_words(text: str) -> list[str]:
  """The request's words after the "protect privacy of" prefix, as the vocabulary splits them."""
  words = vocab.split_words(text)
  prefix = request_text.REQUEST_PREFIX
  return words[len(prefix):] if tuple(words[:len(prefix)]) == prefix else words


def split_lines(text: str | None) -> list[str]:
  """One request per non-blank line (the app's text box), stripped."""
  return [line.strip() for line in (text or "").splitlines() if line.strip()]


def read_rows(path: str, base_dir: str | None = None) -> list[Row]:
  """The rows of a CSV or JSON Lines list file (by extension: .csv, .jsonl/.json).

  Relative image paths are taken from `base_dir` (default: the list file's folder).

  ValueError naming the file and line for anything malformed; rows are not checked against
  the file system here (a missing image is one bad row, reported with the others).
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f"requests file not found: {path}")
  extension = os.path.splitext(path)[1].lower()
  try:
    with open(path, encoding="utf-8") as f:
      text = f.read()
  except UnicodeDecodeError as e:
    raise ValueError(f"{path} is not UTF-8 text: {e}") from None
  if extension == ".csv":
    rows = _csv_rows(path, text)
  elif extension in (".jsonl", ".json", ".ndjson"):
    rows = _jsonl_rows(path, text)
  else:
    raise ValueError(f"{path}: requests file must be .csv or .jsonl, not {extension or '(none)'!r}")
  if not rows:
    raise ValueError(f"{path} has no (image, request) rows")
  folder = base_dir or os.path.dirname(os.path.abspath(path))
  return [dataclasses.replace(r, image=os.path.join(folder, r.image)) for r in rows]


def _csv_rows(path: str, text: str) -> list[Row]:
  rows = []
  for number, fields in enumerate(csv.reader(io.StringIO(text)), start=1):
    if not fields or all(not f.strip() for f in fields):
      continue
    if number == 1 and [f.strip().lower() for f in fields] == ["image", "request"]:
      continue
    where = f"{os.path.basename(path)} line {number}"
    if len(fields) != 2 or not fields[0].strip():
      raise ValueError(f"{where}: want two fields, image,request; got {fields!r}")
    rows.append(Row(fields[0].strip(), fields[1].strip(), where))
  return rows


def _jsonl_rows(path: str, text: str) -> list[Row]:
  rows = []
  for number, line in enumerate(text.splitlines(), start=1):
    if not line.strip():
      continue
    where = f"{os.path.basename(path)} line {number}"
    try:
      record = json.loads(line)
    except json.JSONDecodeError as e:
      raise ValueError(f"{where} is not JSON: {e.msg}") from None
    if (not isinstance(record, dict) or not isinstance(record.get("image"), str)
        or not isinstance(record.get("request"), str) or not record["image"].strip()):
      raise ValueError(f"{where}: want {{\"image\": \"...\", \"request\": \"...\"}}, "
                       f"got {line.strip()[:80]}")
    rows.append(Row(record["image"].strip(), record["request"].strip(), where))
  return rows
