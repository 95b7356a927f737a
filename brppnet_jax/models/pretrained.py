"""Puts pretrained weights into a fresh train state: word vectors and the COCO-trained YOLOv3."""

from __future__ import annotations

from absl import logging
import jax
import numpy as np

from brppnet_jax.models import original_weights

BACKBONE_INITS = {"byname": "all", "darknet": "darknet"}
NO_BACKBONE = ("config.model.freeze_backbone=True but no config.model.backbone_weights: pass "
               "the original's COCO-trained YOLOv3 (yolov3_480000.h5 from MCN, trained without "
               "the RefCOCO val/test images; or Darknet yolov3.weights), or set "
               "config.model.allow_random_backbone=True to train on a random frozen backbone")


def check_backbone_weights(config) -> None:
  """A frozen backbone that would stay random is a mistake unless asked for."""
  m = config.model
  if m.freeze_backbone and not m.backbone_weights and not m.allow_random_backbone:
    raise ValueError(NO_BACKBONE)


def load_backbone(path: str, variables, backbone_init: str = "byname"):
  """`variables` with YOLOv3 weights from a keras-yolo3 `.h5` or a Darknet `.weights` file."""
  if backbone_init not in BACKBONE_INITS:
    raise ValueError(f"config.model.backbone_init must be one of {sorted(BACKBONE_INITS)}, "
                     f"got {backbone_init!r}")
  load = (original_weights.load_yolo3_h5 if str(path).endswith((".h5", ".hdf5"))
          else original_weights.load_darknet_weights)
  variables, filled = load(path, variables, BACKBONE_INITS[backbone_init])
  logging.info("YOLOv3 weights from %s filled %d layers: %s", path, len(filled),
               ", ".join(filled))
  return variables


def load_into_state(state, config, embeddings: np.ndarray | None = None):
  """The state with the word-vector table and/or the COCO-pretrained YOLOv3 weights put in.

  `embeddings` is a [vocab, embed_dim] table (from `input_pipeline.load_embeddings`);
  `config.model.backbone_weights` names a keras-yolo3 `.h5` or Darknet `.weights` file.
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
    variables = jax.device_get({"params": params, "batch_stats": batch_stats})
    variables = load_backbone(config.model.backbone_weights, variables,
                              config.model.backbone_init)
    params, batch_stats = variables["params"], variables["batch_stats"]
  return state.replace(params=params, batch_stats=batch_stats)
