"""Puts pretrained weights into a fresh train state: GloVe word vectors, Darknet backbone."""

from __future__ import annotations

from absl import logging
import jax
import numpy as np

from brppnet_jax.models import darknet_weights


def load_into_state(state, config, embeddings: np.ndarray | None = None):
  """The state with the embedding table and/or the COCO-pretrained backbone replaced.

  `embeddings` is a [vocab, embed_dim] table (from `input_pipeline.load_embeddings`);
  `config.model.backbone_weights` names a Darknet `yolov3.weights` file.
  """
  params, batch_stats = state.params, state.batch_stats
  if embeddings is not None:
    table = params["text_encoder"]["embedding"]["embedding"]
    if table.shape != embeddings.shape:
      raise ValueError(f"word vectors have shape {embeddings.shape}, the model's embedding "
                       f"{table.shape} (config.model.embed_dim / vocabulary size)")
    params = {**params, "text_encoder": {
        **params["text_encoder"], "embedding": {"embedding": np.asarray(embeddings, table.dtype)}}}
  if config.model.backbone_weights:
    host_params, host_stats = jax.device_get((params, batch_stats))
    params, batch_stats = darknet_weights.load_darknet_weights(
        config.model.backbone_weights, host_params, host_stats)
    logging.info("Backbone weights loaded from %s", config.model.backbone_weights)
  return state.replace(params=params, batch_stats=batch_stats)
