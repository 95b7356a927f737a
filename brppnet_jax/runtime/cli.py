"""What every command-line module shares: user errors end in one line, not a traceback."""

from __future__ import annotations

import contextlib
import sys

from absl import app
from absl import logging

# Bad input (a missing file, a wrong value) and a diverged run: the user's to fix, so they get
# one line and exit status 1. Anything else is a bug and keeps its traceback.
USER_ERRORS = (FileNotFoundError, ValueError, FloatingPointError)


def no_arguments(argv) -> None:
  """Refuses positional arguments: every input of these commands is a named flag."""
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")


@contextlib.contextmanager
def one_line_errors(*extra: type[BaseException]):
  """Turns USER_ERRORS (and `extra`) raised inside into `error: ...` and exit status 1."""
  try:
    yield
  except (*USER_ERRORS, *extra) as e:
    logging.error("%s", e)
    sys.exit(f"error: {e}")
