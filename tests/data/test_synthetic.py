"""The synthetic twin: determinism, the released schema, truthful expressions, ceiling."""

import json
import re

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from brppnet_jax.data import rpcoco
from brppnet_jax.data import synthetic
from brppnet_jax.data import synthetic_scene
from brppnet_jax.data import synthetic_text
from brppnet_jax.data import vocab as vocab_lib
from brppnet_jax.data.synthetic_scene import Person
from brppnet_jax.data.synthetic_text import Description


@pytest.fixture(scope="module", name="generated")
def _generated(tmp_path_factory):
  out = tmp_path_factory.mktemp("synthetic")
  counts = synthetic.generate(out, seed=3, num_train=12, num_test=6)
  return out, counts


def _files(root):
  return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_arguments_same_bytes(generated, tmp_path):
  out, _ = generated
  synthetic.generate(tmp_path / "again", seed=3, num_train=12, num_test=6)
  assert _files(tmp_path / "again") == _files(out)
  synthetic.generate(tmp_path / "other", seed=4, num_train=12, num_test=6)
  assert _files(tmp_path / "other") != _files(out)


def test_released_schema(generated):
  out, counts = generated
  ids, images = set(), set()
  for split, scenes in (("train", 12), ("test", 6)):
    entries = json.loads((out / f"anns/synthetic/{split}.json").read_text())
    assert counts[split] == {"refs": len(entries), "images": scenes,
                             "expressions": sum(len(e["sentences"]) for e in entries)}
    names = {e["img_name"] for e in entries}
    assert len(names) == scenes and not names & images
    images |= names
    for e in entries:
      assert list(e) == ["bbox", "cat", "segment_id", "img_name", "sentences", "sentences_num"]
      assert e["cat"] == 0 and e["segment_id"] not in ids
      ids.add(e["segment_id"])
      assert re.fullmatch(r"COCO_train2014_\d{12}\.jpg", e["img_name"])
      assert 1 <= e["sentences_num"] == len(e["sentences"]) <= 3
      for idx, s in enumerate(e["sentences"]):
        assert list(s) == ["idx", "sent_id", "sent"] and s["idx"] == idx
        assert s["sent"].startswith("protect privacy of ")
        assert 5 <= len(s["sent"].split()) <= 15  # Fits word_len 15.
      image = Image.open(out / "images/train2014" / e["img_name"])
      assert image.format == "JPEG" and image.mode == "RGB"
      mask_file = Image.open(out / f"masks/synthetic/{e['segment_id']}.png")
      assert mask_file.mode == "L" and mask_file.size == image.size
      mask = np.asarray(mask_file)
      assert set(np.unique(mask)) == {0, 255}
      ys, xs = np.nonzero(mask)
      assert e["bbox"] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_people_masks_do_not_overlap(generated):
  out, _ = generated
  entries = json.loads((out / "anns/synthetic/train.json").read_text())
  by_image = {}
  for e in entries:
    mask = np.asarray(Image.open(out / f"masks/synthetic/{e['segment_id']}.png")) > 0
    by_image.setdefault(e["img_name"], []).append(mask)
  for masks in by_image.values():
    assert 1 <= len(masks) <= 4
    assert np.sum(masks, axis=0).max() == 1  # Each pixel shows at most one person.
  assert any(len(m) >= 3 for m in by_image.values())


def test_scenes_vary_within_bounds():
  sizes, counts, colours = set(), set(), set()
  for seed in range(40):
    scene = synthetic_scene.sample_scene(np.random.default_rng(seed))
    width, height = scene.size
    assert 160 <= width <= 320 and 120 <= height <= 260 and 0.75 <= width / height <= 1.6
    for p in scene.people:
      assert p.height >= 0.35 * height and p.feet - p.height >= 0 and p.feet <= height
    sizes.add((width, height))
    counts.add(len(scene.people))
    colours |= {p.shirt for p in scene.people}
  assert len(sizes) == 40 and counts == {1, 2, 3, 4}
  assert colours == set(synthetic_scene.SHIRT_COLOURS)


def _person(cx, shirt, height=100.0, feet=150.0):
  return Person(cx=cx, feet=feet, height=height, build=1.0, shirt=shirt,
                trousers=(0, 0, 0), skin=(0, 0, 0), hair=(0, 0, 0))


def test_descriptions_are_true_of_one_person_only():
  size = (300, 200)
  people = [_person(50, "red", height=80), _person(150, "red", height=120),
            _person(250, "blue", height=100, feet=190)]
  found = synthetic_text.descriptions(people, size)
  # Two people in red: the colour alone names nobody; "red" plus a rank among the reds does.
  assert Description("red", None) not in found[0] + found[1]
  assert set(found[0]) == {Description(None, "left"), Description(None, "shortest"),
                           Description("red", "left"), Description("red", "shortest")}
  assert set(found[1]) == {Description(None, "tallest"), Description(None, "middle"),
                           Description("red", "right"), Description("red", "tallest")}
  # Blue is unique: alone, or with what holds among everyone.
  assert set(found[2]) == {Description("blue", None), Description(None, "right"),
                           Description(None, "front"), Description("blue", "right"),
                           Description("blue", "front")}
  # No clear rank when two people stand almost level.
  level = synthetic_text.descriptions([_person(100, "red"), _person(110, "green")], size)
  assert level == [[Description("red", None)], [Description("green", None)]]


def test_expressions_word_the_description():
  rng = np.random.default_rng(0)
  texts = {synthetic_text.phrase(Description("red", "left"), rng) for _ in range(200)}
  assert all(t.startswith("protect privacy of ") and "red" in t for t in texts)
  assert all(re.search(r"\bleft(most)?\b", t) for t in texts)
  chosen = synthetic_text.expressions([Description("red", None)] * 3, rng)
  assert 1 <= len(chosen) == len(set(chosen)) <= 3


def _write_tiny(root):
  """A 4x3 image with two people: A (3 pixels, 2 expressions), B (2 pixels, 1)."""
  a = np.array([[255, 255, 0, 0], [255, 0, 0, 0], [0, 0, 0, 0]], np.uint8)
  b = np.array([[0, 0, 0, 0], [0, 0, 0, 255], [0, 0, 0, 255]], np.uint8)
  (root / "anns/synthetic").mkdir(parents=True)
  (root / "masks/synthetic").mkdir(parents=True)
  entries = []
  for ref_id, mask, count in ((1, a, 2), (2, b, 1)):
    Image.fromarray(mask).save(root / f"masks/synthetic/{ref_id}.png")
    entries.append({"bbox": [0, 0, 1, 1], "cat": 0, "segment_id": ref_id, "img_name": "x.jpg",
                    "sentences": [{"idx": i, "sent_id": i, "sent": "s"} for i in range(count)],
                    "sentences_num": count})
  (root / "anns/synthetic/test.json").write_text(json.dumps(entries))


def test_text_blind_ceiling_by_hand(tmp_path):
  _write_tiny(tmp_path)
  result = synthetic.text_blind_ceiling(tmp_path)
  # Picking A: IoU 1 for A's two expressions, 0 for B's -> 2/3. Union (5 pixels):
  # A 3/5 twice, B 2/5 once -> 8/15. Picking B: 1/3.
  assert result["miou"]["largest"] == pytest.approx(2 / 3)
  assert result["miou"]["leftmost"] == pytest.approx(2 / 3)
  assert result["miou"]["tallest"] == pytest.approx(2 / 3)  # Tie: first person.
  assert result["miou"]["union"] == pytest.approx(8 / 15)
  assert result["miou"]["front"] == pytest.approx(1 / 3)  # B reaches the bottom row.
  assert result["miou"]["central"] == pytest.approx(1 / 3)  # B's centroid is 1 px off centre.
  assert result["best"] == "largest" and result["ceiling"] == pytest.approx(2 / 3)
  assert result["oracle"] == pytest.approx(2 / 3)  # A beats B (1/3) and A+B (8/15).
  assert result["expressions"] == 3


def test_text_blind_oracle_picks_the_best_person_or_union_per_image(tmp_path):
  """Image x as in _write_tiny; image y: C (3 pixels, 1 expression) and D (2 pixels, 3)."""
  _write_tiny(tmp_path)
  c = np.array([[255, 255, 255, 0], [0, 0, 0, 0], [0, 0, 0, 0]], np.uint8)
  d = np.array([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 255, 255]], np.uint8)
  entries = json.loads((tmp_path / "anns/synthetic/test.json").read_text())
  for ref_id, mask, count in ((3, c, 1), (4, d, 3)):
    Image.fromarray(mask).save(tmp_path / f"masks/synthetic/{ref_id}.png")
    entries.append({"bbox": [0, 0, 1, 1], "cat": 0, "segment_id": ref_id, "img_name": "y.jpg",
                    "sentences": [{"idx": i, "sent_id": i, "sent": "s"} for i in range(count)],
                    "sentences_num": count})
  (tmp_path / "anns/synthetic/test.json").write_text(json.dumps(entries))
  result = synthetic.text_blind_ceiling(tmp_path)
  # x: A scores 2 (its two expressions), B 1, A+B 2 * 3/5 + 2/5 = 1.6 -> A.
  # y: C scores 1, D 3, C+D 3/5 + 3 * 2/5 = 1.8 -> D. Over 7 expressions: (2 + 3) / 7.
  assert result["oracle"] == pytest.approx(5 / 7)
  assert result["miou"]["largest"] == pytest.approx(3 / 7)  # A and C.
  assert result["expressions"] == 7


def test_text_is_needed(tmp_path):
  synthetic.generate(tmp_path, seed=0, num_train=0, num_test=60)
  assert synthetic.text_blind_ceiling(tmp_path)["ceiling"] < 0.5


def test_generate_then_build(generated, tmp_path):
  out, counts = generated
  builder = rpcoco.Rpcoco(config="synthetic", data_dir=tmp_path)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=out, compute_stats=tfds.download.ComputeStatsMode.SKIP))
  assert builder.info.metadata["expressions"] == {
      s: c["expressions"] for s, c in counts.items()}
  source = tfds.data_source("rpcoco/synthetic", split="test", data_dir=tmp_path)
  assert len(source) == counts["test"]["refs"]
  entries = {e["segment_id"]: e for e in json.loads((out / "anns/synthetic/test.json").read_text())}
  for ex in source:
    entry = entries[int(ex["ref_id"])]
    image = np.asarray(Image.open(out / "images/train2014" / entry["img_name"]))
    assert ex["image"].shape == image.shape
    assert np.abs(ex["image"].astype(int) - image).max() <= 2  # Same JPEG, another decoder.
    truth = np.asarray(Image.open(out / f"masks/synthetic/{entry['segment_id']}.png"))
    np.testing.assert_array_equal(ex["mask"][..., 0], truth)
    assert [s.decode() for s in ex["sentences"]] == [s["sent"] for s in entry["sentences"]]
  train = json.loads((out / "anns/synthetic/train.json").read_text())
  vocab = vocab_lib.Vocabulary.load(rpcoco.vocab_path(builder.data_dir))
  assert vocab == vocab_lib.Vocabulary.build(s["sent"] for e in train for s in e["sentences"])
  assert set(vocab.words[2:5]) == {"protect", "privacy", "of"}  # In every expression.
