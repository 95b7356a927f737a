"""Synthetic spoken requests for the voice tests, made with espeak-ng.

Without espeak-ng the voice tests skip on a developer's machine but fail in CI (CI=true),
where .ci/run installs it: a CI run must never pass without having heard a request.
"""

import os
import shutil
import subprocess

import pytest


def require_espeak() -> None:
  """Skips the calling test without espeak-ng, or fails it when running in CI."""
  if shutil.which("espeak-ng") is None:
    message = "espeak-ng is not installed (apt-get install espeak-ng)"
    if os.environ.get("CI", "").lower() == "true":
      pytest.fail(f"{message}; CI must run the voice tests")
    pytest.skip(message)


def speak(text: str, path) -> None:
  """Writes `text` spoken by espeak-ng (US English, 120 words per minute) to the WAV `path`."""
  require_espeak()
  subprocess.run(["espeak-ng", "-v", "en-us", "-s", "120", "-w", str(path), text], check=True,
                 capture_output=True)
