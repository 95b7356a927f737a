"""notebooks/evaluate_checkpoint.ipynb runs top to bottom on a freshly trained workdir."""

import json
import re
import sys

import nbformat
from nbclient import NotebookClient

from conftest import REPO

NOTEBOOK = REPO / "notebooks" / "evaluate_checkpoint.ipynb"
KERNEL = "brppnet-test-venv"


def test_committed_notebook_is_stripped_of_outputs():
  cells = [c for c in nbformat.read(NOTEBOOK, as_version=4).cells if c.cell_type == "code"]
  assert cells
  assert all(not c.outputs and c.execution_count is None for c in cells)


def test_notebook_evaluates_the_workdir_and_protects_a_sentence(trained_workdir, tmp_path,
                                                                monkeypatch):
  # A kernel spec for this interpreter, so the notebook runs with the project's packages.
  spec = tmp_path / "jupyter" / "kernels" / KERNEL
  spec.mkdir(parents=True)
  (spec / "kernel.json").write_text(json.dumps({
      "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
      "display_name": KERNEL, "language": "python"}))
  monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
  monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
  monkeypatch.setenv("BRPPNET_WORKDIR", str(trained_workdir))
  monkeypatch.setenv("BRPPNET_MAX_EXAMPLES", "40")
  monkeypatch.setenv("XLA_FLAGS", "")  # One CPU device is enough and compiles faster.
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  NotebookClient(notebook, kernel_name=KERNEL, timeout=300,
                 resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()

  outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
  text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
  assert re.search(r"^miou\s+0\.\d{4}$", text, re.MULTILINE), text
  assert re.search(r"^prec@0\.5\s+0\.\d{4}$", text, re.MULTILINE), text
  assert re.search(r"^num_expressions\s+40$", text, re.MULTILINE), text
  assert re.search(r"'protect privacy of the person on the left': \d+\.\d% of the image "
                   "protected", text), text
  figures = [o for o in outputs if "image/png" in o.get("data", {})]
  assert len(figures) == 2  # The example grid and the own-sentence row.
