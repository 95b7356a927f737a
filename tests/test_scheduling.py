"""`make test`'s scheduling holds: a group that tests/conftest.py marks runs on one worker.

The suite's time depends on it: every test of the trained workdir runs on one worker while the
other takes the rest. A pytest that pytest-xdist cannot tag (9.2 with xdist 3.8) drops the
groups without a word, so this runs a small suite marked the way tests/conftest.py marks ours.
"""

import os
import subprocess
import textwrap

from conftest import PYTHON

CONFTEST = """
import pytest

@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
  for item in items:
    if "shared" in item.fixturenames:
      item.add_marker(pytest.mark.xdist_group("shared"))

@pytest.fixture
def shared():
  return None
"""

TESTS = """
import os
import time

def record(name):
  with open("workers.txt", "a") as f:
    f.write(f"{name} {os.environ['PYTEST_XDIST_WORKER']}\\n")
  time.sleep(0.5)  # Long enough that the other worker is free to take the next test.

def test_first(shared): record("first")
def test_second(shared): record("second")
def test_third(shared): record("third")
def test_alone(): record("alone")
def test_also_alone(): record("also_alone")
"""


def test_a_marked_group_runs_on_one_worker(tmp_path):
  (tmp_path / "conftest.py").write_text(textwrap.dedent(CONFTEST))
  (tmp_path / "test_grouped.py").write_text(textwrap.dedent(TESTS))
  # Not this run's options (CI's --junitxml would be overwritten) nor its worker's identity.
  env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PYTHONPATH"))}
  proc = subprocess.run([PYTHON, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-q",
                         "-p", "no:cacheprovider", "test_grouped.py"], cwd=tmp_path, env=env,
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  workers = dict(line.split() for line in (tmp_path / "workers.txt").read_text().splitlines())
  assert len(workers) == 5
  assert workers["first"] == workers["second"] == workers["third"], workers
