"""Word vocabulary: built from the training expressions, saved as one word per line.

Ids: 0 is `<pad>` (ignored by the text encoder), 1 is `<unk>`, then words by decreasing
frequency (ties alphabetical), so the same sentences always give the same file.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence
import os

import numpy as np

PAD = "<pad>"
UNK = "<unk>"
PAD_ID = 0
UNK_ID = 1


def split_words(text: str) -> list[str]:
  """Lower-cases and splits on whitespace, as the original pre-processing did."""
  return text.lower().split()


class Vocabulary:
  """Maps words to ids and back."""

  def __init__(self, words: Sequence[str]):
    words = list(words)
    if words[:2] != [PAD, UNK]:
      raise ValueError(f"a vocabulary starts with {PAD!r} and {UNK!r}, got {words[:2]}")
    if len(set(words)) != len(words):
      dupes = sorted(w for w, n in collections.Counter(words).items() if n > 1)
      raise ValueError(f"duplicate words in vocabulary: {dupes[:10]}")
    self.words = words
    self._ids = {w: i for i, w in enumerate(words)}

  @classmethod
  def build(cls, sentences: Iterable[str], min_count: int = 1) -> Vocabulary:
    counts = collections.Counter(w for s in sentences for w in split_words(s))
    kept = sorted((w for w, n in counts.items() if n >= min_count and w not in (PAD, UNK)),
                  key=lambda w: (-counts[w], w))
    return cls([PAD, UNK] + kept)

  @classmethod
  def load(cls, path: str | os.PathLike) -> Vocabulary:
    try:
      with open(path, encoding="utf-8") as f:
        words = [line.rstrip("\n") for line in f]
    except OSError as e:
      raise FileNotFoundError(f"cannot read vocabulary file {path}: {e.strerror}") from None
    try:
      return cls(words)
    except ValueError as e:
      raise ValueError(f"{path}: {e}") from None

  def save(self, path: str | os.PathLike) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
      f.writelines(w + "\n" for w in self.words)
    os.replace(tmp, path)

  def __len__(self) -> int:
    return len(self.words)

  def __eq__(self, other) -> bool:
    return isinstance(other, Vocabulary) and self.words == other.words

  def encode(self, text: str, length: int) -> np.ndarray:
    """Token ids of `text`, truncated or zero-padded to `length` (int32)."""
    ids = [self._ids.get(w, UNK_ID) for w in split_words(text)][:length]
    out = np.zeros((length,), np.int32)
    out[:len(ids)] = ids
    return out

  def decode(self, ids: Iterable[int]) -> str:
    return " ".join(self.words[i] for i in ids if i != PAD_ID)


def load_word_vectors(path: str | os.PathLike, vocab: Vocabulary, dim: int,
                      seed: int = 0, missing: str = "random") -> tuple[np.ndarray, int]:
  """Embedding matrix [len(vocab), dim] from a GloVe-format text file.

  Words missing from the file get small random vectors (`missing="random"`, to be learned) or
  zeros (`missing="zero"`: the original's fixed vectors, where such a word is masked out);
  `<pad>` gets zeros. Returns the matrix and how many vocabulary words were found in the file.
  """
  if missing not in ("random", "zero"):
    raise ValueError(f"missing must be 'random' or 'zero', got {missing!r}")
  rng = np.random.default_rng(seed)
  table = rng.normal(0.0, 0.1, (len(vocab), dim)).astype(np.float32)
  if missing == "zero":
    table[:] = 0.0
  table[PAD_ID] = 0.0
  found = set()
  from brppnet_jax.runtime import paths  # pylint: disable=g-import-not-at-top  (etils)
  with paths.open_text(path, errors="replace") as f:  # Local or gs://...
    for lineno, line in enumerate(f, 1):
      word, _, rest = line.rstrip().partition(" ")
      idx = vocab._ids.get(word)  # pylint: disable=protected-access
      if idx is None or idx == PAD_ID or idx in found:  # The first vector of a word counts.
        continue
      values = rest.split()
      if len(values) != dim:
        raise ValueError(f"{path}:{lineno}: word {word!r} has {len(values)} values, expected {dim}")
      table[idx] = np.asarray(values, np.float32)
      found.add(idx)
  return table, len(found)
