"""Predicts the mask of the person a sentence refers to, from a trained workdir.

    predictor = Predictor.from_workdir("workdirs/synthetic")
    prob = predictor.predict_mask("photo.jpg", "protect privacy of man in red shirt")
    probs = predictor.predict_masks(["a.jpg", "b.png"], ["protect privacy of ...", "..."])

Probabilities come back at each image's own size (the letterbox inverted as in spec section 6).
Pairs go through the network in batches whose row count is the device count times a power of
two, at most `max_batch_size`, so the predict function compiles once per such size and is
reused for any image size.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import ml_collections
import numpy as np

from brppnet_jax.data import letterbox
from brppnet_jax.data import vocab as vocab_lib
from brppnet_jax.protect import photo
from brppnet_jax.protect import request_text
from brppnet_jax.runtime import paths
from brppnet_jax.runtime import sharding as sharding_lib
from brppnet_jax.train import checkpoints
from brppnet_jax.train import step_functions
from brppnet_jax.train import train_state

# The request rule lives in request_text (no JAX there), shared with the light predictor.
REQUEST_PREFIX = request_text.REQUEST_PREFIX
UnknownWordsWarning = request_text.UnknownWordsWarning


class Predictor:
  """A restored model with its vocabulary, ready to predict masks."""

  def __init__(self, config, vocab: vocab_lib.Vocabulary, state, step: int,
               expressions: Sequence[str] = (), *, mesh=None,
               max_batch_size: int | None = None):
    self.config, self.vocab, self.step = config, vocab, step
    self._expressions = list(expressions)
    self.mesh = sharding_lib.make_mesh() if mesh is None else mesh
    rows = max_batch_size or config.eval_batch_size
    self.max_batch_size = -(-rows // self.mesh.size) * self.mesh.size  # Whole rows per device.
    _, _, _, predict_fn = step_functions.make_steps(config, steps_per_epoch=1)
    self.state = state
    self.p_predict = step_functions.jit_predict(
        predict_fn, self.mesh, jax.tree.map(lambda _: sharding_lib.replicated(self.mesh), state))

  @classmethod
  def from_workdir(cls, workdir: str, step: int | None = None, *,
                   max_batch_size: int | None = None) -> Predictor:
    """Loads the best checkpoint (or `step`) with the config and vocabulary stored with it."""
    directory = checkpoints.checkpoint_dir(workdir)  # Local or a URL (gs://...).
    if not paths.is_dir(directory):
      raise FileNotFoundError(f"no checkpoint in {directory}")
    ckpts = checkpoints.Checkpoints(workdir, read_only=True)
    try:
      step = checkpoints.resolve_step(ckpts, step, workdir)
      # Unreadable or damaged: checkpoints.CorruptCheckpointError, one line.
      config, words, expressions = ckpts.restore_metadata(step)
      mesh = sharding_lib.make_mesh()
      model, tx, _, _ = step_functions.make_steps(config, steps_per_epoch=1)
      abstract = jax.eval_shape(
          lambda r: train_state.create_train_state(model, config, tx, r), train_state.prng_key(0))
      repl = sharding_lib.replicated(mesh)
      abstract = jax.tree.map(
          lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=repl), abstract)
      state = ckpts.restore_state(step, abstract)
    finally:
      ckpts.close()
    return cls(config, vocab_lib.Vocabulary(words), state, step, expressions, mesh=mesh,
               max_batch_size=max_batch_size)

  def train_expressions(self) -> list[str]:
    """The sentences the model was trained on (the spoken-request language model's text)."""
    if not self._expressions:
      raise ValueError("this checkpoint stores no training expressions; voice requests need them")
    return self._expressions

  def eval_config(self, config) -> ml_collections.ConfigDict:
    """`config` with the network and input geometry this checkpoint was trained with."""
    merged = ml_collections.ConfigDict(config.to_dict())
    merged.model = ml_collections.ConfigDict(self.config.model.to_dict())
    merged.dataset.input_size = self.config.dataset.input_size
    merged.dataset.word_len = self.config.dataset.word_len
    return merged

  @property
  def trained_on(self) -> str:
    """The dataset the checkpoint was trained on: its TFDS builder config, e.g. "synthetic"."""
    return str(self.config.dataset.name).rsplit("/", 1)[-1]

  def unknown_words(self, text: str) -> list[str]:
    """Words after the "protect privacy of" prefix the vocabulary lacks; ValueError when
    no word after it is known (request_text.unknown_words)."""
    return request_text.unknown_words(self.vocab, text)

  def encode(self, text: str) -> np.ndarray:
    """Token ids [word_len]; ValueError or UnknownWordsWarning (request_text.encode)."""
    return request_text.encode(self.vocab, text, self.config.dataset.word_len)

  def batch_rows(self, n: int) -> int:
    """Rows of the compiled batch that carries n <= max_batch_size pairs."""
    rows = self.mesh.size
    while rows < n:
      rows *= 2
    return min(rows, self.max_batch_size)

  def predict_masks(self, images: Sequence, texts: Sequence[str]) -> list[np.ndarray]:
    """Probability masks [h, w] float32, one per (image, text) pair, at each image's size.

    Images are paths or uint8 RGB arrays, as `photo.load_rgb` takes them.
    """
    images, texts = list(images), list(texts)
    if len(images) != len(texts):
      raise ValueError(f"{len(images)} images but {len(texts)} texts")
    tokens = [self.encode(t) for t in texts]  # Bad text fails before any image is read.
    out = []
    for start in range(0, len(images), self.max_batch_size):
      end = start + self.max_batch_size
      out.extend(self._predict_batch(images[start:end], tokens[start:end]))
    return out

  def _predict_batch(self, images: list, tokens: list[np.ndarray]) -> list[np.ndarray]:
    size = self.config.dataset.input_size
    rgbs = [photo.load_rgb(im) for im in images]
    boxed, geometries = zip(*(letterbox.letterbox_uint8(rgb, size) for rgb in rgbs))
    n, rows = len(rgbs), self.batch_rows(len(rgbs))
    pad = lambda a: np.concatenate([a, np.repeat(a[-1:], rows - n, axis=0)])
    batch = sharding_lib.global_batch({"image": pad(np.stack(boxed)),  # uint8, scaled on device.
                                   "geometry": pad(np.asarray(geometries, np.int32)),
                                   "tokens": pad(np.stack(tokens))}, self.mesh)
    probs = sharding_lib.local_rows(self.p_predict(self.state, batch))[:n]
    return [letterbox.unletterbox(prob, geometry, rgb.shape[:2], size)
            for rgb, prob, geometry in zip(rgbs, probs, geometries)]

  def predict_mask(self, image, text: str) -> np.ndarray:
    """The probability mask [h, w] of the person `text` refers to in `image`."""
    return self.predict_masks([image], [text])[0]
