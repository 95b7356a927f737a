"""Evaluating a trained network: a restored `Predictor` on a split (the notebook), or a
workdir's best checkpoint (`python -m brppnet_jax.main --mode=eval`)."""

from __future__ import annotations

import jax

from brppnet_jax.data import sources
from brppnet_jax.evaluation import scoring
from brppnet_jax.protect import predictor as predictor_lib

# One line per `--mode=eval` run, kept apart from training's eval_metrics.jsonl: its step may
# repeat one training evaluated, on other settings (eval_max_examples, split, thresholds).
EVAL_MODE_FILE = "checkpoint_evaluations.jsonl"


def evaluate_predictor(predictor, config, source, *, max_examples: int = 0,
                       num_examples: int | None = None):
  """Metrics of a restored `predictor_lib.Predictor` on `source`, and a few examples.

  The network and input geometry come from the predictor's checkpoint; evaluation settings
  (segment_thresh, compute_tdir, eval_batch_size) from `config`. max_examples > 0 scores only
  the first that many expressions; num_examples (default config.num_image_summaries) are kept.
  """
  eval_config = predictor.eval_config(config)
  eval_config.eval_max_examples = max(0, int(max_examples))
  devices = predictor.mesh.size
  eval_config.eval_batch_size = -(-config.eval_batch_size // devices) * devices
  return scoring.evaluate_split(predictor.p_predict, predictor.state, eval_config,
                                predictor.mesh, source, predictor.vocab, num_examples=num_examples)


def evaluate_checkpoint(config, workdir: str, step: int | None = None) -> dict:
  """Evaluates the best (or given) checkpoint of `workdir` on `config.dataset.eval_split`.

  The network comes from the configuration stored with the checkpoint; data and evaluation
  settings from `config`. The result is appended to WORKDIR/checkpoint_evaluations.jsonl
  (`EVAL_MODE_FILE`), never to training's eval_metrics.jsonl.
  """
  predictor = predictor_lib.Predictor.from_workdir(workdir, step=step)
  source = sources.open_source(config, config.dataset.eval_split)
  result, _ = evaluate_predictor(predictor, config, source,
                                 max_examples=config.eval_max_examples, num_examples=0)
  result = {"step": predictor.step, "split": config.dataset.eval_split, **result}
  if jax.process_index() == 0:
    scoring.append_metrics(workdir, result, EVAL_MODE_FILE)
  return result
