"""Orbax checkpoints under WORKDIR/checkpoints: state, input iterator, config and vocabulary.

Kept: the latest `keep` checkpoints and the best by mIoU. Both are preservation policies, so a
new checkpoint that evaluates worse is never deleted for it (Orbax's `best_fn` with
`max_to_keep` would do exactly that). Every save carries metrics, empty when the step was not
evaluated, so Orbax stores them without a warning and ranks unevaluated steps last.

Each checkpoint also stores SHA-256 digests of what a resumed run depends on (`checksums`,
see `integrity`); a restore compares what it read with them and raises CorruptCheckpointError
naming the file and the reason. A save that cannot be written (disk full, permission, an
unreachable bucket) raises CheckpointWriteError naming the step, the place, the reason and the
newest intact step; its unfinished files are removed, never left where a resume looks.
WORKDIR may be a local path or a URL (gs://...): paths go through `brppnet_jax.runtime.paths`.
"""

from __future__ import annotations

import json
import os
from typing import Any

from absl import logging
import jax
import ml_collections
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

# Not exported; pinned in requirements.txt, and the fault tests read what they write.
from orbax.checkpoint._src.metadata import array_metadata_store
from orbax.checkpoint._src.serialization import type_handler_registry

from brppnet_jax.runtime import paths
from brppnet_jax.train import integrity
from brppnet_jax.train import quiet_saves
from brppnet_jax.train.integrity import CorruptCheckpointError  # pylint: disable=unused-import

BEST_METRIC = "miou"
CHECKSUMS_ITEM = "checksums"
_TMP_MARK = ".orbax-checkpoint-tmp"


class WriteError(RuntimeError):
  """Something the run must keep (a checkpoint, eval_metrics.jsonl) could not be written."""


class CheckpointWriteError(WriteError):
  """A checkpoint that could not be written; nothing of it is left where resume looks."""


def checkpoint_dir(workdir: paths.PathLike) -> str:
  return os.fspath(paths.join(workdir, "checkpoints"))


def _score(metrics) -> float:
  """mIoU; unevaluated checkpoints (empty metrics) rank below every evaluated one."""
  return float(metrics.get(BEST_METRIC, float("-inf"))) if metrics else float("-inf")


quiet_saves.install()


def _save_replicated_arrays_whole() -> None:
  """Orbax can split each replicated array among its replicas so that several hosts share its
  writing, at the cost of compiling a slice per array (124 for the synthetic network) in every
  process at the first save: 6 to 8 s of CPU per process on 2 cores, more than the split can
  save, as one host writes this network's whole state in seconds. Orbax already writes whole
  arrays on GPUs; here on every platform."""
  # Otherwise as Orbax's default handler: with the array metadata (typed PRNG keys need it).
  handler = ocp.type_handlers.ArrayHandler(
      use_replica_parallel=False, array_metadata_store=array_metadata_store.Store())
  # Quietly: Orbax warns of every override, and every run would log it.
  type_handler_registry.GLOBAL_TYPE_HANDLER_REGISTRY.add(jax.Array, handler, override=True,
                                                         ignore_warnings=True)


_save_replicated_arrays_whole()


class Checkpoints:
  """A CheckpointManager with this project's items and policies.

  read_only: for readers (evaluation, prediction). Orbax's own read_only mode announces
  "Given directory is read only" even for a writable folder, so a reader opens a manager that
  creates nothing and may not save (`save` refuses).
  """

  def __init__(self, workdir: paths.PathLike, *, keep: int = 2, async_save: bool = True,
               read_only: bool = False):
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policies.AnyPreservationPolicy([
            policies.LatestN(n=keep),
            policies.BestN(get_metric_fn=_score, n=1, keep_checkpoints_without_metrics=False),
        ]),
        # Only decides that metrics are written with each checkpoint (for `best_step` after a
        # restart); what is kept is the preservation policy's business alone.
        best_fn=_score, best_mode="max",
        enable_async_checkpointing=async_save,
        # A save killed half way leaves DIR/<step>.orbax-checkpoint-tmp*: removed on start.
        cleanup_tmp_directories=not read_only,
        create=not read_only)
    self.directory = checkpoint_dir(workdir)
    self.read_only = read_only
    self._pending: int | None = None  # The step whose asynchronous save may still run.
    self.manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def best_step(self) -> int | None:
    """Step of the highest mIoU among kept checkpoints; the latest if none was evaluated."""
    scored = []
    for step in self.manager.all_steps():
      metrics = self.manager.metrics(step)
      if metrics and BEST_METRIC in metrics:
        scored.append((_score(metrics), step))
    return max(scored)[1] if scored else self.latest_step()

  def all_steps(self) -> list[int]:
    return list(self.manager.all_steps())

  def reload(self) -> None:
    """Reads the steps on disk again (after one was moved aside)."""
    self.manager.reload()

  def save(self, step: int, state, *, config, vocab_words, expressions=(), data_iterator=None,
           metrics: dict | None = None, force: bool = False) -> bool:
    """Saves asynchronously; `expressions` (training sentences) feed the speech model.

    CheckpointWriteError when this save, or the previous one still being written, fails.
    """
    if self.read_only:
      raise CheckpointWriteError(f"{self.directory} was opened for reading only")
    config_json = json.loads(config.to_json_best_effort())
    digests = {**integrity.state_checksums(state),
               **integrity.item_digests(config_json, vocab_words, expressions)}
    items = {
        "state": ocp.args.StandardSave(state),
        "config": ocp.args.JsonSave(config_json),
        "vocab": ocp.args.JsonSave(list(vocab_words)),
        "expressions": ocp.args.JsonSave(list(expressions)),
    }
    if data_iterator is not None:
      import grain  # Only needed with an input pipeline; keeps this importable without it.
      items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
      digests.update(integrity.data_digests(data_iterator))
    items[CHECKSUMS_ITEM] = ocp.args.JsonSave(digests)
    try:
      self._wait_for_pending()
      self._pending = step
      saved = self.manager.save(step, args=ocp.args.Composite(**items), metrics=metrics or {},
                                force=force)
    except CheckpointWriteError:
      raise
    except Exception as e:  # pylint: disable=broad-except  (Orbax/TensorStore raise many kinds)
      raise self._write_error(step, e) from e
    return saved

  def _wait_for_pending(self) -> None:
    try:
      self.manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except
      raise self._write_error(self._pending, e) from e
    self._pending = None

  def _write_error(self, step: int | None, error: BaseException) -> CheckpointWriteError:
    """The one-line error of a failed save, after removing what it left half written."""
    self._pending = None
    directory = paths.absolute(self.directory)
    leftovers = list(directory.glob(f"{step}{_TMP_MARK}*"))
    in_place = directory / str(step)  # On GCS Orbax writes in place and commits with a marker.
    if in_place.exists() and not ocp.path.step.is_checkpoint_finalized(in_place):
      leftovers.append(in_place)
    for leftover in leftovers:
      try:
        leftover.rmtree()
      except OSError as e:
        logging.warning("Could not remove the unfinished %s: %s", leftover, e)
    try:
      self.manager.reload()
      intact = [s for s in self.manager.all_steps() if s != step]
    except Exception:  # pylint: disable=broad-except  (storage unreachable: nothing to list)
      intact = []
    newest = (f"the newest intact checkpoint is step {max(intact)}" if intact else
              "no checkpoint was written before it")
    where = os.fspath(paths.join(self.directory, str(step)))
    return CheckpointWriteError(f"checkpoint step {step} could not be written to {where}: "
                                f"{integrity.plain_reason(error)}; {newest}")

  def _has_item(self, step: int, name: str) -> bool:
    return paths.join(self.directory, str(step), name).exists()

  def _read_error(self, step: int, item: str, error: BaseException) -> CorruptCheckpointError:
    return CorruptCheckpointError(step, self.directory, f"{step}/{item}",
                                  integrity.plain_reason(error))

  def _digests(self, step: int) -> dict | None:
    """The stored digests; None for checkpoints from before them."""
    if not self._has_item(step, CHECKSUMS_ITEM):
      return None
    try:
      return self.manager.restore(step, args=ocp.args.Composite(
          **{CHECKSUMS_ITEM: ocp.args.JsonRestore()}))[CHECKSUMS_ITEM]
    except Exception as e:  # pylint: disable=broad-except
      raise self._read_error(step, f"{CHECKSUMS_ITEM}/metadata", e) from e

  def restore_state(self, step: int, abstract_state, data_iterator=None) -> Any:
    """Restores the state (into the shardings of `abstract_state`) and the iterator in place.

    CorruptCheckpointError, in one line, when the checkpoint cannot be read or what was read
    differs from what was saved.
    """
    integrity.check_json_files(step, self.directory)
    digests = self._digests(step)
    items = {"state": ocp.args.StandardRestore(abstract_state)}
    if data_iterator is not None:
      import grain
      items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(**items))
    except Exception as e:  # pylint: disable=broad-except
      item = "data" if "process_" in str(e) and ".json" in str(e) else "state"
      raise self._read_error(step, item, e) from e
    if digests is not None:
      bad = integrity.state_mismatch(digests, integrity.state_checksums(restored["state"]))
      if bad:
        raise CorruptCheckpointError(
            step, self.directory, f"{step}/state",
            f"{len(bad)} array(s) differ from their saved SHA-256, first {bad[0]}")
      if data_iterator is not None:
        self._check_data(step, digests, data_iterator)
    return restored["state"]

  def _check_data(self, step: int, digests: dict, data_iterator) -> None:
    name = integrity.data_file(jax.process_index(), jax.process_count())
    expected = digests.get(integrity.ITEM_PREFIX + name)
    if expected is not None and integrity.content_digest(data_iterator.get_state()) != expected:
      raise CorruptCheckpointError(step, self.directory, f"{step}/{name}",
                                   "the input position differs from its saved SHA-256")

  def restore_metadata(self, step: int) -> tuple[ml_collections.ConfigDict, list[str], list[str]]:
    """The config, vocabulary words and training expressions stored with a checkpoint,
    checked against their saved digests (CorruptCheckpointError naming the file)."""
    integrity.check_json_files(step, self.directory)
    digests = self._digests(step)
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(
          **{name: ocp.args.JsonRestore() for name in integrity.JSON_ITEMS}))
    except KeyError as e:  # Orbax names the missing item.
      raise CorruptCheckpointError(step, self.directory, f"{step}/{e.args[0]}",
                                   "missing") from None
    except Exception as e:  # pylint: disable=broad-except
      raise self._read_error(step, "config", e) from e
    for name in integrity.JSON_ITEMS if digests else ():
      expected = digests.get(integrity.ITEM_PREFIX + name)
      if expected is not None and integrity.content_digest(restored[name]) != expected:
        raise CorruptCheckpointError(step, self.directory, f"{step}/{name}/metadata",
                                     "its content differs from its saved SHA-256")
    return (ml_collections.ConfigDict(restored["config"]), list(restored["vocab"]),
            list(restored["expressions"]))

  def wait(self) -> None:
    """Waits for the pending save; CheckpointWriteError if it failed."""
    self._wait_for_pending()

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
