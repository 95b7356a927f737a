"""SIGTERM (a preemption notice) as a flag the training loop checks between steps."""

from __future__ import annotations

import signal

import jax


class Preemption:
  """Turns SIGTERM into `requested`; the loop then saves and stops.

  Only with one process. With several, JAX's preemption service owns SIGTERM: whichever
  process gets it tells the others, and `reached_preemption_sync_point` (Orbax's
  `reached_preemption`) turns True at the same step everywhere, so all save that step.
  A Python handler would take the signal from it and stop one process alone.
  """

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    def handler(signum, frame):
      del signum, frame
      self.requested = True
    if jax.process_count() > 1:
      return self
    try:
      self._previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # Not the main thread (e.g. a notebook worker): no handler.
      self._previous = None
    return self

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
