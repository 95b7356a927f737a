"""Every `python -m brppnet_jax...` command that the documentation, configs, launch scripts,
Makefile, notebook and CI name is a module that exists and answers --help."""

import concurrent.futures
import os
import re
import subprocess

import pytest

from conftest import PYTHON
from conftest import REPO

DOCUMENTS = ["README.md", "BENCHMARKS.md", "Makefile", ".ci/run",
             *(f"configs/{n}" for n in os.listdir(REPO / "configs") if n.endswith(".py")),
             *(f"launch/{n}" for n in os.listdir(REPO / "launch")),
             *(f"notebooks/{n}" for n in os.listdir(REPO / "notebooks") if n.endswith(".ipynb"))]
COMMAND = re.compile(r"-m (brppnet_jax(?:\.\w+)*)")


def named_modules() -> dict[str, list[str]]:
  """{module: [documents naming it]}."""
  found = {}
  for name in DOCUMENTS:
    for module in COMMAND.findall((REPO / name).read_text(encoding="utf-8")):
      found.setdefault(module, []).append(name)
  return found


MODULES = named_modules()


def help_text(module: str) -> tuple[int, str]:
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3"}
  proc = subprocess.run([PYTHON, "-m", module, "--help"], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300, check=False)
  return proc.returncode, proc.stdout + proc.stderr


def test_the_documents_name_the_main_commands():
  assert {"brppnet_jax.main", "brppnet_jax.protect", "brppnet_jax.data.build"} <= set(MODULES)


def test_every_named_command_answers_help():
  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    results = dict(zip(MODULES, pool.map(help_text, MODULES)))
  broken = []
  for module, (code, text) in results.items():
    # absl exits with status 1 after --help and ends it pointing to --helpfull; a missing
    # module, a crash or another flags library says something else.
    if code not in (0, 1) or "Traceback" in text or "--helpfull" not in text:
      broken.append(f"{module} (named in {', '.join(sorted(set(MODULES[module])))}): "
                    f"exit {code}: {text[-300:]}")
  assert not broken, "\n".join(broken)


@pytest.mark.parametrize("text, expected", [
    ("run `python -m brppnet_jax.measure.step_speed --batch=8`",
     ["brppnet_jax.measure.step_speed"]),
    ("$(PY) -m brppnet_jax.main --config=x", ["brppnet_jax.main"]),
    ("python -m pytest", []),
])
def test_the_command_pattern(text, expected):
  assert COMMAND.findall(text) == expected
