"""Training and evaluation input pipelines on an in-memory source of encoded records."""

import io
import itertools
import subprocess
import sys
import time

import cv2
import grain
import numpy as np
from PIL import Image
import pytest

from brppnet_jax.data import letterbox
from brppnet_jax.data import pipeline
from brppnet_jax.data import sources
from brppnet_jax.data import transforms
from brppnet_jax.data import vocab as vocab_lib
from brppnet_jax.data import word_vectors
from configs import default

import conftest


def _ids(batch, record_vocab) -> list[tuple[int, int]]:
  """(ref, expression) of each row, read back from the tokens."""
  out = []
  for row in batch["tokens"]:
    words = record_vocab.decode(row).split()
    out.append((int(words[3][3:]), int(words[4][1:])))
  return out


def _train(record_config, record_source, record_vocab, **kwargs):
  kwargs.setdefault("seed", 0)
  return pipeline.create_train_iterator(record_config, record_source, record_vocab, **kwargs)


def _assert_batches_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for k in x:
      np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_train_rows_are_the_letterboxed_examples(record_config, record_source, record_vocab):
  batch = next(_train(record_config, record_source, record_vocab))
  assert batch["image"].shape == (4, 32, 32, 3) and batch["image"].dtype == np.uint8
  assert batch["geometry"].shape == (4, 4) and batch["geometry"].dtype == np.int32
  assert batch["tokens"].shape == (4, 8) and batch["tokens"].dtype == np.int32
  assert batch["mask"].shape == (4, 16, 16, 1) and batch["mask"].dtype == np.float32
  for row, (ref, j) in enumerate(_ids(batch, record_vocab)):
    record = record_source[ref]
    rgb = transforms.decode_rgb(record["image"], "test")
    mask = transforms.decode_mask(record["mask"], "test")
    image, geometry = letterbox.letterbox_uint8(rgb, 32)
    np.testing.assert_array_equal(batch["image"][row], image)
    assert tuple(batch["geometry"][row]) == geometry
    np.testing.assert_array_equal(  # What the model sees, rebuilt as the device does it.
        letterbox.canvas_to_float(batch["image"][row], batch["geometry"][row]),
        letterbox.letterbox_image(rgb, 32))
    np.testing.assert_array_equal(batch["mask"][row, ..., 0], letterbox.letterbox_mask(mask, 32, 2))
    np.testing.assert_array_equal(batch["tokens"][row],
                                  record_vocab.encode(f"protect privacy of ref{ref} s{j}", 8))


def test_each_epoch_visits_distinct_refs_in_a_new_order(record_config, record_source, record_vocab):
  batches = list(_train(record_config, record_source, record_vocab, num_epochs=3))
  assert len(batches) == 3 * (conftest.NUM_RECORDS // 4)  # 2 steps per epoch, 2 refs sit out.
  epochs = [[ref for b in batches[e:e + 2] for ref, _ in _ids(b, record_vocab)] for e in (0, 2, 4)]
  for refs in epochs:
    assert len(set(refs)) == 8
  assert epochs[0] != epochs[1] != epochs[2]


def test_each_visit_draws_one_of_the_ref_expressions(record_config, record_source, record_vocab):
  drawn = {ref: set() for ref in range(conftest.NUM_RECORDS)}
  for batch in _train(record_config, record_source, record_vocab, num_epochs=15):
    for ref, j in _ids(batch, record_vocab):
      drawn[ref].add(j)
  # Ref i has 1 + i % 3 expressions; over 15 epochs every one is drawn.
  assert drawn == {ref: set(range(1 + ref % 3)) for ref in range(conftest.NUM_RECORDS)}


def test_same_seed_same_batches_other_seed_other_order(record_config, record_source, record_vocab):
  first = list(_train(record_config, record_source, record_vocab, num_epochs=2))
  _assert_batches_equal(first, list(_train(record_config, record_source, record_vocab,
                                           num_epochs=2)))
  other = list(_train(record_config, record_source, record_vocab, num_epochs=2, seed=1))
  assert [_ids(b, record_vocab) for b in first] != [_ids(b, record_vocab) for b in other]


def test_processes_split_every_global_batch(record_config, record_source, record_vocab):
  whole = list(_train(record_config, record_source, record_vocab, num_epochs=2))
  parts = [list(_train(record_config, record_source, record_vocab, num_epochs=2, process_index=p,
                       process_count=2))
           for p in range(2)]
  assert len(parts[0]) == len(parts[1]) == len(whole)
  for step, batch in enumerate(whole):
    halves = [parts[p][step] for p in range(2)]
    assert set(_ids(halves[0], record_vocab)).isdisjoint(_ids(halves[1], record_vocab))
    for key in batch:
      np.testing.assert_array_equal(np.concatenate([h[key] for h in halves]), batch[key])


def test_batch_size_must_divide_among_processes(record_config, record_source, record_vocab):
  with pytest.raises(ValueError, match=r"config.batch_size=4 must be a positive multiple of "
                                       r"the process count 3"):
    _train(record_config, record_source, record_vocab, process_index=0, process_count=3)


def test_source_smaller_than_a_batch_is_an_error(record_config, record_source, record_vocab):
  record_config.batch_size = 12
  with pytest.raises(ValueError, match="10 refs, fewer than config.batch_size=12"):
    _train(record_config, record_source, record_vocab)


@pytest.mark.parametrize("num_epochs", [None, 4])
def test_restored_state_resumes_with_the_next_batch(record_config, record_source, record_vocab,
                                                    num_epochs):
  it = _train(record_config, record_source, record_vocab, num_epochs=num_epochs)
  for _ in range(3):  # Across the first epoch boundary.
    next(it)
  state = it.get_state()
  expected = [next(it) for _ in range(3)]
  fresh = _train(record_config, record_source, record_vocab, num_epochs=num_epochs)
  fresh.set_state(state)
  _assert_batches_equal([next(fresh) for _ in range(3)], expected)


def test_orbax_async_checkpoint_resumes_with_the_next_batch(tmp_path, record_config, record_source,
                                                            record_vocab):
  ocp = pytest.importorskip("orbax.checkpoint")
  options = ocp.CheckpointManagerOptions(enable_async_checkpointing=True)
  with ocp.CheckpointManager(tmp_path / "ckpt", options=options) as manager:
    it = _train(record_config, record_source, record_vocab)
    for _ in range(3):
      next(it)
    manager.save(3, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
    expected = [next(it) for _ in range(3)]  # While the save may still run.
    manager.wait_until_finished()
    fresh = _train(record_config, record_source, record_vocab)
    manager.restore(3, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(fresh)))
  _assert_batches_equal([next(fresh) for _ in range(3)], expected)


def test_worker_processes_give_the_same_batches_and_resume(record_config, record_source,
                                                           record_vocab):
  expected = list(itertools.islice(_train(record_config, record_source, record_vocab), 5))
  record_config.dataset.num_workers = 2
  it = _train(record_config, record_source, record_vocab)
  got = [next(it) for _ in range(2)]
  state = it.get_state()
  it.close()
  fresh = _train(record_config, record_source, record_vocab)
  fresh.set_state(state)
  got += [next(fresh) for _ in range(3)]
  fresh.close()
  _assert_batches_equal(got, expected)


def test_mismatched_mask_error_names_the_ref(record_config, record_source, record_vocab):
  bad = [dict(r) for r in record_source]
  for r in bad:
    r["mask"] = cv2.imencode(".png", np.zeros((10, 12), np.uint8))[1].tobytes()
  with pytest.raises(ValueError, match=r"ref_id 1\d\d: mask is 12x10 but the image is \d+x\d+"):
    next(_train(record_config, bad, record_vocab))


def test_undecodable_image_error_names_the_ref(record_config, record_source, record_vocab):
  bad = [dict(r, image=b"not a jpeg") for r in record_source]
  with pytest.raises(ValueError, match=r"ref_id 1\d\d: cannot decode the image \(10 bytes\)"):
    next(_train(record_config, bad, record_vocab))


def _all_expressions(record_source):
  return [(i, j) for i in range(conftest.NUM_RECORDS) for j in range(1 + i % 3)]


def test_eval_runs_every_expression_once_with_its_fields(record_config, record_source,
                                                         record_vocab):
  batches = list(pipeline.create_eval_iterator(record_config, record_source, record_vocab))
  expressions = _all_expressions(record_source)
  assert sources.count_expressions(record_source) == len(expressions) == 19
  assert len(batches) == 5
  seen = []
  for batch in batches:
    assert batch["valid"].dtype == bool and batch["ref_id"].dtype == np.int64
    assert batch["geometry"].shape == (4, 4) and batch["orig_size"].shape == (4, 2)
    for row in np.flatnonzero(batch["valid"]):
      ref, j = int(batch["ref_id"][row]) - 100, int(batch["sentence_index"][row])
      seen.append((ref, j))
      record = record_source[ref]
      rgb = np.asarray(Image.open(io.BytesIO(record["image"])).convert("RGB"))
      np.testing.assert_array_equal(batch["orig_images"][row], rgb)  # Decoded as PIL does.
      mask = cv2.imdecode(np.frombuffer(record["mask"], np.uint8), cv2.IMREAD_GRAYSCALE)
      np.testing.assert_array_equal(batch["gt_masks"][row], mask)
      h, w = mask.shape
      assert tuple(batch["orig_size"][row]) == (h, w)
      assert tuple(batch["geometry"][row]) == letterbox.letterbox_geometry(w, h, 32)
      assert batch["sentence"][row] == f"protect privacy of ref{ref} s{j}"
      np.testing.assert_array_equal(batch["image"][row], letterbox.letterbox_uint8(rgb, 32)[0])
      np.testing.assert_array_equal(
          letterbox.canvas_to_float(batch["image"][row], batch["geometry"][row]),
          letterbox.letterbox_image(rgb, 32))
      np.testing.assert_array_equal(batch["mask"][row, ..., 0],
                                    letterbox.letterbox_mask(mask, 32, 2))
      assert _ids({"tokens": batch["tokens"][row:row + 1]}, record_vocab) == [(ref, j)]
  assert seen == expressions


def test_eval_pads_the_last_batch(record_config, record_source, record_vocab):
  record_config.eval_batch_size = 8
  last = list(pipeline.create_eval_iterator(record_config, record_source, record_vocab))[-1]
  # 19 expressions: batches of 8, 8 and 3 + 5 padding rows.
  assert last["valid"].tolist() == [True] * 3 + [False] * 5
  assert last["ref_id"][3:].tolist() == [-1] * 5
  assert last["gt_masks"][3:] == [None] * 5 and last["orig_images"][3:] == [None] * 5
  assert last["sentence"][3:] == [""] * 5
  assert not last["tokens"][3:].any() and not last["mask"][3:].any()
  assert not last["geometry"][3:].any()  # All canvas: the model sees 0.5 everywhere.
  np.testing.assert_array_equal(
      letterbox.canvas_to_float(last["image"][3], last["geometry"][3]), 0.5)


def test_eval_carries_originals_only_for_the_first_max_images_rows(record_config, record_source,
                                                                   record_vocab):
  batches = list(pipeline.create_eval_iterator(record_config, record_source, record_vocab,
                                               max_images=3))
  carried = [image is not None for b in batches for image in b["orig_images"]]
  assert carried == [True] * 3 + [False] * (len(carried) - 3)


def test_num_workers_default_is_one_per_available_cpu_but_one(monkeypatch):
  assert default.get_config().dataset.num_workers == pipeline.AUTO_WORKERS == -1
  monkeypatch.setattr(pipeline, "available_cpus", lambda: 16)
  assert pipeline.resolve_num_workers(-1) == 15
  monkeypatch.setattr(pipeline, "available_cpus", lambda: 1)
  assert pipeline.resolve_num_workers(-1) == 0
  assert pipeline.resolve_num_workers(3) == 3
  with pytest.raises(ValueError, match=r"config.dataset.num_workers must be an int >= 0, or -1 "
                                       r"for one per available CPU but one; got -2"):
    pipeline.resolve_num_workers(-2)


@pytest.mark.parametrize("process_count, eval_batch_size", [(2, 4), (3, 6)])
def test_eval_processes_share_expressions_and_batch_count(record_config, record_source,
                                                          record_vocab, process_count,
                                                          eval_batch_size):
  record_config.eval_batch_size = eval_batch_size
  parts = []
  for p in range(process_count):
    batches = list(pipeline.create_eval_iterator(
        record_config, record_source, record_vocab, process_index=p, process_count=process_count,
        include_images=False))
    parts.append([(int(b["ref_id"][r]) - 100, int(b["sentence_index"][r]))
                  for b in batches for r in np.flatnonzero(b["valid"])])
    assert all(len(b["valid"]) == eval_batch_size // process_count for b in batches)
    assert "orig_images" not in batches[0]
    if p == 0:
      num_batches = len(batches)
    assert len(batches) == num_batches
  assert sorted(itertools.chain(*parts)) == _all_expressions(record_source)


def test_eval_max_examples_keeps_the_first_expressions(record_config, record_source, record_vocab):
  record_config.eval_max_examples = 7
  batches = list(pipeline.create_eval_iterator(record_config, record_source, record_vocab))
  seen = [(int(b["ref_id"][r]) - 100, int(b["sentence_index"][r]))
          for b in batches for r in np.flatnonzero(b["valid"])]
  assert seen == _all_expressions(record_source)[:7]
  assert len(batches) == 2


def test_load_vocab_from_directory_or_file(tmp_path, record_vocab):
  record_vocab.save(tmp_path / "vocab.txt")
  assert sources.load_vocab(tmp_path) == record_vocab
  assert sources.load_vocab(str(tmp_path / "vocab.txt")) == record_vocab
  with pytest.raises(FileNotFoundError, match=f"no vocabulary file {tmp_path / 'x' / 'vocab.txt'}"):
    (tmp_path / "x").mkdir()
    sources.load_vocab(tmp_path / "x")


def test_load_embeddings_learned(tmp_path, record_config, record_vocab):
  record_config.model.fixed_word_vectors = False
  assert word_vectors.load_embeddings(record_config, record_vocab) is None
  record_config.model.embed_dim = 2
  path = tmp_path / "glove.txt"
  path.write_text("privacy 0.5 -1.0\nzebra 3 4\nprivacy 9 9\n")
  record_config.dataset.word_vectors = str(path)
  table = word_vectors.load_embeddings(record_config, record_vocab)
  assert table.shape == (len(record_vocab), 2)
  np.testing.assert_array_equal(table[record_vocab.encode("privacy", 1)[0]], [0.5, -1.0])
  assert np.all(table[vocab_lib.UNK_ID] != 0) and np.all(table[vocab_lib.PAD_ID] == 0)
  record_config.dataset.word_vectors = str(tmp_path / "missing.txt")
  with pytest.raises(FileNotFoundError, match="config.dataset.word_vectors: no file .*missing"):
    word_vectors.load_embeddings(record_config, record_vocab)


def test_load_embeddings_fixed_are_zero_for_words_the_file_lacks(tmp_path, record_config,
                                                                 record_vocab):
  assert record_config.model.fixed_word_vectors  # The original's mode is the default.
  with pytest.raises(ValueError, match="fixed_word_vectors=True needs config.dataset.word_vectors"):
    word_vectors.load_embeddings(record_config, record_vocab)
  record_config.model.embed_dim = 2
  path = tmp_path / "glove.txt"
  path.write_text("privacy 0.5 -1.0\nzebra 3 4\n")
  record_config.dataset.word_vectors = str(path)
  table = word_vectors.load_embeddings(record_config, record_vocab)
  privacy = record_vocab.encode("privacy", 1)[0]
  np.testing.assert_array_equal(table[privacy], [0.5, -1.0])
  others = np.delete(table, privacy, axis=0)
  assert not np.any(others)


def test_decode_ignores_exif_orientation_and_expands_grey():
  rgb = np.zeros((20, 30, 3), np.uint8)
  rgb[:, :15] = 255
  exif = Image.Exif()
  exif[0x0112] = 6  # "Rotate 90 CW" when displayed; pixels and masks stay as stored.
  buf = io.BytesIO()
  Image.fromarray(rgb).save(buf, "JPEG", exif=exif.tobytes())
  assert transforms.decode_rgb(buf.getvalue(), "test").shape == (20, 30, 3)
  grey = cv2.imencode(".jpg", np.full((5, 6), 200, np.uint8))[1].tobytes()
  out = transforms.decode_rgb(grey, "test")
  assert out.shape == (5, 6, 3) and np.all(np.abs(out.astype(int) - 200) <= 1)


def test_benchmark_records_are_valid_640x480_examples():
  from brppnet_jax.measure import pipeline_stages  # pylint: disable=g-import-not-at-top
  records = [pipeline_stages.synthetic_record(i) for i in range(3)]
  rgb = transforms.decode_rgb(records[0]["image"], "bench")
  mask = transforms.decode_mask(records[0]["mask"], "bench")
  assert rgb.shape == (480, 640, 3) and mask.shape == (480, 640)
  assert set(np.unique(mask)) == {0, 255}
  stages = pipeline_stages.stage_times(records, 64, 2, 15)
  assert set(stages) == {"decode_jpeg", "decode_png", "letterbox_image", "letterbox_mask",
                         "tokenize", "example_total", "float32_letterbox_reference",
                         "pil_bicubic_resize_reference"}
  assert all(ms > 0 for ms in stages.values())


_WORKER_PARENT = """
import multiprocessing, sys
sys.path.insert(0, "tests")
import conftest
from brppnet_jax.data import pipeline, transforms, vocab as vocab_lib
from configs import default
config = default.get_config()
config.dataset.input_size, config.dataset.word_len, config.batch_size = 32, 8, 4
config.dataset.num_workers = 1
source = [conftest.encoded_record(i) for i in range(conftest.NUM_RECORDS)]
vocab = vocab_lib.Vocabulary.build(
    transforms.as_text(s) for r in source for s in r["sentences"])
it = pipeline.create_train_iterator(config, source, vocab, seed=0)
next(it)
print(*[p.pid for p in multiprocessing.active_children()], flush=True)
sys.stdin.read()  # Until killed.
"""


def _alive(pid: int) -> bool:
  try:
    with open(f"/proc/{pid}/status", encoding="utf-8") as f:
      return "zombie" not in f.read().lower()
  except FileNotFoundError:
    return False


def test_workers_end_when_the_trainer_is_killed():
  proc = subprocess.Popen([sys.executable, "-c", _WORKER_PARENT], cwd=conftest.REPO,
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
  try:
    workers = [int(pid) for pid in proc.stdout.readline().split()]
  finally:
    proc.kill()
    proc.wait()
  assert workers
  deadline = time.time() + 30
  while any(_alive(pid) for pid in workers) and time.time() < deadline:
    time.sleep(0.2)
  assert not any(_alive(pid) for pid in workers)
