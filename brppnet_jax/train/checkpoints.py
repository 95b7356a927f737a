"""Orbax checkpoints under WORKDIR/checkpoints: state, input iterator, config and vocabulary.

Kept: the latest `keep` checkpoints and the best by mIoU. Both are preservation policies, so a
new checkpoint that evaluates worse is never deleted for it (Orbax's `best_fn` with
`max_to_keep` would do exactly that).

Each checkpoint also stores a SHA-256 of every state array (`checksums`): TensorStore reads a
damaged array file without complaint (a flipped byte comes back as a different number), so a
restore compares what it read with what was saved and raises CorruptCheckpointError.
WORKDIR may be a local path or a URL (gs://...): paths go through `brppnet_jax.runtime.paths`.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from brppnet_jax.runtime import paths

BEST_METRIC = "miou"
CHECKSUMS_ITEM = "checksums"


class CorruptCheckpointError(ValueError):
  """A checkpoint that cannot be read back as it was saved."""


def checkpoint_dir(workdir: paths.PathLike) -> str:
  return os.fspath(paths.join(workdir, "checkpoints"))


def _miou(metrics) -> float:
  return float(metrics[BEST_METRIC])


def _host_copy(leaf) -> np.ndarray:
  """The value of a (replicated) state leaf, read from this process's own devices."""
  if isinstance(leaf, jax.Array):
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
      leaf = jax.random.key_data(leaf)
    return np.asarray(leaf.addressable_data(0))
  return np.asarray(leaf)


def state_checksums(state) -> dict[str, str]:
  """{leaf path: SHA-256 of its dtype, shape and bytes} for every array of `state`."""
  sums = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
    value = np.ascontiguousarray(_host_copy(leaf))
    digest = hashlib.sha256(f"{value.dtype.str}{value.shape}".encode())
    digest.update(value.tobytes())
    sums[jax.tree_util.keystr(path)] = digest.hexdigest()
  return sums


def _first_line(error: BaseException) -> str:
  text = " ".join(str(error).split())
  return f"{type(error).__name__}: {text[:300]}" if text else type(error).__name__


class Checkpoints:
  """A CheckpointManager with this project's items and policies."""

  def __init__(self, workdir: paths.PathLike, *, keep: int = 2, async_save: bool = True,
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
    self.directory = checkpoint_dir(workdir)
    self.manager = ocp.CheckpointManager(self.directory, options=options)

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
        CHECKSUMS_ITEM: ocp.args.JsonSave(state_checksums(state)),
        "config": ocp.args.JsonSave(json.loads(config.to_json_best_effort())),
        "vocab": ocp.args.JsonSave(list(vocab_words)),
        "expressions": ocp.args.JsonSave(list(expressions)),
    }
    if data_iterator is not None:
      import grain  # Only needed with an input pipeline; keeps this importable without it.
      items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
    return self.manager.save(step, args=ocp.args.Composite(**items), metrics=metrics,
                             force=force)

  def _has_item(self, step: int, name: str) -> bool:
    return paths.join(self.directory, str(step), name).exists()

  def restore_state(self, step: int, abstract_state, data_iterator=None) -> Any:
    """Restores the state (into the shardings of `abstract_state`) and the iterator in place.

    CorruptCheckpointError, in one line, when the checkpoint cannot be read or what was read
    differs from what was saved.
    """
    items = {"state": ocp.args.StandardRestore(abstract_state)}
    checked = self._has_item(step, CHECKSUMS_ITEM)  # Checkpoints from before checksums: not.
    if checked:
      items[CHECKSUMS_ITEM] = ocp.args.JsonRestore()
    if data_iterator is not None:
      import grain
      items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(**items))
    except Exception as e:  # pylint: disable=broad-except  (Orbax/TensorStore raise many kinds)
      raise CorruptCheckpointError(
          f"checkpoint step {step} in {self.directory} cannot be read: {_first_line(e)}") from e
    if checked:
      expected, actual = restored[CHECKSUMS_ITEM], state_checksums(restored["state"])
      bad = sorted(k for k in expected.keys() | actual.keys() if expected.get(k) != actual.get(k))
      if bad:
        raise CorruptCheckpointError(
            f"checkpoint step {step} in {self.directory} is damaged: {len(bad)} state "
            f"array(s) differ from their saved checksum, first {bad[0]}")
    return restored["state"]

  def restore_metadata(self, step: int) -> tuple[ml_collections.ConfigDict, list[str], list[str]]:
    """The config, vocabulary words and training expressions stored with a checkpoint."""
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(
          config=ocp.args.JsonRestore(), vocab=ocp.args.JsonRestore(),
          expressions=ocp.args.JsonRestore()))
    except KeyError as e:  # Orbax names the missing item.
      raise CorruptCheckpointError(
          f"checkpoint step {step} in {self.directory} is incomplete: {e.args[0]}") from None
    except Exception as e:  # pylint: disable=broad-except
      raise CorruptCheckpointError(
          f"checkpoint step {step} in {self.directory} cannot be read: {_first_line(e)}") from e
    return (ml_collections.ConfigDict(restored["config"]), list(restored["vocab"]),
            list(restored["expressions"]))

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()


def resolve_step(checkpoints: Checkpoints, step: int | None, workdir: paths.PathLike) -> int:
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
