"""A short training run and an evaluation with everything in a bucket (gs://), offline.

tests/memory_gcs.py routes gs:// of etils/fsspec, TensorStore, google-cloud-storage and
ArrayRecord's own GCS client to one in-memory store: the data is read from the bucket (by
Grain, through ArrayRecord), and the checkpoints, eval_metrics.jsonl and compilation cache
are written there, the workdir URL never turning into a local folder. Then the bucket refuses
writes (permission lost): the next save stops the run with one line, and loses nothing.
"""

import json
import os
import shutil
import subprocess

from PIL import Image

from conftest import ONE_DEVICE
from conftest import PYTHON
from conftest import REPO

OVERRIDES = {"total_steps": 4, "checkpoint_every_steps": 2, "eval_every_steps": 4,
             "eval_max_examples": 16, "eval_batch_size": 8, "num_image_summaries": 1,
             "log_every_steps": 2,
             # Worker processes would not see the in-memory store; in-process reading does.
             "dataset.num_workers": 0}


def test_training_and_evaluation_read_and_write_only_the_bucket(synthetic_dataset, tmp_path):
  image = next((synthetic_dataset / "raw" / "images" / "train2014").iterdir())
  (tmp_path / "photo").mkdir()
  shutil.copy(image, tmp_path / "photo" / image.name)
  out = tmp_path / "result.json"
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **ONE_DEVICE}
  proc = subprocess.run(
      [PYTHON, str(REPO / "tests" / "memory_gcs.py"), str(synthetic_dataset / "tfds"),
       str(tmp_path / "photo" / image.name), str(out), json.dumps(OVERRIDES)],
      cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-5000:]
  result = json.loads(out.read_text())
  keys = result["keys"]
  for step in (2, 4):
    for item in ("state/manifest.ocdbt", "checksums/metadata", "config/metadata",
                 "vocab/metadata", "data/process_0-of-1.json", "commit_success.txt"):
      assert f"/bucket/run/checkpoints/{step}/{item}" in keys, (step, item)
  assert any(k.startswith("/bucket/run/compilation_cache/jit_train_step-") for k in keys)
  records = [json.loads(line) for line in result["eval_metrics"] + result["eval_mode"]]
  assert [(r["step"], r.get("split")) for r in records] == [(4, None), (4, "test")]
  assert records[0]["num_expressions"] == records[1]["num_expressions"] == 16
  assert records[0]["miou"] == records[1]["miou"]  # Restored from the bucket exactly.
  assert result["evaluated_step"] == result["predictor_step"] == 4
  assert result["summary_dirs"] == ["gs://bucket/run"]
  with Image.open(image) as photo:
    assert result["mask_shape"] == [photo.height, photo.width]  # Read from gs://bucket/photos.
  assert sorted(p.name for p in tmp_path.iterdir()) == ["photo", "result.json"]  # No "gs:".
  # Permission lost: the save of step 6 failed in one line, step 4 is intact, no step 6 is left.
  assert result["denied_error"] == (
      "checkpoint step 6 could not be written to gs://bucket/run/checkpoints/6: permission "
      "denied; the newest intact checkpoint is step 4")
  after = result["checkpoint_keys_after_denial"]
  assert not [k for k in after if k.startswith("/bucket/run/checkpoints/6")], after
  assert [k for k in keys if k.startswith("/bucket/run/checkpoints/")] == after
