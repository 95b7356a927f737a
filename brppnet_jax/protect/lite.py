"""Predicts masks with an exported model file, without the training stack.

    predictor = LitePredictor.from_file("synthetic.tflite")
    rgb = np.asarray(PIL.Image.open("photo.jpg").convert("RGB"))
    prob = predictor.predict_mask(rgb, "protect privacy of man in red shirt")  # [h, w]

A .tflite file runs with ai-edge-litert, and this module needs numpy, OpenCV and Pillow
besides: no JAX, Flax or TensorFlow is imported. A .stablehlo file runs with jax alone
(`jax.export`; no Flax, no model code of this package), and gives `Predictor`'s
probabilities bit for bit on the same device and batch size. The public surface is
`protect.predictor.Predictor`'s: the same letterbox, vocabulary and request rule (this
package's own code), probabilities at each image's own size.
"""

from __future__ import annotations

from collections.abc import Sequence
import io
import os
import zipfile

import numpy as np

from brppnet_jax.data import letterbox
from brppnet_jax.data import vocab as vocab_lib
from brppnet_jax.protect import model_file
from brppnet_jax.protect import photo
from brppnet_jax.protect import request_text

LITERT_PIN = "ai-edge-litert==2.3.0"
STABLEHLO_BATCH = 32  # Rows per call of a .stablehlo model (each size compiles once).


def _cpu_count() -> int:
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # Not Linux.
    return os.cpu_count() or 1


class _TFLiteRunner:
  """One interpreter, batch 1, its inputs checked against the sidecar."""

  batch = 1

  def __init__(self, data: bytes, info: model_file.ModelInfo, path: str,
               num_threads: int | None):
    try:
      from ai_edge_litert import interpreter  # pylint: disable=g-import-not-at-top
    except ImportError:
      raise ImportError(f"running {path} needs ai-edge-litert: pip install {LITERT_PIN}"
                        ) from None
    try:
      self._interpreter = interpreter.Interpreter(
          model_content=data, num_threads=num_threads or _cpu_count())
      self._interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as e:
      raise model_file.ModelFileError(f"{path} is not a runnable TFLite model: "
                                      f"{' '.join(str(e).split())}") from None
    details = {d["name"]: d for d in self._interpreter.get_input_details()}
    expected = {"image": (1, info.input_size, info.input_size, 3), "geometry": (1, 4),
                "tokens": (1, info.word_len)}
    for name, dtype in model_file.INPUTS:
      d = details.get(name)
      if d is None or tuple(d["shape"]) != expected[name] or np.dtype(d["dtype"]) != dtype:
        raise model_file.ModelFileError(
            f"{path}: input {name!r} is not the {dtype} {expected[name]} its sidecar says")
    self._inputs = [details[name]["index"] for name, _ in model_file.INPUTS]
    self._output = self._interpreter.get_output_details()[0]["index"]

  def __call__(self, *arrays: np.ndarray) -> np.ndarray:
    out = []
    for row in range(len(arrays[0])):
      for index, array in zip(self._inputs, arrays):
        self._interpreter.set_tensor(index, array[row:row + 1])
      self._interpreter.invoke()
      out.append(self._interpreter.get_tensor(self._output)[0].copy())
    return np.stack(out)


class _StableHLORunner:
  """A deserialised jax.export.Exported and its weights; imports jax, not Flax or the
  package's models."""

  batch = STABLEHLO_BATCH

  def __init__(self, data: bytes, info: model_file.ModelInfo, path: str):
    del info
    import jax  # pylint: disable=g-import-not-at-top  (only for this format)
    if not zipfile.is_zipfile(io.BytesIO(data)):  # Before 2026-12-02 the weights were inside.
      raise model_file.ModelFileError(
          f"{path} is not an .npz archive of a StableHLO program and its weights; export it "
          "again with python -m brppnet_jax.protect.export")
    try:
      with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        program = archive[model_file.STABLEHLO_PROGRAM].tobytes()
        count = len(archive.files) - 1
        weights = [archive[model_file.stablehlo_weight(i)] for i in range(count)]
      self._exported = jax.export.deserialize(bytearray(program))
    except Exception as e:  # pylint: disable=broad-except  (zip and flatbuffer errors vary)
      raise model_file.ModelFileError(f"{path} is not an exported StableHLO model: "
                                      f"{' '.join(str(e).split())}") from None
    expected = len(self._exported.in_avals) - len(model_file.INPUTS)
    if count != expected:
      raise model_file.ModelFileError(f"{path} holds {count} weights; its program takes "
                                      f"{expected}")
    self._weights = jax.device_put(weights)  # Once: every call reuses them.
    # jit checks the arguments (292 weights in the demo network) in C++: 2.5 ms a call less.
    self._call = jax.jit(self._exported.call)

  def __call__(self, *arrays: np.ndarray) -> np.ndarray:
    n = len(arrays[0])
    rows = 1 << (n - 1).bit_length()  # A power of two, as Predictor pads: the same programs.
    padded = [np.concatenate([a, np.repeat(a[-1:], rows - n, axis=0)]) for a in arrays]
    return np.asarray(self._call(self._weights, *padded))[:n]


class LitePredictor:
  """An exported model with its vocabulary, ready to predict masks."""

  def __init__(self, info: model_file.ModelInfo, runner):
    self.info, self._runner = info, runner
    self.vocab = vocab_lib.Vocabulary(info.words)
    self.step, self.trained_on = info.step, info.trained_on
    self.threshold = info.threshold
    self.max_batch_size = runner.batch

  @classmethod
  def from_file(cls, path: str | os.PathLike, *, num_threads: int | None = None
                ) -> LitePredictor:
    """Loads `path` (.tflite or .stablehlo) after checking it against its sidecar.

    FileNotFoundError for a missing file, model_file.ModelFileError (a ValueError, one line)
    for a file that is not one of ours or was damaged.
    """
    path = os.fspath(path)
    info, data = model_file.read(path)
    if info.format == "tflite":
      return cls(info, _TFLiteRunner(data, info, path, num_threads))
    return cls(info, _StableHLORunner(data, info, path))

  def train_expressions(self) -> list[str]:
    raise ValueError("an exported model carries no training expressions; voice requests "
                     "need the workdir (--workdir)")

  def unknown_words(self, text: str) -> list[str]:
    """Words after the request prefix the vocabulary lacks (ValueError: no known word)."""
    return request_text.unknown_words(self.vocab, text)

  def encode(self, text: str) -> np.ndarray:
    """Token ids [word_len]; ValueError or UnknownWordsWarning as `Predictor.encode`."""
    return request_text.encode(self.vocab, text, self.info.word_len)

  def predict_letterboxed(self, images: np.ndarray, geometry: np.ndarray,
                          tokens: np.ndarray) -> np.ndarray:
    """The network alone: uint8 [N, S, S, 3], int32 [N, 4], int32 [N, T] ->
    probabilities float32 [N, S / stride, S / stride] over the letterbox canvas."""
    arrays = (np.asarray(images, np.uint8), np.asarray(geometry, np.int32),
              np.asarray(tokens, np.int32))
    out = [self._runner(*(a[start:start + self.max_batch_size] for a in arrays))
           for start in range(0, len(arrays[0]), self.max_batch_size)]
    return np.concatenate(out).astype(np.float32, copy=False)

  def predict_masks(self, images: Sequence, texts: Sequence[str]) -> list[np.ndarray]:
    """Probability masks [h, w] float32, one per (image, text) pair, at each image's size.

    Images are uint8 RGB arrays (or paths, as `photo.load_rgb` takes them).
    """
    images, texts = list(images), list(texts)
    if len(images) != len(texts):
      raise ValueError(f"{len(images)} images but {len(texts)} texts")
    tokens = [self.encode(t) for t in texts]  # Bad text fails before any image is read.
    size = self.info.input_size
    rgbs = [photo.load_rgb(im) for im in images]
    out = []
    for start in range(0, len(rgbs), self.max_batch_size):
      chunk = rgbs[start:start + self.max_batch_size]
      boxed, geometries = zip(*(letterbox.letterbox_uint8(rgb, size) for rgb in chunk))
      probs = self.predict_letterboxed(np.stack(boxed), np.asarray(geometries),
                                       np.stack(tokens[start:start + len(chunk)]))
      out.extend(letterbox.unletterbox(prob, geometry, rgb.shape[:2], size)
                 for rgb, prob, geometry in zip(chunk, probs, geometries))
    return out

  def predict_mask(self, image, text: str) -> np.ndarray:
    """The probability mask [h, w] of the person `text` refers to in `image`."""
    return self.predict_masks([image], [text])[0]
