"""Every ```python block of README.md runs as written.

How README blocks must be written:
- Each ```python block runs alone, in a fresh Python process, from a scratch folder holding
  `demo_out/` as `make demo` leaves it: `demo_out/workdir` (this suite's trained synthetic
  workdir, the `trained_workdir` fixture), `demo_out/raw` (its synthetic data in the released
  layout, images under `demo_out/raw/images/train2014/`) and `demo_out/tfds` (the built data);
  beside it `synthetic.tflite` and `synthetic.stablehlo` (with their sidecars), the workdir
  exported as the README says.
  The environment has BRPPNET_WORKDIR=demo_out/workdir and one CPU device; a block gets 300 s.
- Blocks may write files into that folder (it is thrown away).
- A block that cannot run here (it needs a server, a GPU, the network, real RPCOCO) starts with
  the line `# Not run by tests/test_readme.py: <why>`; the test checks that a reason is given.
"""

import pathlib
import re
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from conftest import ONE_DEVICE
from conftest import REPO

README = REPO / "README.md"
SKIP_MARK = "# Not run by tests/test_readme.py:"
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def python_blocks() -> list[tuple[int, str]]:
  """(line number, code) of every ```python block of README.md."""
  text = README.read_text()
  return [(text[:m.start()].count("\n") + 1, m.group(1)) for m in _BLOCK.finditer(text)]


BLOCKS = python_blocks()


def test_the_readme_has_python_blocks():
  assert BLOCKS, f"no ```python block in {README}"


@pytest.fixture
def demo_folder(tmp_path, trained_workdir, synthetic_dataset, exported_tflite,
                exported_stablehlo) -> pathlib.Path:
  """A scratch folder with demo_out/ as `make demo` leaves it (links to the fixtures), and
  synthetic.tflite and synthetic.stablehlo as the README's export commands write them."""
  for exported in (exported_tflite, exported_stablehlo):
    name = f"synthetic{exported.suffix}"
    (tmp_path / name).symlink_to(exported)
    (tmp_path / f"{name}.json").symlink_to(f"{exported}.json")
  demo = tmp_path / "demo_out"
  demo.mkdir()
  (demo / "workdir").symlink_to(trained_workdir)
  (demo / "raw").symlink_to(synthetic_dataset / "raw")
  (demo / "tfds").symlink_to(synthetic_dataset / "tfds")
  return tmp_path


@pytest.mark.parametrize("line, code", BLOCKS, ids=[f"README.md:{line}" for line, _ in BLOCKS])
def test_python_block_runs_as_written(line, code, demo_folder):
  if code.startswith(SKIP_MARK):
    reason = code.splitlines()[0][len(SKIP_MARK):].strip()
    assert reason, f"README.md:{line}: say why the block is not run"
    pytest.skip(f"README.md:{line}: {reason}")
  env = {"BRPPNET_WORKDIR": "demo_out/workdir", **ONE_DEVICE, "JAX_PLATFORMS": "cpu",
         "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO), "HOME": str(demo_folder)}
  proc = subprocess.run([sys.executable, "-c", code], cwd=demo_folder, env=env,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, f"README.md:{line} failed:\n{proc.stderr[-3000:]}"
  if "protected.png" in code:  # "Protecting a person": the hidden image is saved.
    saved = np.asarray(Image.open(demo_folder / "protected.png"))
    assert saved.ndim == 3 and saved.shape[2] == 3
