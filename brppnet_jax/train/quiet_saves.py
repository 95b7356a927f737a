"""A failed asynchronous save says so once: what Orbax, asyncio and TensorStore print is dropped.

CheckpointWriteError (`checkpoints`) reports the failure in one line when the save is waited
for; without this, a full disk printed a traceback per array before it.
"""

import logging as py_logging
import os
import sys
import traceback


class _BackgroundSaveErrors(py_logging.Filter):
  """Drops the tracebacks of a failed background save, Orbax's own and asyncio's "exception
  was never retrieved" for each of its write tasks (hundreds on a full disk):
  CheckpointWriteError reports the failure once, in one line, when the save is waited for."""

  def filter(self, record) -> bool:
    if record.levelno < py_logging.ERROR:
      return True
    if record.name == "asyncio":
      message = record.getMessage()
      return not ("exception was never retrieved" in message and
                  ("orbax" in message or "OCDBT" in message))
    if f"{os.sep}orbax{os.sep}" not in record.pathname:
      return True
    return not any(mark in str(record.msg) for mark in (
        "raised an exception", "background save thread", "Save Finalize thread"))


def _quiet_closed_loop_callbacks(previous_hook):
  """An unraisable hook without TensorStore's callbacks into a closed event loop.

  When one array of a save fails, Orbax's save coroutine ends and closes its event loop while
  the other arrays' writes are still running; each of them, finishing, tries to wake that loop
  from TensorStore's thread, and Python prints every such RuntimeError. The save's failure
  itself reaches CheckpointWriteError; these say nothing more.
  """
  def hook(unraisable):
    error = unraisable.exc_value
    frames = traceback.extract_tb(unraisable.exc_traceback)
    if not (isinstance(error, RuntimeError) and str(error) == "Event loop is closed" and
            frames and frames[0].name == "call_soon_threadsafe"):
      previous_hook(unraisable)
  return hook


_installed = False


def install() -> None:
  """The log filters and the unraisable hook, once per process."""
  global _installed
  if _installed:
    return
  _installed = True
  quiet = _BackgroundSaveErrors()
  for name in ("absl", "asyncio"):
    py_logging.getLogger(name).addFilter(quiet)
  sys.unraisablehook = _quiet_closed_loop_callbacks(sys.unraisablehook)
