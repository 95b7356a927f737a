"""The word-vector table of a vocabulary, from the file config.dataset.word_vectors names."""

from __future__ import annotations

from absl import logging
import ml_collections
import numpy as np

from brppnet_jax.data import vocab as vocab_lib
from brppnet_jax.runtime import paths


def load_embeddings(config: ml_collections.ConfigDict,
                    vocab: vocab_lib.Vocabulary) -> np.ndarray | None:
  """Word-vector table [len(vocab), embed_dim] from config.dataset.word_vectors, or None.

  With config.model.fixed_word_vectors the file is required and words it lacks get zeros.
  """
  path = config.dataset.word_vectors
  fixed = config.model.fixed_word_vectors
  if not path:
    if fixed:
      raise ValueError("config.model.fixed_word_vectors=True needs config.dataset.word_vectors "
                       "(the original used GloVe 840B: glove.840B.300d.txt), or set "
                       "config.model.fixed_word_vectors=False to learn them")
    return None
  if not paths.is_file(path):
    raise FileNotFoundError(f"config.dataset.word_vectors: no file {path}")
  table, found = vocab_lib.load_word_vectors(path, vocab, config.model.embed_dim,
                                             missing="zero" if fixed else "random")
  logging.info("Word vectors from %s cover %d of %d vocabulary words.", path, found, len(vocab))
  return table
