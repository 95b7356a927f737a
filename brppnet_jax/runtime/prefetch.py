"""Global batches staged on the devices a few steps ahead of the step that uses them."""

from __future__ import annotations

import collections
import json

from jax.sharding import Mesh

from brppnet_jax.runtime import sharding


class DevicePrefetcher:
  """Global batches put on the devices `depth` batches ahead of the step that uses them.

  Wraps an iterator of this process's rows (dicts of numpy arrays). Each `next` returns the
  oldest staged batch and stages one more: `jax.make_array_from_process_local_data` only
  starts the host-to-device copies, so they run while the device works on earlier steps,
  and nothing here waits for the device.

  The wrapped iterator runs `depth` batches ahead of what has been returned, so a
  checkpoint must not store its state: `get_state()` is the state it had just after the
  last returned batch was read (what a restored iterator needs to yield the next one), in
  the JSON bytes that grain's Orbax handler writes for an iterator that is no
  `grain.DatasetIterator`.
  """

  def __init__(self, host_batches, mesh: Mesh, depth: int = 2):
    if depth < 1:
      raise ValueError(f"prefetch depth must be at least 1, got {depth}")
    self._host = host_batches
    self._mesh = mesh
    self._depth = depth
    self._staged = collections.deque()
    self._consumed_state = self._host_state()

  def _host_state(self):
    get_state = getattr(self._host, "get_state", None)
    return get_state() if get_state is not None else None

  def _stage(self) -> bool:
    try:
      rows = next(self._host)
    except StopIteration:
      return False
    self._staged.append((sharding.global_batch(rows, self._mesh), self._host_state()))
    return True

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    while len(self._staged) < self._depth and self._stage():
      pass
    if not self._staged:
      raise StopIteration
    batch, self._consumed_state = self._staged.popleft()
    self._stage()  # Its copies overlap the step about to run on `batch`.
    return batch

  def close(self) -> None:
    """Drops the staged batches (grain frees their shared memory) and closes the iterator."""
    self._staged.clear()
    close = getattr(self._host, "close", None)
    if close is not None:
      close()

  def get_state(self) -> bytes:
    if self._consumed_state is None:
      raise TypeError(f"{type(self._host).__name__} has no get_state(): nothing to save")
    return json.dumps(self._consumed_state).encode()
