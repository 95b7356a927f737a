"""Data parallelism over a Mesh: the batch is split on the `data` axis, the state replicated.

Works unchanged from one CPU to a multi-host pod: each process feeds its own rows and
`global_batch` stitches them into arrays that span every device.
"""

from __future__ import annotations

import jax
from jax.sharding import AxisType
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np

DATA_AXIS = "data"


def make_mesh(devices=None) -> Mesh:
  devices = jax.devices() if devices is None else devices
  # Auto axes: explicit-axis meshes break linen RNNs called with seq_lengths.
  return jax.make_mesh((len(devices),), (DATA_AXIS,), axis_types=(AxisType.Auto,),
                       devices=devices)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def check_batch_size(batch_size: int, mesh: Mesh, name: str = "batch_size") -> None:
  if batch_size % mesh.size or batch_size % jax.process_count():
    raise ValueError(f"config.{name}={batch_size} must be divisible by the {mesh.size} devices "
                     f"and {jax.process_count()} processes")


def global_batch(local: dict, mesh: Mesh) -> dict:
  """Turns this process's rows (numpy arrays) into global arrays sharded on `data`."""
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local.items()}


def local_rows(array: jax.Array) -> np.ndarray:
  """This process's rows of a batch-sharded global array, in the order it fed them."""
  shards = sorted(array.addressable_shards, key=lambda s: s.index[0].start or 0)
  seen, rows = set(), []
  for shard in shards:
    start = shard.index[0].start or 0
    if start not in seen:  # Replicas of the same rows appear once.
      seen.add(start)
      rows.append(np.asarray(shard.data))
  return np.concatenate(rows, axis=0)
