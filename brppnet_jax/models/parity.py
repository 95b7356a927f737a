"""The original's outputs (`../shared/parity`) against this network: the comparison the
parity tests assert and `python -m brppnet_jax.measure.parity` reports.

The fixture's own script writes the original's seeded weight file; `load_brppnet_h5` reads
it; the text encoder and the network run in float32 on the fixture's inputs; each output is
compared as max|difference| / max|reference|.
"""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np

from brppnet_jax.models import create_model
from brppnet_jax.models import original_weights
from brppnet_jax.models import text_encoder

VOCAB = 50


def relative(a, b) -> float:
  """max|a - b| / max|b|."""
  return float(np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b)))


def write_original_files(parity_dir: str, out: str, inputs: bool = True) -> tuple[str, str]:
  """The original's seeded weight file (and the fixture's inputs) written into `out` by the
  fixture's own script; returns their paths."""
  h5, inputs_npz = os.path.join(out, "weights.h5"), os.path.join(out, "inputs.npz")
  command = [sys.executable, os.path.join(parity_dir, "make_original_h5.py"),
             "--manifest", os.path.join(parity_dir, "original_manifest.json"), "--seed", "1234",
             "--bn_stats", os.path.join(parity_dir, "bn_stats_seed1234.npz"), "--out", h5]
  if inputs:
    command += ["--inputs_seed", "0", "--lengths", "7,15", "--vocab", str(VOCAB),
                "--inputs_out", inputs_npz]
  subprocess.run(command, check=True, capture_output=True)
  return h5, inputs_npz


def full_config(**model):
  """The paper's network with the fixture's vocabulary size."""
  from configs import default  # pylint: disable=g-import-not-at-top
  config = default.get_config()
  config.model.vocab_size = VOCAB
  config.model.update(model)
  return config


def zero_variables(config):
  """Zero-filled variables of the network (shapes only: no initialiser runs)."""
  model = create_model(config)
  shapes = jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros((1, 416, 416, 3)), jnp.ones((1, 15), jnp.int32)))
  return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)


def compare(parity_dir: str, work: str) -> dict:
  """The relative differences, measured in `work` (a scratch folder for the 358 MB file)."""
  h5, inputs_npz = write_original_files(parity_dir, work)
  inputs = np.load(inputs_npz)
  expected = np.load(os.path.join(parity_dir, "expected_seed1234.npz"))
  model = create_model(full_config())
  variables, _ = original_weights.load_brppnet_h5(h5, zero_variables(full_config()))
  variables["params"]["text_encoder"]["embedding"]["embedding"] = inputs["table"]
  encoder = text_encoder.TextEncoder(VOCAB, 300, 1024, 0.1, "original")
  q, h = jax.jit(lambda p, t: encoder.apply({"params": p}, t, False))(
      variables["params"]["text_encoder"], inputs["tokens"])
  logits = jax.jit(lambda v, i, t: model.apply(v, i, t, train=False))(
      variables, inputs["images"], inputs["tokens"])
  return {"gru_seq": relative(h, expected["gru_seq"]), "q": relative(q, expected["q"]),
          "logits": relative(logits, expected["logits"])}
