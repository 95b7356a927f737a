"""What every command-line module shares: user errors end in one line, not a traceback."""

from __future__ import annotations

import contextlib
import sys

from absl import app
from absl import flags
from absl import logging

# Bad input (a missing file, a wrong value) and a diverged run: the user's to fix, so they get
# one line and exit status 1. Anything else is a bug and keeps its traceback.
USER_ERRORS = (FileNotFoundError, ValueError, FloatingPointError)


def no_arguments(argv) -> None:
  """Refuses positional arguments: every input of these commands is a named flag."""
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")


def quiet_library_logs() -> None:
  """Only errors from the libraries, unless --verbosity was given: a person protecting a
  photo has no use for TensorFlow's or Orbax's warnings."""
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.ERROR)


@contextlib.contextmanager
def one_line_errors(*extra: type[BaseException], log: bool = True):
  """Turns USER_ERRORS (and `extra`) raised inside into one line, `error: ...`, and exit
  status 1; with `log`, the absl log (a training run's log file) gets the line too."""
  try:
    yield
  except (*USER_ERRORS, *extra) as e:
    message = " ".join(str(e).split())
    if log:
      logging.error("%s", message)
    sys.exit(f"error: {message}")
