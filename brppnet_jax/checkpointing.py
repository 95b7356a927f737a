"""Orbax checkpoints under WORKDIR/checkpoints: state, input iterator, config and vocabulary.

Kept: the latest `keep` checkpoints and the best by mIoU. Both are preservation policies, so a
new checkpoint that evaluates worse is never deleted for it (Orbax's `best_fn` with
`max_to_keep` would do exactly that).
"""

from __future__ import annotations

import json
import os
from typing import Any

import ml_collections
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

BEST_METRIC = "miou"


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), "checkpoints")


def _miou(metrics) -> float:
  return float(metrics[BEST_METRIC])


class Checkpoints:
  """A CheckpointManager with this project's items and policies."""

  def __init__(self, workdir: str, *, keep: int = 2, async_save: bool = True,
               read_only: bool = False):
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policies.AnyPreservationPolicy([
            policies.LatestN(n=keep),
            policies.BestN(get_metric_fn=_miou, n=1, keep_checkpoints_without_metrics=False),
        ]),
        # Only decides that metrics are written with each checkpoint (for `best_step` after a
        # restart); what is kept is the preservation policy's business alone.
        best_fn=_miou, best_mode="max",
        enable_async_checkpointing=async_save,
        create=not read_only,
        read_only=read_only)
    self.manager = ocp.CheckpointManager(checkpoint_dir(workdir), options=options)

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def best_step(self) -> int | None:
    """Step of the highest mIoU among kept checkpoints; the latest if none was evaluated."""
    scored = []
    for step in self.manager.all_steps():
      metrics = self.manager.metrics(step)
      if metrics and BEST_METRIC in metrics:
        scored.append((_miou(metrics), step))
    return max(scored)[1] if scored else self.latest_step()

  def all_steps(self) -> list[int]:
    return list(self.manager.all_steps())

  def save(self, step: int, state, *, config, vocab_words, expressions=(), data_iterator=None,
           metrics: dict | None = None, force: bool = False) -> bool:
    """Saves asynchronously; `expressions` (training sentences) feed the speech model."""
    items = {
        "state": ocp.args.StandardSave(state),
        "config": ocp.args.JsonSave(json.loads(config.to_json_best_effort())),
        "vocab": ocp.args.JsonSave(list(vocab_words)),
        "expressions": ocp.args.JsonSave(list(expressions)),
    }
    if data_iterator is not None:
      import grain  # Only needed with an input pipeline; keeps this importable without it.
      items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
    return self.manager.save(step, args=ocp.args.Composite(**items), metrics=metrics,
                             force=force)

  def restore_state(self, step: int, abstract_state, data_iterator=None) -> Any:
    """Restores the state (into the shardings of `abstract_state`) and the iterator in place."""
    items = {"state": ocp.args.StandardRestore(abstract_state)}
    if data_iterator is not None:
      import grain
      items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
    restored = self.manager.restore(step, args=ocp.args.Composite(**items))
    return restored["state"]

  def restore_metadata(self, step: int) -> tuple[ml_collections.ConfigDict, list[str], list[str]]:
    """The config, vocabulary words and training expressions stored with a checkpoint."""
    restored = self.manager.restore(step, args=ocp.args.Composite(
        config=ocp.args.JsonRestore(), vocab=ocp.args.JsonRestore(),
        expressions=ocp.args.JsonRestore()))
    return (ml_collections.ConfigDict(restored["config"]), list(restored["vocab"]),
            list(restored["expressions"]))

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()


def resolve_step(checkpoints: Checkpoints, step: int | None, workdir: str) -> int:
  """The requested step, or the best one; a clear error when there is none."""
  steps = checkpoints.all_steps()
  if not steps:
    raise FileNotFoundError(f"no checkpoint in {checkpoint_dir(workdir)}")
  if step is None:
    return checkpoints.best_step()
  if step not in steps:
    raise FileNotFoundError(f"no checkpoint for step {step} in {checkpoint_dir(workdir)}; "
                            f"available steps: {steps}")
  return step
