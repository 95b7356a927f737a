"""The run's metric writer: TensorBoard under WORKDIR and the log, hyperparameters once."""

from __future__ import annotations

import os

from clu import metric_writers
import jax
import ml_collections


def create_writer(workdir: str, config: ml_collections.ConfigDict, *, fresh: bool):
  """An asynchronous writer to TensorBoard (process 0) and the log (every process).

  A fresh run records its hyperparameters in TensorBoard only: `main` already printed the
  config, and clu's logging writer would print it a second time as one long line.
  """
  writers = [metric_writers.LoggingWriter()]
  if jax.process_index() == 0:
    summary = metric_writers.SummaryWriter(os.fspath(workdir))
    if fresh:
      summary.write_hparams(flat_hparams(config))
    writers.append(summary)
  return metric_writers.AsyncMultiWriter(writers)


def flat_hparams(config) -> dict:
  """{dotted key: scalar} of a config, non-scalars as text (what TensorBoard accepts)."""
  flat = {}

  def visit(prefix, node):
    for key, value in node.items():
      name = f"{prefix}{key}"
      if isinstance(value, (dict, ml_collections.ConfigDict)):
        visit(name + ".", value)
      elif isinstance(value, (int, float, str, bool)):
        flat[name] = value
      else:
        flat[name] = str(value)

  visit("", config.to_dict())
  return flat
