"""The rpcoco TFDS builder, its CLI, bad input and the REFER route."""

import io
import json
import os
import pathlib
import pickle
import shutil
import subprocess
import sys

from absl import flags
from absl.testing import flagsaver
import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from brppnet_jax.data import build
from brppnet_jax.data import records
from brppnet_jax.data import rpcoco
from brppnet_jax.data import vocab as vocab_lib

from conftest import REPO

TESTDATA = REPO / "tests" / "testdata" / "rpcoco"
SHARED_RPCOCO = REPO.parent / "shared" / "rpcoco"


class _TfrecordBuilderTestCase(tfds.testing.DatasetBuilderTestCase):
  """TFDS's standard checks read through `as_dataset`, which ArrayRecord files lack."""
  __test__ = False

  def _make_builder(self, config=None):
    return self.dataset_class(data_dir=self.tmp_dir, config=config, version=self.VERSION,
                              file_format="tfrecord")


class RpcocomBuilderTest(_TfrecordBuilderTestCase):
  __test__ = True
  DATASET_CLASS = rpcoco.Rpcoco
  BUILDER_CONFIG_NAMES_TO_TEST = ["rpcocom"]
  EXAMPLE_DIR = str(TESTDATA)
  SPLITS = {"train": 3, "testA": 2}
  SKIP_CHECKSUMS = True


class SyntheticBuilderTest(_TfrecordBuilderTestCase):
  __test__ = True
  DATASET_CLASS = rpcoco.Rpcoco
  BUILDER_CONFIG_NAMES_TO_TEST = ["synthetic"]
  EXAMPLE_DIR = str(TESTDATA)
  SPLITS = {"train": 4, "test": 5}
  SKIP_CHECKSUMS = True


def _prepare(config, manual_dir, data_dir, **kwargs):
  builder = rpcoco.Rpcoco(config=config, data_dir=data_dir, **kwargs)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=manual_dir, compute_stats=tfds.download.ComputeStatsMode.SKIP))
  return builder


def _released(split, variant="rpcocom", root=TESTDATA):
  return json.loads((root / f"anns/{variant}/{split}.json").read_text())


def test_round_trip_keeps_jpeg_bytes_masks_and_texts(tmp_path):
  builder = _prepare("rpcocom", TESTDATA, tmp_path)
  assert builder.info.file_format == tfds.core.FileFormat.ARRAY_RECORD
  assert builder.data_dir == str(tmp_path / "rpcoco/rpcocom/1.0.0")
  for split in ("train", "testA"):
    source = tfds.data_source("rpcoco/rpcocom", split=split, data_dir=tmp_path,
                              decoders={"image": tfds.decode.SkipDecoding()})
    examples = {int(ex["ref_id"]): ex for ex in source}
    entries = _released(split)
    assert sorted(examples) == sorted(e["segment_id"] for e in entries)
    for entry in entries:
      ex = examples[entry["segment_id"]]
      image_file = TESTDATA / "images/train2014" / entry["img_name"]
      assert ex["image"] == image_file.read_bytes()  # The original JPEG, not re-encoded.
      mask = np.asarray(Image.open(TESTDATA / f"masks/rpcocom/{entry['segment_id']}.png"))
      np.testing.assert_array_equal(ex["mask"][..., 0], mask)
      assert [s.decode() for s in ex["sentences"]] == [s["sent"] for s in entry["sentences"]]
      assert ex["image_name"].decode() == entry["img_name"]
      np.testing.assert_array_equal(ex["bbox"], entry["bbox"])
      assert ex["bbox"].dtype == np.int32
  train_sentences = [s["sent"] for e in _released("train") for s in e["sentences"]]
  vocab = vocab_lib.Vocabulary.load(rpcoco.vocab_path(builder.data_dir))
  assert vocab == vocab_lib.Vocabulary.build(train_sentences)
  assert builder.info.metadata["expressions"] == {"train": 4, "testA": 4}


_READ_BACK = """
import json, sys
import tensorflow_datasets as tfds
builder = tfds.builder_from_directory(sys.argv[1])
by_dir = {s: sorted(int(ex["ref_id"]) for ex in builder.as_data_source(split=s))
          for s in builder.info.splits}
source = tfds.data_source("rpcoco/rpcocom", split="testA", data_dir=sys.argv[2])
ex = source[0]
print(json.dumps({"by_dir": by_dir, "testA": len(source), "mask": list(ex["mask"].shape),
                  "ours": [m for m in sys.modules if m.startswith("brppnet_jax")]}))
"""


def test_read_back_without_our_package(tmp_path):
  builder = _prepare("rpcocom", TESTDATA, tmp_path / "data")
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  result = subprocess.run(
      [sys.executable, "-c", _READ_BACK, builder.data_dir, str(tmp_path / "data")],
      cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=True)
  out = json.loads(result.stdout.strip().splitlines()[-1])
  assert out["by_dir"] == {"train": [45, 46, 47], "testA": [101, 102]}
  assert out["testA"] == 2 and out["mask"] == [30, 40, 1] and out["ours"] == []


def _jpeg(width, height, mode="RGB"):
  buffer = io.BytesIO()
  Image.new(mode, (width, height), 90).save(buffer, format="JPEG")
  return buffer.getvalue()


def _png(array):
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format="PNG")
  return buffer.getvalue()


def _write_layout(root, split_refs, variant="rpcocom"):
  """Writes a released layout: split -> [(segment_id, image bytes, mask bytes, texts)]."""
  for sub in (f"anns/{variant}", f"masks/{variant}", "images/train2014"):
    (root / sub).mkdir(parents=True, exist_ok=True)
  for split, refs in split_refs.items():
    entries = []
    for ref_id, image, mask, texts in refs:
      name = f"COCO_train2014_{ref_id:012d}.jpg"
      if image is not None:
        (root / "images/train2014" / name).write_bytes(image)
      if mask is not None:
        (root / f"masks/{variant}/{ref_id}.png").write_bytes(mask)
      entries.append({"bbox": [1, 1, 5, 5], "cat": 0, "segment_id": ref_id, "img_name": name,
                      "sentences": [{"idx": i, "sent_id": i, "sent": t}
                                    for i, t in enumerate(texts)],
                      "sentences_num": len(texts)})
    (root / f"anns/{variant}/{split}.json").write_text(json.dumps(entries))


_GOOD_MASK = _png(np.full((24, 32), 255, np.uint8))
_TEXT = ["protect privacy of man"]
# ref id -> (image, mask, texts, fragment the error must show).
_BAD_REFS = {
    11: (None, _GOOD_MASK, _TEXT,
         "ref 11: image images/train2014/COCO_train2014_000000000011.jpg missing"),
    12: (b"not a jpeg at all", _GOOD_MASK, _TEXT,
         "ref 12: image images/train2014/COCO_train2014_000000000012.jpg undecodable"),
    13: (_jpeg(32, 24)[:300], _GOOD_MASK, _TEXT,
         "ref 13: image images/train2014/COCO_train2014_000000000013.jpg undecodable"),
    14: (_jpeg(32, 24), None, _TEXT, "ref 14: mask masks/rpcocom/14.png missing"),
    15: (_jpeg(32, 24), b"\x89PNG broken", _TEXT,
         "ref 15: mask masks/rpcocom/15.png undecodable"),
    16: (_jpeg(32, 24), _png(np.zeros((20, 32), np.uint8)), _TEXT,
         "ref 16: mask masks/rpcocom/16.png is 32x20 but image "
         "images/train2014/COCO_train2014_000000000016.jpg "
         "is 32x24"),
    17: (_jpeg(32, 24), _GOOD_MASK, [], "ref 17: no sentence"),
    18: (_jpeg(32, 24), _png(np.zeros((24, 32, 3), np.uint8)), _TEXT,
         "ref 18: mask masks/rpcocom/18.png has mode RGB, expected 8-bit grayscale"),
}


@pytest.fixture(name="bad_layout")
def _bad_layout(tmp_path):
  root = tmp_path / "manual"
  good = [(1, _jpeg(32, 24), _GOOD_MASK, _TEXT), (2, _jpeg(32, 24, "L"), _GOOD_MASK, _TEXT)]
  _write_layout(root, {
      "train": good + [(i, im, m, t) for i, (im, m, t, _) in _BAD_REFS.items()],
      "testA": [(3, _jpeg(32, 24), _GOOD_MASK, _TEXT), (19, None, None, _TEXT)],
  })
  return root


def test_bad_refs_stop_the_build_naming_every_one(bad_layout, tmp_path):
  with pytest.raises(records.BadRefsError) as error:
    _prepare("rpcocom", bad_layout, tmp_path / "data")
  message = str(error.value)
  assert "\n" not in message
  assert message.startswith(f"{len(_BAD_REFS)} bad refs in anns/rpcocom/train.json: ")
  for *_, fragment in _BAD_REFS.values():
    assert fragment in message
  assert "1 bad ref in anns/rpcocom/testA.json: ref 19: image " in message
  assert "ref 19: mask masks/rpcocom/19.png missing" in message
  assert "ref 1:" not in message and "ref 2:" not in message and "ref 3:" not in message
  assert not (tmp_path / "data/rpcoco/rpcocom/1.0.0").exists()


def test_skip_bad_builds_the_rest_and_records_why(bad_layout, tmp_path):
  builder = _prepare("rpcocom", bad_layout, tmp_path / "data", skip_bad=True)
  assert {s: i.num_examples for s, i in builder.info.splits.items()} == {"train": 2, "testA": 1}
  lines = build.summary(builder)
  assert "  skipped 8 bad refs of train (anns/rpcocom/train.json): image missing: 1, " \
         "image undecodable: 2, mask missing: 1, mask undecodable: 2, no sentence: 1, " \
         "size mismatch: 1; see metadata.json" in lines
  assert any(line.startswith("  skipped 1 bad refs of testA") for line in lines)
  # Saved beside the data, so a reader that does not rebuild still sees it.
  saved = json.loads((pathlib.Path(builder.data_dir) / "metadata.json").read_text())
  assert saved["skipped"]["train"]["count"] == 8
  assert saved["skipped"]["testA"]["refs"][0].startswith("ref 19: image ")
  ids = sorted(int(ex["ref_id"]) for ex in builder.as_data_source(split="train"))
  assert ids == [1, 2]


def test_cli_skip_bad_prints_counts(bad_layout, tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "brppnet_jax.data.build", "--dataset=rpcoco/rpcocom",
       f"--manual_dir={bad_layout}", f"--data_dir={tmp_path / 'data'}", "--skip_bad"],
      cwd=REPO, capture_output=True, text=True, timeout=180, check=True)
  out = result.stdout
  assert f"in {tmp_path / 'data/rpcoco/rpcocom/1.0.0'}" in out
  assert "  train: 2 refs, 2 expressions" in out and "  testA: 1 refs, 1 expressions" in out
  assert "skipped 8 bad refs of train" in out
  assert f"vocabulary: {tmp_path / 'data/rpcoco/rpcocom/1.0.0/vocab.txt'} (6 words)" in out


def test_cli_reports_bad_refs_in_one_line(bad_layout, tmp_path):
  argv = ["build", "--dataset=rpcocom", f"--manual_dir={bad_layout}",
          f"--data_dir={tmp_path / 'data'}"]
  with flagsaver.flagsaver():
    flags.FLAGS(argv)
    with pytest.raises(SystemExit) as exit_info:
      build.main([])
  message = str(exit_info.value.code)
  assert message.startswith("build failed: 8 bad refs in anns/rpcocom/train.json: ")
  assert "\n" not in message


@pytest.mark.parametrize("content, fragment", [
    (None, "annotation file anns/rpcocom/train.json missing"),
    ("[{\"segment_id\": 1,", "annotation file anns/rpcocom/train.json is not valid JSON"),
    ("{\"a\": 1}", "annotation file anns/rpcocom/train.json holds a dict"),
])
def test_unreadable_annotation_file_is_named(tmp_path, content, fragment):
  _write_layout(tmp_path, {"testA": [(3, _jpeg(32, 24), _GOOD_MASK, _TEXT)]})
  if content is not None:
    (tmp_path / "anns/rpcocom/train.json").write_text(content)
  with pytest.raises((ValueError, FileNotFoundError), match=fragment):
    _prepare("rpcocom", tmp_path, tmp_path / "data")


def test_only_some_splits(tmp_path):
  _write_layout(tmp_path / "manual", {"testA": [(3, _jpeg(32, 24), _GOOD_MASK, _TEXT)]})
  builder = _prepare("rpcocom", tmp_path / "manual", tmp_path / "data", splits=["testA"])
  assert list(builder.info.splits) == ["testA"]
  assert not rpcoco.vocab_path(builder.data_dir).exists()  # No train split, no vocabulary.
  with pytest.raises(ValueError, match=r"config rpcocom has splits \['train', 'testA'\]"):
    _prepare("rpcocom", tmp_path / "manual", tmp_path / "data2", splits=["test"])


@pytest.mark.skipif(not SHARED_RPCOCO.is_dir(), reason=f"{SHARED_RPCOCO} absent")
def test_real_rpcocom_testa_annotations(tmp_path):
  manual = tmp_path / "manual"
  (manual / "anns/rpcocom").mkdir(parents=True)
  (manual / "masks/rpcocom").mkdir(parents=True)
  (manual / "images/train2014").mkdir(parents=True)
  shutil.copy(SHARED_RPCOCO / "anns/rpcocom/testA.json", manual / "anns/rpcocom/testA.json")
  entries = _released("testA", root=manual)
  image = _jpeg(32, 24)
  for name in {e["img_name"] for e in entries}:
    (manual / "images/train2014" / name).write_bytes(image)
  for e in entries:
    mask = np.zeros((24, 32), np.uint8)
    mask[:, e["segment_id"] % 32] = 255  # A mask of its own, to see it come back.
    (manual / f"masks/rpcocom/{e['segment_id']}.png").write_bytes(_png(mask))
  builder = _prepare("rpcocom", manual, tmp_path / "data", splits=["testA"])
  assert builder.info.splits["testA"].num_examples == 1482
  assert builder.info.metadata["expressions"] == {"testA": 4327}
  source = builder.as_data_source(split="testA", decoders={"image": tfds.decode.SkipDecoding()})
  got = {}
  for ex in source:
    got[int(ex["ref_id"])] = [s.decode() for s in ex["sentences"]]
    assert np.flatnonzero(ex["mask"][0, :, 0]).tolist() == [int(ex["ref_id"]) % 32]
  assert len({e["img_name"] for e in entries}) == 718
  assert got == {e["segment_id"]: [s["sent"] for s in e["sentences"]] for e in entries}
  assert sum(map(len, got.values())) == 4327
  assert got[45] == ["protect privacy of guy holding purp umbrella in corner near us",
                     "protect privacy of black shirt person holding umbrella",
                     "protect privacy of man in black shirt and jeans"]


def _refer_layout(tmp_path, refs):
  """A REFER dir (refs(unc).p, instances.json) and a manual dir with the two images."""
  from pycocotools import mask as mask_utils  # pylint: disable=g-import-not-at-top
  rle_mask = np.zeros((24, 32), np.uint8, order="F")
  rle_mask[5:9, 20:30] = 1
  compressed = mask_utils.encode(rle_mask)
  compressed["counts"] = compressed["counts"].decode("ascii")
  flat = rle_mask.ravel(order="F").astype(int)
  runs = np.diff(np.flatnonzero(np.diff(np.r_[-1, flat, -1]) != 0)).tolist()
  uncompressed = {"counts": ([0] if flat[0] else []) + runs, "size": [24, 32]}
  instances = {
      "images": [{"id": 5, "file_name": "COCO_train2014_000000000005.jpg", "height": 24,
                  "width": 32},
                 {"id": 6, "file_name": "COCO_train2014_000000000006.jpg", "height": 24,
                  "width": 32}],
      "annotations": [
          {"id": 700, "image_id": 5, "category_id": 1, "bbox": [2.0, 2.0, 10.0, 18.0],
           "segmentation": [[2, 2, 12, 2, 12, 20, 2, 20]]},
          {"id": 800, "image_id": 6, "category_id": 1, "bbox": [20.0, 5.0, 10.0, 4.0],
           "segmentation": compressed},
          {"id": 900, "image_id": 6, "category_id": 3, "bbox": [0, 0, 4, 4],
           "segmentation": [[0, 0, 4, 0, 4, 4]]},
          {"id": 1000, "image_id": 5, "category_id": 1, "bbox": [20.4, 4.6, 10.0, 4.0],
           "segmentation": uncompressed},
      ]}
  refer_dir = tmp_path / "refcoco+"
  refer_dir.mkdir()
  (refer_dir / "instances.json").write_text(json.dumps(instances))
  (refer_dir / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=2))
  manual = tmp_path / "manual"
  (manual / "images/train2014").mkdir(parents=True)
  for image_id in (5, 6):
    (manual / f"images/train2014/COCO_train2014_{image_id:012d}.jpg").write_bytes(
        _jpeg(32, 24))
  return refer_dir, manual, rle_mask


def _refer_ref(ref_id, ann_id, split, sents, category=1):
  return {"ref_id": ref_id, "ann_id": ann_id, "image_id": 0, "split": split,
          "category_id": category, "file_name": f"COCO_train2014_x_{ann_id}.jpg",
          "sent_ids": list(range(len(sents))),
          "sentences": [{"sent": s, "raw": s.upper(), "tokens": s.split(), "sent_id": i}
                        for i, s in enumerate(sents)]}


def test_refer_route_rasterises_people_only(tmp_path):
  refs = [_refer_ref(7, 700, "testA", ["man on left", "guy in blue"]),
          _refer_ref(8, 800, "testA", ["woman"]),
          _refer_ref(9, 900, "testA", ["red car"], category=3),
          _refer_ref(10, 1000, "train", ["kid"]),
          _refer_ref(11, 700, "testB", ["man"])]
  refer_dir, manual, rle_mask = _refer_layout(tmp_path, refs)
  builder = _prepare("rpcocom", manual, tmp_path / "data", refer_dir=refer_dir)
  assert builder.info.metadata["source"] == "refer"
  examples = {s: {int(ex["ref_id"]): ex for ex in builder.as_data_source(split=s)}
              for s in ("train", "testA")}
  assert sorted(examples["testA"]) == [7, 8] and sorted(examples["train"]) == [10]
  polygon = examples["testA"][7]
  assert [s.decode() for s in polygon["sentences"]] == [
      "protect privacy of man on left", "protect privacy of guy in blue"]
  assert polygon["image_name"].decode() == "COCO_train2014_000000000005.jpg"
  np.testing.assert_array_equal(polygon["bbox"], [2, 2, 12, 20])
  inside = polygon["mask"][..., 0]
  assert set(np.unique(inside)) == {0, 255}
  assert inside[3:19, 3:11].min() == 255 and inside[22:, :].max() == 0
  assert 150 <= np.count_nonzero(inside) <= 231  # About the 10 x 18 rectangle.
  np.testing.assert_array_equal(examples["testA"][8]["mask"][..., 0], rle_mask * 255)
  np.testing.assert_array_equal(examples["train"][10]["mask"][..., 0], rle_mask * 255)
  np.testing.assert_array_equal(examples["train"][10]["bbox"], [20, 5, 30, 9])


class _Evil:

  def __reduce__(self):
    return (os.system, ("touch evil_was_here",))


@pytest.mark.parametrize("payload, refused", [
    (_Evil(), "posix.system"),
    (__import__("collections").OrderedDict(a=1), "collections.OrderedDict"),
])
def test_refer_pickle_refuses_anything_but_plain_values(tmp_path, payload, refused):
  refer_dir, manual, _ = _refer_layout(tmp_path, [payload])
  with pytest.raises(ValueError) as error:
    _prepare("rpcocom", manual, tmp_path / "data", refer_dir=refer_dir)
  assert f"cannot unpickle {refer_dir / 'refs(unc).p'}: " in str(error.value)
  assert f"asks for {refused}; refusing it" in str(error.value)
  assert not list(tmp_path.rglob("evil_was_here")) and not os.path.exists("evil_was_here")
