"""The sidecar of an exported model: what a runtime needs beside the network itself.

`model.tflite` (or `model.stablehlo`) is the network; `model.tflite.json` beside it says
what goes in and what comes out: vocabulary, input size, word length, the request rule
(prefix, text padding mode), threshold, mask stride, the checkpoint it came from, and the
model file's size and SHA-256, so a damaged or swapped file is refused before it runs.

Imports nothing but the standard library, so any runtime can read it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

KIND = "brppnet_jax exported predictor"
VERSION = 1
SIDECAR_SUFFIX = ".json"
FORMATS = {"tflite": ".tflite", "stablehlo": ".stablehlo"}  # Format -> file extension.
QUANTIZATIONS = ("none", "float16", "dynamic_int8")
# The protect CLI's default: a pixel at or above this probability is hidden.
DEFAULT_THRESHOLD = 0.5
# Input names and dtypes in call order; the shapes are in ModelInfo (batch first).
INPUTS = (("image", "uint8"), ("geometry", "int32"), ("tokens", "int32"))
# A .stablehlo file is an .npz archive: the serialised jax.export.Exported of
# fn(weights, image, geometry, tokens) under this key, and weights[i] under stablehlo_weight(i).
STABLEHLO_PROGRAM = "exported"


def stablehlo_weight(index: int) -> str:
  return f"weight_{index:04d}"


class ModelFileError(ValueError):
  """An exported model file that is not one of ours, or was damaged."""


@dataclasses.dataclass(frozen=True)
class ModelInfo:
  """The sidecar's contents.

  The network maps `image` uint8 [N, input_size, input_size, 3] (letterboxed, canvas 128),
  `geometry` int32 [N, 4] (nw, nh, dx, dy of the picture on the canvas) and `tokens` int32
  [N, word_len] to probabilities float32 [N, input_size / mask_stride, same]. N is 1 in a
  .tflite file and any number in a .stablehlo one, whose exported function takes the
  weights first (STABLEHLO_PROGRAM).
  """
  format: str
  quantize: str
  input_size: int
  word_len: int
  mask_stride: int
  words: tuple[str, ...]  # The vocabulary, id order (0 `<pad>`, 1 `<unk>`).
  request_prefix: tuple[str, ...]
  text_padding: str  # "original" or "masked" (models/text_encoder.py).
  threshold: float
  segment_thresh: float  # What the evaluation's IoU used (prob > segment_thresh).
  step: int
  trained_on: str
  workdir: str
  size_bytes: int
  sha256: str
  batch: int | None  # 1 for TFLite; None: any (symbolic in StableHLO).

  @property
  def mask_size(self) -> int:
    return self.input_size // self.mask_stride

  def to_json(self) -> str:
    fields = dataclasses.asdict(self)
    return json.dumps({"kind": KIND, "version": VERSION, **fields,
                       "inputs": [name for name, _ in INPUTS]}, indent=1) + "\n"


def sidecar_path(model_path: str | os.PathLike) -> str:
  return os.fspath(model_path) + SIDECAR_SUFFIX


def file_digest(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def _sidecar_fields(path: str) -> dict:
  """The sidecar's JSON object, checked to be ours and complete."""
  try:
    with open(path, encoding="utf-8") as f:
      record = json.load(f)
  except FileNotFoundError:
    raise ModelFileError(f"{path[:-len(SIDECAR_SUFFIX)]} is not an exported brppnet_jax model: "
                         f"its sidecar {path} is missing") from None
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise ModelFileError(f"sidecar {path} is unreadable or damaged: "
                         f"{' '.join(str(e).split())}") from None
  if not isinstance(record, dict) or record.get("kind") != KIND:
    raise ModelFileError(f"{path} is not the sidecar of an exported brppnet_jax model")
  if record.get("version") != VERSION:
    raise ModelFileError(f"{path}: sidecar version {record.get('version')!r}, this code reads "
                         f"version {VERSION}")
  names = [f.name for f in dataclasses.fields(ModelInfo)]
  missing = [n for n in names if n not in record]
  if missing:
    raise ModelFileError(f"{path}: sidecar lacks {', '.join(missing)}")
  return {n: record[n] for n in names}


def read(model_path: str | os.PathLike, expected_format: str | None = None,
         ) -> tuple[ModelInfo, bytes]:
  """The sidecar of `model_path` and the model's bytes, checked against each other.

  ModelFileError (one line) for a file without our sidecar, of another format, of another
  size or checksum than exported (damaged or replaced).
  """
  model_path = os.fspath(model_path)
  if not os.path.isfile(model_path):
    raise FileNotFoundError(f"model file not found: {model_path}")
  fields = _sidecar_fields(sidecar_path(model_path))
  fields["words"] = tuple(fields["words"])
  fields["request_prefix"] = tuple(fields["request_prefix"])
  info = ModelInfo(**fields)
  if info.format not in FORMATS or (expected_format and info.format != expected_format):
    raise ModelFileError(f"{model_path}: the sidecar says format {info.format!r}"
                         + (f", expected {expected_format!r}" if expected_format else ""))
  with open(model_path, "rb") as f:
    data = f.read()
  if len(data) != info.size_bytes:
    raise ModelFileError(f"{model_path} is damaged or was replaced: {len(data)} bytes, "
                         f"{info.size_bytes} exported")
  if file_digest(data) != info.sha256:
    raise ModelFileError(f"{model_path} is damaged or was replaced: its SHA-256 differs from "
                         "the exported file's")
  return info, data
