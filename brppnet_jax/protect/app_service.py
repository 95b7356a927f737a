"""What the web app does for one request, without Gradio: read, predict, hide, report.

Uploads are read once and deleted at once; the decoded photo stays in the browser session's
memory only (so the same photo can be protected again with other settings), and results go
back inside the response, never to a file. Messages name the user's file, never a server path.
"""

from __future__ import annotations

import dataclasses
import os
import threading

import numpy as np

from brppnet_jax.protect import network
from brppnet_jax.protect import people
from brppnet_jax.protect import photo as photo_lib
from brppnet_jax.protect import requests as requests_lib

METHODS = ("pixelate", "blur", "fill")
_OVERLAY_RGB = np.array([255, 0, 0], np.float32)


class UserError(ValueError):
  """Bad input: shown to the user as it is."""


@dataclasses.dataclass
class Answer:
  protected: np.ndarray | None  # None when a request protected nothing.
  overlay: np.ndarray | None  # The photo with the mask tinted red.
  report: str  # Markdown: one line per request.
  details: dict  # The same as data, for API clients.
  warning: str | None = None


def forget(path: str | None) -> None:
  """Deletes an uploaded file and its (Gradio-made, one-file) folder."""
  if not path:
    return
  try:
    os.remove(path)
    os.rmdir(os.path.dirname(path))
  except OSError:
    pass


class Service:
  """The loaded network and the locks that let concurrent requests share it."""

  def __init__(self, predictor, max_pixels: int = photo_lib.MAX_PIXELS,
               cache_dir: str | None = None):
    self.predictor = predictor
    self.max_pixels = max_pixels
    self.description = network.description(predictor)
    self._cache_dir = cache_dir  # The speech language model's files (the app's private dir).
    self._predict_lock = threading.Lock()
    self._speech_lock = threading.Lock()
    self._transcriber = None

  @property
  def can_transcribe(self) -> bool:
    """Spoken requests need the training expressions (a workdir has them, an export not)."""
    try:
      return bool(self.predictor.train_expressions())
    except ValueError:
      return False

  def read_photo(self, path: str) -> np.ndarray:
    """The upload's upright pixels; the file is deleted whatever happens."""
    name = repr(os.path.basename(path))
    try:
      return photo_lib.read_photo(path, self.max_pixels).rgb
    except (OSError, ValueError) as e:
      raise UserError(str(e).replace(path, name)) from None
    finally:
      forget(path)

  def protect(self, rgb: np.ndarray, text: str | None, method: str, threshold: float,
              margin: float | None) -> Answer:
    texts = requests_lib.split_lines(text)
    if not texts:
      raise UserError("Type a request first, e.g. \"protect privacy of man in red shirt\" "
                      "(one per line for several people).")
    if method not in METHODS:
      raise UserError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if not 0.0 < float(threshold) <= 1.0:
      raise UserError(f"the threshold {threshold} must be in (0, 1]")
    try:
      unknown = people.check_requests(self.predictor, texts)
    except ValueError as e:
      raise UserError(str(e)) from None
    with self._predict_lock:
      probs = people.predict(self.predictor, [rgb], [texts])[0]
    margin = None if margin is None else float(margin)
    if margin is not None and not 0.0 <= margin <= 1.0:
      raise UserError(f"the margin {margin} must be in [0, 1] (a share of the person's size)")
    result = people.hide(rgb, probs, texts, unknown, method=method, threshold=float(threshold),
                         margin=margin)
    details = {"trained_on": network.trained_on(self.predictor),
               "requests": [dataclasses.asdict(r) for r in result.requests],
               "protected_share": result.share}
    report = people.summary(result).replace("\n", "  \n")
    if result.empty():
      warning = ("Nothing was protected for " + ", ".join(repr(t) for t in result.empty()) +
                 f": no pixel reached the threshold {threshold}, so the person would stay "
                 "visible. No result is given; rephrase the request or lower the threshold.")
      details["warning"] = warning
      return Answer(None, None, f"**Warning:** {warning}  \n{report}", details, warning)
    return Answer(result.rgb, overlay(rgb, result.mask), report, details)

  def transcribe(self, path: str) -> str:
    """The spoken request in an uploaded or recorded WAV file; the file is deleted."""
    from brppnet_jax.protect import speech  # pylint: disable=g-import-not-at-top  (slow import)
    try:
      speech.load_wav(path)
      with self._speech_lock:
        if self._transcriber is None:
          self._transcriber = speech.Transcriber(self.predictor.train_expressions(),
                                                 cache_dir=self._cache_dir)
        transcript = self._transcriber(path)
    except (OSError, ValueError) as e:
      message = str(e).replace(path, repr(os.path.basename(path)))
      if message.startswith("no speech recognised"):
        message = "No speech was recognised in the recording; try again, closer and louder."
      raise UserError(message) from None
    finally:
      forget(path)
    return speech.restore_prefix(transcript)


def overlay(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """The photo with the protected pixels tinted red, to check what the network chose."""
  out = rgb.astype(np.float32)
  out[mask] = 0.45 * out[mask] + 0.55 * _OVERLAY_RGB
  return np.rint(out).astype(np.uint8)
