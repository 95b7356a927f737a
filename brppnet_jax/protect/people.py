"""Several people in one photo: one mask per request, each hidden.

Shared by the CLI (one photo), its folder and list mode, and the web app, so each says the
same about the same photo: the share of the photo each request protects, the words the
network does not know, and, never silently, a request that protected nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
import dataclasses
import warnings

import numpy as np

from brppnet_jax.protect import hiding
from brppnet_jax.protect import request_text
from brppnet_jax.protect import requests as requests_lib


class NothingProtectedError(ValueError):
  """A request's mask is empty: the person it names would stay visible."""


@dataclasses.dataclass
class RequestResult:
  text: str
  share: float  # Of the photo's pixels, those this request's mask covers.
  unknown_words: list[str]
  read_as: str = ""  # With the "protect privacy of" prefix, as the network reads it.

  def __post_init__(self):
    self.read_as = self.read_as or request_text.with_prefix(self.text)

  def name(self) -> str:
    """The request as typed, and as read when that differs."""
    return repr(self.text) + (f" (read as {self.read_as!r})" if self.read_as != self.text
                              else "")


@dataclasses.dataclass
class Protected:
  rgb: np.ndarray  # uint8 [h, w, 3], the photo with every request's person hidden.
  mask: np.ndarray  # bool [h, w], the union of the requests' masks (before any margin).
  requests: list[RequestResult]

  @property
  def share(self) -> float:
    return float(self.mask.mean())

  def empty(self) -> list[str]:
    """The requests that protected no pixel."""
    return [r.text for r in self.requests if r.share == 0.0]


def check_requests(predictor, texts: Sequence[str]) -> list[list[str]]:
  """Unknown words of each request; ValueError naming the first that cannot be used."""
  if not texts:
    raise ValueError("no request given")
  return [requests_lib.check_request(predictor, t) for t in texts]


def predict(predictor, images: Sequence[np.ndarray],
            texts: Sequence[Sequence[str]]) -> list[list[np.ndarray]]:
  """Probabilities [h, w] per request of each image; every pair in the predictor's batches."""
  pairs = [(i, t) for i, image_texts in enumerate(texts) for t in image_texts]
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Unknown words are reported by check_requests.
    probs = predictor.predict_masks([images[i] for i, _ in pairs], [t for _, t in pairs])
  out = [[] for _ in images]
  for (i, _), prob in zip(pairs, probs):
    out[i].append(prob)
  return out


def hide(rgb: np.ndarray, probs: Sequence[np.ndarray], texts: Sequence[str],
         unknown: Sequence[list[str]], *, method: str = hiding.DEFAULT_METHOD,
         threshold: float = hiding.MASK_THRESHOLD, margin: float | None = None) -> Protected:
  """Hides each request's mask (probability >= threshold) in turn.

  One person at a time, so each gets the strength and margin of its own size (a union's
  extent would span the gap between people).
  """
  masks = [np.asarray(p) >= threshold for p in probs]
  union = np.logical_or.reduce(masks) if masks else np.zeros(rgb.shape[:2], bool)
  results = [RequestResult(t, float(m.mean()), list(u)) for t, m, u in zip(texts, masks, unknown)]
  protected = rgb
  for mask in masks:
    protected = hiding.protect(protected, mask, method=method, margin=margin)
  return Protected(protected, union, results)


def protect_photo(predictor, rgb: np.ndarray, texts: Sequence[str], **hide_options) -> Protected:
  """One photo, one or more requests: checked, predicted, hidden."""
  unknown = check_requests(predictor, texts)
  probs = predict(predictor, [rgb], [list(texts)])[0]
  return hide(rgb, probs, texts, unknown, **hide_options)


def nothing_protected_message(empty: Sequence[str], threshold: float) -> str:
  quoted = ", ".join(repr(t) for t in empty)
  return (f"nothing was protected for {quoted}: no pixel reached the threshold {threshold}; "
          "the person stays visible (rephrase the request, lower the threshold, or accept "
          "an unprotected result with --allow_empty)")


def summary(result: Protected) -> str:
  """One line per request: its share of the photo and its unknown words."""
  lines = []
  for r in result.requests:
    line = f"protected {100.0 * r.share:.1f}% of the image for {r.name()}"
    if r.unknown_words:
      line += f" (unknown words read as <unk>: {', '.join(r.unknown_words)})"
    lines.append(line)
  return "\n".join(lines)
