"""Resuming a training run safely: the same run, from the newest checkpoint that reads.

- The config stored with the checkpoint is compared with the current one. A change that alters
  what the run computes (batch size, data, model, loss, optimiser, seed, ...) stops with
  ConfigChangeError naming the keys, unless config.allow_config_change. Keys in
  `CHANGEABLE_ON_RESUME` (length, cadences, evaluation, input speed, locations) may change.
- A checkpoint that cannot be read (or reads back other numbers than were saved) is logged
  with the reason and the next older one is tried; none readable is one CorruptCheckpointError.
"""

from __future__ import annotations

import json

from absl import logging
import ml_collections

from brppnet_jax.train import checkpoints

# Dotted config keys whose change keeps the meaning of the run: how long it goes, how often it
# logs/evaluates/saves, what evaluation scores, how fast input is read, where things are.
CHANGEABLE_ON_RESUME = frozenset({
    "total_steps", "num_epochs", "log_every_steps", "eval_every_steps",
    "checkpoint_every_steps", "keep_checkpoints", "eval_batch_size", "eval_max_examples",
    "segment_thresh", "compute_tdir", "num_image_summaries", "distributed",
    "allow_config_change", "compilation_cache_dir",
    "dataset.num_workers", "dataset.prefetch", "dataset.eval_split", "dataset.data_dir",
    "dataset.word_vectors", "model.backbone_weights", "model.allow_random_backbone",
})


class ConfigChangeError(ValueError):
  """The current config would change the meaning of the run being resumed."""


def _flatten(node, prefix: str = "") -> dict:
  flat = {}
  for key, value in node.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict):
      flat.update(_flatten(value, name + "."))
    else:
      flat[name] = value
  return flat


def _as_json(config) -> dict:
  """The config as the checkpoint stores it (tuples as lists, ...)."""
  if isinstance(config, ml_collections.ConfigDict):
    return json.loads(config.to_json_best_effort())
  return json.loads(json.dumps(config))


def config_changes(stored, current) -> list[str]:
  """"key: old -> new" for every key that differs and may not change on resume."""
  old, new = _flatten(_as_json(stored)), _flatten(_as_json(current))
  changes = []
  for key in sorted(old.keys() | new.keys()):
    if key in CHANGEABLE_ON_RESUME or old.get(key, "<unset>") == new.get(key, "<unset>"):
      continue
    changes.append(f"{key}: {old.get(key, '<unset>')!r} -> {new.get(key, '<unset>')!r}")
  return changes


def check_config(stored, current, stored_words, current_words, *, step: int,
                 directory: str) -> None:
  """ConfigChangeError (one line) unless the run may resume; allowed changes are logged."""
  changes = config_changes(stored, current)
  if list(stored_words) != list(current_words):
    changes.append(f"vocabulary: {len(stored_words)} words -> {len(current_words)} words")
  if not changes:
    return
  if current.get("allow_config_change", False):
    logging.warning("Resuming step %d with a changed config (allowed): %s", step,
                    "; ".join(changes))
    return
  raise ConfigChangeError(
      f"the checkpoint at step {step} in {directory} was trained with another config: "
      f"{'; '.join(changes)}. Use a new workdir, or pass --config.allow_config_change=True "
      "to resume anyway")


def restore_latest(ckpts: checkpoints.Checkpoints, abstract_state, data_iterator, config,
                   vocab_words) -> tuple[int, object]:
  """(step, state) of the newest readable checkpoint, (0, None) when there is none.

  `data_iterator` is set to that checkpoint's position. ConfigChangeError as `check_config`.
  """
  steps = sorted(ckpts.all_steps(), reverse=True)
  failures = []
  for step in steps:
    try:
      stored_config, stored_words, _ = ckpts.restore_metadata(step)
      check_config(stored_config, config, stored_words, vocab_words, step=step,
                   directory=ckpts.directory)
      state = ckpts.restore_state(step, abstract_state, data_iterator)
    except checkpoints.CorruptCheckpointError as e:
      logging.error("Skipping checkpoint step %d: %s", step, e)
      failures.append(f"step {step}: {e}")
      continue
    if failures:
      logging.warning("Resuming from step %d; unreadable newer checkpoint(s): %s", step,
                      " | ".join(failures))
    return step, state
  if failures:
    raise checkpoints.CorruptCheckpointError(
        f"no checkpoint in {ckpts.directory} can be read ({len(failures)} tried); the newest: "
        f"{failures[0]}")
  return 0, None
