"""Resuming a training run safely: the same run, from the newest checkpoint that reads.

- The config stored with the checkpoint is compared with the current one. A change that alters
  what the run computes (batch size, data, model, loss, optimiser, seed, ...) stops with
  ConfigChangeError naming the keys, unless config.allow_config_change. Keys in
  `CHANGEABLE_ON_RESUME` (length, cadences, evaluation, input speed, locations) may change.
- A checkpoint that cannot be read (or reads back other numbers than were saved) is moved
  aside to DIR/<step>.damaged, where neither resume nor retention looks, with one warning
  naming the step, the file and the reason; the next older one is tried, and with none left
  the run starts from scratch. The best-by-mIoU checkpoint is checked the same way.
"""

from __future__ import annotations

import json

from absl import logging
import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np

from brppnet_jax.train import checkpoints
from brppnet_jax.train import integrity

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

  `data_iterator` is set to that checkpoint's position. A damaged checkpoint is moved aside
  (`integrity.move_aside`) with one warning, and the next older one is tried; the best by
  mIoU, when it is another, is checked too, so evaluation after the run finds a sound one.
  ConfigChangeError as `check_config`: a config change is no damage, nothing is moved.
  """
  start = data_iterator.get_state() if data_iterator is not None else None
  while True:
    steps = ckpts.all_steps()
    if not steps:
      if data_iterator is not None:  # A damaged one may have moved it: back to the start.
        data_iterator.set_state(start)
      return 0, None
    step = max(steps)
    try:
      stored_config, stored_words, _ = _agreed(ckpts, ckpts.restore_metadata, step)
      check_config(stored_config, config, stored_words, vocab_words, step=step,
                   directory=ckpts.directory)
      state = _agreed(ckpts, ckpts.restore_state, step, abstract_state, data_iterator)
    except checkpoints.CorruptCheckpointError as e:
      set_aside(ckpts, e, "trying the next older one" if len(steps) > 1 else
                "starting from scratch")
      continue
    check_best(ckpts, step, abstract_state)
    return step, state


def check_best(ckpts: checkpoints.Checkpoints, resumed: int, abstract_state) -> None:
  """Moves a damaged best-by-mIoU checkpoint aside, until the best one reads back."""
  while (best := ckpts.best_step()) not in (None, resumed):
    try:
      _agreed(ckpts, ckpts.restore_metadata, best)
      _agreed(ckpts, ckpts.restore_state, best, abstract_state)
      return
    except checkpoints.CorruptCheckpointError as e:
      set_aside(ckpts, e, "the best by mIoU is chosen among the others")


def set_aside(ckpts: checkpoints.Checkpoints, error: checkpoints.CorruptCheckpointError,
              then: str) -> None:
  """Moves the damaged step out of the way of resume and retention; one warning line."""
  target = None
  if jax.process_index() == 0:
    try:
      target = integrity.move_aside(ckpts.directory, error.step)
    except OSError as e:
      raise checkpoints.CorruptCheckpointError(
          error.step, error.directory, error.file,
          f"{error.reason}; it could not be moved aside: {integrity.plain_reason(e)}") from e
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f"moved aside checkpoint {error.step}")
  ckpts.reload()
  logging.warning("Checkpoint step %d is damaged: %s: %s. Moved aside to %s; %s.",
                  error.step, error.file, error.reason,
                  target or f"{ckpts.directory}/{error.step}{integrity.DAMAGED_SUFFIX}", then)


def _agreed(ckpts: checkpoints.Checkpoints, read, step: int, *args):
  """read(step, *args); with several processes, damage seen by any is damage for all."""
  try:
    result, error = read(step, *args), None
  except checkpoints.CorruptCheckpointError as e:
    result, error = None, e
  if jax.process_count() > 1:
    flags = multihost_utils.process_allgather(np.int32(error is not None))
    if error is None and np.any(flags):
      first = int(np.argmax(flags))
      error = checkpoints.CorruptCheckpointError(step, ckpts.directory, f"{step}",
                                                 f"process {first} found it damaged")
  if error is not None:
    raise error
  return result

