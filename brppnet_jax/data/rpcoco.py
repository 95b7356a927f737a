r"""TFDS builder `rpcoco`: one example per referred person of RPCOCO or its synthetic twin.

    builder = Rpcoco(config="rpcocom", data_dir=DIR)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=MANUAL_DIR))
    source = tfds.data_source("rpcoco/rpcocom", split="testA", data_dir=DIR)

Or `python -m brppnet_jax.data.build`. Every image and mask of a split is checked before
anything is written; bad refs stop the build with one error naming all of them, unless
`skip_bad=True`, which leaves them out and records why in the dataset metadata
(`metadata.json`, key "skipped"). The vocabulary of the train sentences is written beside
the data (`vocab_path`).
"""

from __future__ import annotations

from collections.abc import Sequence
import dataclasses

from absl import logging
from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from brppnet_jax.data import file_checks
from brppnet_jax.data import records
from brppnet_jax.data import refer
from brppnet_jax.data import vocab as vocab_lib

VOCAB_FILE = "vocab.txt"
ALL_SPLITS_VOCAB_FILE = "vocab_all_splits.txt"  # Every split's words, for fixed word vectors.
EXPRESSIONS_FILE = "train_expressions.txt"  # One per line: the speech model is built from them.


def vocab_path(builder_dir: epath.PathLike) -> epath.Path:
  """Where the build wrote the train vocabulary: `<data_dir>/rpcoco/<config>/<version>/`."""
  return epath.Path(builder_dir) / VOCAB_FILE


@dataclasses.dataclass(eq=False)
class RpcocoConfig(tfds.core.BuilderConfig):
  """A variant: which annotation files to read and which splits it has."""
  variant: str = ""
  splits: tuple[str, ...] = ()
  split_by: str = ""  # REFER split scheme of refs(<split_by>).p.


class Rpcoco(tfds.core.GeneratorBasedBuilder):
  """RPCOCO (spec section 1): referring expressions for people, with their masks."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release: original JPEG bytes, 0/255 PNG masks."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Put the released RPCOCO files in the manual dir (`--manual_dir`), laid out as
      anns/<variant>/<split>.json       (rpcocos, rpcocom: train, testA; rpcocol: train, test)
      masks/<variant>/<segment_id>.png  (8-bit grayscale, 255 on the person, image size)
      images/train2014/<img_name>       (the COCO train2014 JPEGs)
  For the `synthetic` config, `python -m brppnet_jax.data.synthetic --out DIR` writes this
  layout with variant `synthetic` (splits train, test).
  Instead of anns/ and masks/, the REFER toolkit files may be given with refer_dir
  (`--refer_dir`): a directory holding refs(unc).p (rpcocos from refcoco/, rpcocom from
  refcoco+/) or refs(umd).p (rpcocol, from refcocog/) and instances.json; the images are
  still read from <manual_dir>/images/train2014.
  """
  BUILDER_CONFIGS = [
      RpcocoConfig(name="rpcocos", variant="rpcocos", splits=("train", "testA"),
                   split_by="unc", description="People of RefCOCO (unc splits)."),
      RpcocoConfig(name="rpcocom", variant="rpcocom", splits=("train", "testA"),
                   split_by="unc", description="People of RefCOCO+ (unc splits)."),
      RpcocoConfig(name="rpcocol", variant="rpcocol", splits=("train", "test"),
                   split_by="umd", description="People of RefCOCOg (umd splits)."),
      RpcocoConfig(name="synthetic", variant="synthetic", splits=("train", "test"),
                   description="Synthetic twin: drawn people, generated expressions."),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = "rpcocom"

  def __init__(self, *, refer_dir: epath.PathLike | None = None, skip_bad: bool = False,
               splits: Sequence[str] | None = None, file_format=None, **kwargs):
    """Besides the usual builder arguments.

    Args:
      refer_dir: read refs and masks from REFER files there instead of anns/ and masks/.
      skip_bad: build without the refs whose files are missing or broken.
      splits: build only these splits of the config (default: all of them).
      file_format: record format; ArrayRecord (random access) unless given.
      **kwargs: passed to tfds.core.GeneratorBasedBuilder.
    """
    self._refer_dir = refer_dir
    self._skip_bad = skip_bad
    self._only_splits = tuple(splits) if splits else None
    super().__init__(file_format=file_format, **kwargs)
    if file_format is None and not self.info.splits:  # Not prepared yet: our default.
      self.info.set_file_format(tfds.core.FileFormat.ARRAY_RECORD, override=True)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=("RPCOCO: RefCOCO/+/g restricted to people, every expression "
                     "prefixed by 'protect privacy of '. One example per referred person."),
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
            "mask": tfds.features.Image(shape=(None, None, 1), encoding_format="png"),
            "sentences": tfds.features.Sequence(tfds.features.Text()),
            "ref_id": tfds.features.Scalar(dtype=np.int64),
            "image_name": tfds.features.Text(),
            "bbox": tfds.features.Tensor(shape=(4,), dtype=np.int32),
        }),
        homepage="https://doi.org/10.1016/j.eswa.2023.120960",
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager):
    manual_dir = dl_manager.manual_dir
    config = self.builder_config
    splits = self._only_splits or config.splits
    unknown = sorted(set(splits) - set(config.splits))
    if unknown:
      raise ValueError(f"config {config.name} has splits {list(config.splits)}, "
                       f"not {unknown}")
    kept, errors = {}, []
    skipped, expressions = {}, {}
    for split in splits:
      refs, problems, source = self._read_split(manual_dir, split)
      problems += records.check_refs(refs, manual_dir, desc=f"checking {source}")
      if problems and not self._skip_bad:
        errors.append(records.bad_refs_message(problems, source))
        continue
      bad = {p.ref for p in problems}
      if bad:
        logging.warning("Skipping %d bad refs of %s: %s", len(bad), source,
                        "; ".join(map(str, problems)))
      kept[split] = [r for r in refs if f"ref {r.ref_id}" not in bad]
      expressions[split] = sum(len(r.sentences) for r in kept[split])
      skipped[split] = {"source": source, "count": len(bad),
                        "reasons": records.skip_summary(problems),
                        "refs": [str(p) for p in problems]}
    if errors:
      raise records.BadRefsError(" | ".join(errors))
    self.info.metadata.update(source="refer" if self._refer_dir else "released",
                              expressions=expressions, skipped=skipped)
    if "train" in kept:
      vocab = vocab_lib.Vocabulary.build(s for r in kept["train"] for s in r.sentences)
      vocab.save(vocab_path(self.data_dir))
      every_split = vocab_lib.Vocabulary.build(s for refs in kept.values() for r in refs
                                               for s in r.sentences)
      every_split.save(epath.Path(self.data_dir) / ALL_SPLITS_VOCAB_FILE)
      with (epath.Path(self.data_dir) / EXPRESSIONS_FILE).open("w") as f:
        f.writelines(" ".join(s.split()) + "\n" for r in kept["train"] for s in r.sentences)
      # Loading compares (data/file_checks.py): a damaged file is named, never read as words.
      self.info.metadata.update({file_checks.DIGESTS_KEY: file_checks.digests(
          self.data_dir, (VOCAB_FILE, ALL_SPLITS_VOCAB_FILE, EXPRESSIONS_FILE))})
    return {split: self._generate_examples(refs, manual_dir) for split, refs in kept.items()}

  def _read_split(self, manual_dir, split):
    if self._refer_dir:
      if not self.builder_config.split_by:
        raise ValueError(f"config {self.builder_config.name} is not made from REFER files; "
                         "leave out refer_dir")
      return refer.read_refer(self._refer_dir, self.builder_config.split_by, split)
    return records.read_released(manual_dir, self.builder_config.variant, split)

  def _generate_examples(self, refs: Sequence[records.Ref], manual_dir):
    for ref in refs:
      yield ref.ref_id, {
          "image": records.image_path(manual_dir, ref.image_name),
          "mask": records.encode_png(ref.mask.load()),
          "sentences": list(ref.sentences),
          "ref_id": ref.ref_id,
          "image_name": ref.image_name,
          "bbox": np.asarray(ref.bbox, np.int32),
      }
