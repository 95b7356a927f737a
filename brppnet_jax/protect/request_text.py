"""A typed request to the network's tokens: the rule every predictor follows.

Imports numpy and the vocabulary only (no JAX), so the light predictor of an exported model
(`protect.lite`) and the full one (`protect.predictor`) read a request the same way.
"""

from __future__ import annotations

import warnings

import numpy as np

from brppnet_jax.data import vocab as vocab_lib

# Every request starts with these words (spec section 1); they name nobody.
REQUEST_PREFIX = ("protect", "privacy", "of")


class UnknownWordsWarning(UserWarning):
  """A request holds words the model never saw in training; they are read as `<unk>`."""


def _words_after_prefix(text: str) -> list[str]:
  words = vocab_lib.split_words(text)
  has_prefix = tuple(words[:len(REQUEST_PREFIX)]) == REQUEST_PREFIX
  return words[len(REQUEST_PREFIX):] if has_prefix else words


def with_prefix(text: str) -> str:
  """The request as the network reads it. RPCOCO puts "protect privacy of " before every
  expression (spec section 1), so the network only ever saw requests that start with it:
  "rightmost woman" is read as "protect privacy of rightmost woman"."""
  words = vocab_lib.split_words(text)
  if tuple(words[:len(REQUEST_PREFIX)]) == REQUEST_PREFIX:
    return text
  return " ".join(REQUEST_PREFIX) + " " + text.strip()


def unknown_words(vocab: vocab_lib.Vocabulary, text: str) -> list[str]:
  """Words of the request that the vocabulary lacks, the "protect privacy of" prefix aside
  (written or not: `with_prefix` adds it).

  ValueError when no such word is known: the model would read only `<unk>` and protect an
  arbitrary region.
  """
  words = _words_after_prefix(text)
  if not words:
    raise ValueError(f"the request {text!r} names nobody: nothing follows "
                     f"{' '.join(REQUEST_PREFIX)!r}")
  known = set(vocab.words[2:])  # Not <pad> or <unk>.
  unknown = [w for w in words if w not in known]
  if len(unknown) == len(words):
    raise ValueError(f"the request {text!r} has no word the model knows "
                     f"(unknown: {', '.join(unknown)})")
  return unknown


def encode(vocab: vocab_lib.Vocabulary, text: str, word_len: int) -> np.ndarray:
  """Token ids [word_len] of a request, read with the prefix (`with_prefix`).

  ValueError for an empty request or one without a known word besides the prefix; an
  UnknownWordsWarning names the unknown words of any other.
  """
  if not isinstance(text, str) or not text.strip():
    raise ValueError(f"the request text is empty: {text!r}")
  unknown = unknown_words(vocab, text)
  if unknown:
    warnings.warn(UnknownWordsWarning(
        f"request {text!r}: unknown words read as <unk>: {', '.join(unknown)}"), stacklevel=4)
  return vocab.encode(with_prefix(text), word_len)
