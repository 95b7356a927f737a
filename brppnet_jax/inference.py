"""Predicts the mask of the person a sentence refers to, from a trained workdir.

    predictor = Predictor.from_workdir("workdirs/synthetic")
    prob = predictor.predict_mask("photo.jpg", "protect privacy of man in red shirt")

Probabilities come back at the image's own size (the letterbox inverted as in spec section 6).
The predict function is compiled once per batch shape and reused.
"""

from __future__ import annotations

import os
from typing import Sequence

import jax
import ml_collections
import numpy as np
from PIL import Image

from brppnet_jax import checkpointing
from brppnet_jax import parallel
from brppnet_jax import steps
from brppnet_jax.data import letterbox
from brppnet_jax.data import vocab as vocab_lib

MIN_IMAGE_SIDE = 8


def load_rgb(image) -> np.ndarray:
  """An RGB uint8 [h, w, 3] array from a path or an array; clear errors for bad input."""
  if isinstance(image, (str, os.PathLike)):
    path = os.fspath(image)
    if not os.path.isfile(path):
      raise FileNotFoundError(f"image file not found: {path}")
    try:
      with Image.open(path) as im:
        array = np.asarray(im.convert("RGB"))
    except (OSError, Image.DecompressionBombError) as e:
      raise ValueError(f"{path} is not a readable image: {e}") from None
    name = path
  else:
    array, name = np.asarray(image), "image array"
    if array.ndim == 2:
      array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] != 3 or array.dtype != np.uint8:
      raise ValueError(f"{name} must be uint8 [h, w, 3] RGB, got {array.dtype} {array.shape}")
  if min(array.shape[:2]) < MIN_IMAGE_SIDE:
    raise ValueError(f"{name} is too small: {array.shape[1]}x{array.shape[0]} pixels "
                     f"(at least {MIN_IMAGE_SIDE} on each side)")
  return array


class Predictor:
  """A restored model with its vocabulary, ready to predict masks."""

  def __init__(self, config, vocab: vocab_lib.Vocabulary, state, step: int,
               expressions: Sequence[str] = ()):
    self.config, self.vocab, self.step = config, vocab, step
    self._expressions = list(expressions)
    self.mesh = parallel.make_mesh()
    _, _, _, predict_fn = steps.make_steps(config, steps_per_epoch=1)
    self.state = state
    self.p_predict = jax.jit(predict_fn, in_shardings=(
        jax.tree.map(lambda _: parallel.replicated(self.mesh), state),
        parallel.batch_sharding(self.mesh), parallel.batch_sharding(self.mesh)),
                             out_shardings=parallel.batch_sharding(self.mesh))

  @classmethod
  def from_workdir(cls, workdir: str, step: int | None = None) -> "Predictor":
    """Loads the best checkpoint (or `step`) with the config and vocabulary stored with it."""
    if not os.path.isdir(checkpointing.checkpoint_dir(workdir)):
      raise FileNotFoundError(f"no checkpoint in {checkpointing.checkpoint_dir(workdir)}")
    ckpts = checkpointing.Checkpoints(workdir, read_only=True)
    step = checkpointing.resolve_step(ckpts, step, workdir)
    config, words, expressions = ckpts.restore_metadata(step)
    mesh = parallel.make_mesh()
    model, tx, _, _ = steps.make_steps(config, steps_per_epoch=1)
    abstract = jax.eval_shape(
        lambda r: steps.create_train_state(model, config, tx, r), steps.prng_key(0))
    repl = parallel.replicated(mesh)
    abstract = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=repl), abstract)
    state = ckpts.restore_state(step, abstract)
    ckpts.close()
    return cls(config, vocab_lib.Vocabulary(words), state, step, expressions)

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

  def encode(self, text: str) -> np.ndarray:
    if not isinstance(text, str) or not text.strip():
      raise ValueError("the request text is empty")
    return self.vocab.encode(text, self.config.dataset.word_len)

  def predict_masks(self, images: Sequence, texts: Sequence[str]) -> list[np.ndarray]:
    """Probability masks [h, w] float32, one per (image, text) pair, at each image's size."""
    if len(images) != len(texts):
      raise ValueError(f"{len(images)} images but {len(texts)} texts")
    size = self.config.dataset.input_size
    rgbs = [load_rgb(im) for im in images]
    tokens = np.stack([self.encode(t) for t in texts])
    boxed = np.stack([letterbox.letterbox_image(rgb, size) for rgb in rgbs])
    n = len(rgbs)
    padded = -(-n // self.mesh.size) * self.mesh.size  # Every device gets equal rows.
    pad = lambda a: np.concatenate([a, np.repeat(a[-1:], padded - n, axis=0)])
    batch = parallel.global_batch({"image": pad(boxed), "tokens": pad(tokens)}, self.mesh)
    probs = np.asarray(jax.device_get(self.p_predict(self.state, batch["image"],
                                                     batch["tokens"])))[:n]
    out = []
    for rgb, prob in zip(rgbs, probs):
      h, w = rgb.shape[:2]
      geometry = letterbox.letterbox_geometry(w, h, size)
      out.append(letterbox.unletterbox(prob, geometry, (h, w), size))
    return out

  def predict_mask(self, image, text: str) -> np.ndarray:
    """The probability mask [h, w] of the person `text` refers to in `image`."""
    return self.predict_masks([image], [text])[0]
