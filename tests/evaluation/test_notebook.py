"""notebooks/evaluate_checkpoint.ipynb runs top to bottom on a freshly trained workdir."""

import json
import re
import sys

from nbclient import NotebookClient
import nbformat

from conftest import REPO
from conftest import run_module

NOTEBOOK = REPO / "notebooks" / "evaluate_checkpoint.ipynb"
KERNEL = "brppnet-test-venv"


def test_committed_notebook_is_stripped_of_outputs():
  cells = [c for c in nbformat.read(NOTEBOOK, as_version=4).cells if c.cell_type == "code"]
  assert cells
  assert all(not c.outputs and c.execution_count is None for c in cells)


def printed_table(text: str) -> dict:
  """{key: value text} of the lines of a two-column table `evaluate.format_table` printed."""
  return dict(line.split() for line in text.splitlines()
              if re.fullmatch(r"\S+ +(\d+(\.\d+)?|n/a)", line))


def test_notebook_evaluates_the_workdir_and_protects_a_sentence(trained_workdir, synthetic_dataset,
                                                                tmp_path, monkeypatch):
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
  # The metrics are those `--mode=eval` gives for the same workdir and expressions.
  proc = run_module("brppnet_jax.main", "--config=configs/synthetic.py",
                    f"--workdir={trained_workdir}", "--mode=eval",
                    f"--config.dataset.data_dir={synthetic_dataset / 'tfds'}",
                    "--config.eval_max_examples=40", env={"XLA_FLAGS": ""})
  from_eval_mode = printed_table(proc.stdout)
  assert from_eval_mode["num_expressions"] == "40" and float(from_eval_mode["miou"]) > 0
  assert printed_table(text) == {k: v for k, v in from_eval_mode.items()
                                 if k not in ("step", "split")}
  assert re.search(r"'protect privacy of the person on the left': \d+\.\d% of the image "
                   "protected", text), text
  figures = [o for o in outputs if "image/png" in o.get("data", {})]
  assert len(figures) == 2  # The example grid and the own-sentence row.
