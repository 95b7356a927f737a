"""notebooks/evaluate_checkpoint.ipynb runs top to bottom on a freshly trained workdir.

The README's headless command is `jupyter execute`; the test runs the same notebook through
nbclient (what `jupyter execute` calls) with a kernel spec for this interpreter.
"""

import json
import re
import shutil
import sys

from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
import nbformat
import pytest

from brppnet_jax.evaluation import analysis
from brppnet_jax.protect import hiding

from conftest import ONE_DEVICE
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


@pytest.fixture
def kernel(tmp_path, monkeypatch):
  """A kernel spec for this interpreter, so the notebook runs with the project's packages."""
  spec = tmp_path / "jupyter" / "kernels" / KERNEL
  spec.mkdir(parents=True)
  (spec / "kernel.json").write_text(json.dumps({
      "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
      "display_name": KERNEL, "language": "python"}))
  monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
  monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
  monkeypatch.setenv("XLA_FLAGS", "")  # One CPU device is enough and compiles faster.
  monkeypatch.delenv("BRPPNET_REPO", raising=False)
  return KERNEL


def execute(path, kernel_name):
  """The notebook at `path` executed in its own folder, as `jupyter execute` runs it."""
  notebook = nbformat.read(path, as_version=4)
  NotebookClient(notebook, kernel_name=kernel_name, timeout=300,
                 resources={"metadata": {"path": str(path.parent)}}).execute()
  return notebook


def test_notebook_evaluates_the_workdir_and_protects_a_sentence(trained_workdir, synthetic_dataset,
                                                                kernel, monkeypatch):
  monkeypatch.setenv("BRPPNET_WORKDIR", str(trained_workdir))
  monkeypatch.setenv("BRPPNET_MAX_EXAMPLES", "40")
  notebook = execute(NOTEBOOK, kernel)

  outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
  text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
  # The metrics are those `--mode=eval` gives for the same workdir and expressions.
  proc = run_module("brppnet_jax.main", "--config=configs/synthetic.py",
                    f"--workdir={trained_workdir}", "--mode=eval",
                    f"--config.dataset.data_dir={synthetic_dataset / 'tfds'}",
                    "--config.eval_max_examples=40", env=ONE_DEVICE)
  from_eval_mode = printed_table(proc.stdout)
  assert from_eval_mode["num_expressions"] == "40" and float(from_eval_mode["miou"]) > 0
  assert printed_table(text) == {k: v for k, v in from_eval_mode.items()
                                 if k not in ("step", "split")}
  assert f"repository {REPO}" in text
  # The analyses' pass scores the same expressions: both mIoUs as the metric table has them.
  both = re.search(r"40 expressions: mIoU (\S+) at the paper's threshold \(> 0.35\), (\S+) on "
                   rf"the protected mask \(>= {hiding.MASK_THRESHOLD}\)", text)
  assert both and both.groups() == (from_eval_mode["miou"], from_eval_mode["miou_protected"])
  histogram = [int(n) for n in re.findall(r"^IoU \d\.\d-\d\.\d: +(\d+)", text, re.MULTILINE)]
  assert len(histogram) == 10 and sum(histogram) == 40
  sweep = re.findall(r"^(0\.\d\d0) +(\S+) +(\S+) +(\S+)$", text, re.MULTILINE)
  assert [float(t) for t, *_ in sweep] == list(analysis.SWEEP_THRESHOLDS)
  by_threshold = {float(t): float(m) for t, m, _, _ in sweep}
  assert by_threshold[hiding.MASK_THRESHOLD] == pytest.approx(
      float(from_eval_mode["miou_protected"]), abs=6e-4)
  worst = re.findall(r"^worst: IoU (\S+)  (\S+)  '", text, re.MULTILINE)
  assert len(worst) == 6 and len({image for _, image in worst}) == 6  # Distinct images.
  assert [float(v) for v, _ in worst] == sorted(float(v) for v, _ in worst)
  aspects = {line.split()[0] for line in text.splitlines()
             if re.fullmatch(r"\w+ +\S+ +\d+ +[\d.]+ +[\d.]+ +[\d.]+", line)}
  assert aspects == {"colour", "position", "size", "people"}
  assert re.search(r"\d+ of 40 expressions \(\d+\.\d%\) protect another person more", text)
  assert re.search(r"'protect privacy of the person on the left': \d+\.\d% of the image "
                   "protected", text), text
  figures = [o for o in outputs if "image/png" in o.get("data", {})]
  assert len(figures) == 4  # Histogram, sweep, worst-expressions gallery, own sentence.


def test_a_copy_outside_a_repository_says_to_set_brppnet_repo(kernel, tmp_path):
  """Copied beside a clone, the notebook does not guess which repository to use."""
  (tmp_path / "clone" / "brppnet_jax").mkdir(parents=True)
  (tmp_path / "clone" / "brppnet_jax" / "__init__.py").write_text("")
  copy = tmp_path / "evaluate_checkpoint.ipynb"
  shutil.copy(NOTEBOOK, copy)
  with pytest.raises(CellExecutionError) as error:
    execute(copy, kernel)
  assert (f"{copy} is not a repository's notebooks/evaluate_checkpoint.ipynb; set "
          "BRPPNET_REPO to the repository root") in str(error.value)
