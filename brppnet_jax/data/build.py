r"""Builds one RPCOCO config as a TFDS dataset (ArrayRecord) and writes its vocabulary.

    python -m brppnet_jax.data.build --dataset=rpcocom --manual_dir=DIR --data_dir=DIR \
        [--skip_bad] [--refer_dir=DIR] [--splits=testA] [--overwrite]

Prints where the data went, refs and expressions per split, skipped refs and the
vocabulary file (`<data_dir>/rpcoco/<config>/<version>/vocab.txt`).
"""

from __future__ import annotations

from collections.abc import Sequence
import sys

from absl import app
from absl import flags
from etils import epath
import tensorflow_datasets as tfds

from brppnet_jax.data import records
from brppnet_jax.data import rpcoco
from brppnet_jax.data import vocab as vocab_lib

_DATASET = flags.DEFINE_string(
    "dataset", None, "Config to build: rpcocos, rpcocom, rpcocol or synthetic "
    "(an 'rpcoco/' prefix is allowed).")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "The released layout (images/ at least).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data_dir to write to.")
_SKIP_BAD = flags.DEFINE_bool("skip_bad", False, "Leave out bad refs (and report them).")
_REFER_DIR = flags.DEFINE_string("refer_dir", None,
                                 "REFER dir with refs(unc|umd).p and instances.json.")
_SPLITS = flags.DEFINE_list("splits", None, "Build only these splits (default: all).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Rebuild even if the data exists.")


def build(dataset: str, manual_dir: epath.PathLike, data_dir: epath.PathLike, *,
          skip_bad: bool = False, refer_dir: epath.PathLike | None = None,
          splits: Sequence[str] | None = None, overwrite: bool = False) -> rpcoco.Rpcoco:
  """Prepares `rpcoco/<dataset>` under `data_dir`; returns the builder."""
  config = dataset.removeprefix("rpcoco/")
  names = [c.name for c in rpcoco.Rpcoco.BUILDER_CONFIGS]
  if config not in names:
    raise ValueError(f"unknown dataset {dataset!r}; expected one of {names}")
  if not epath.Path(manual_dir).is_dir():
    raise FileNotFoundError(f"manual dir {manual_dir} does not exist")
  builder = rpcoco.Rpcoco(config=config, data_dir=data_dir, skip_bad=skip_bad,
                          refer_dir=refer_dir, splits=splits)
  if builder.info.splits and not overwrite:
    print(f"{builder.data_dir} already holds this dataset: reusing it "
          "(pass --overwrite to rebuild)")
  mode = (tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS if overwrite
          else tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=manual_dir, download_mode=mode,
      compute_stats=tfds.download.ComputeStatsMode.SKIP))
  return builder


def summary(builder: rpcoco.Rpcoco) -> list[str]:
  """Human-readable lines about a prepared builder."""
  metadata = builder.info.metadata
  lines = [f"{builder.info.full_name} ({builder.info.file_format.value}) in {builder.data_dir}"]
  for split, info in builder.info.splits.items():
    lines.append(f"  {split}: {info.num_examples} refs, "
                 f"{metadata['expressions'][split]} expressions")
  for split, skipped in metadata["skipped"].items():
    if skipped["count"]:
      reasons = ", ".join(f"{kind}: {n}" for kind, n in skipped["reasons"].items())
      lines.append(f"  skipped {skipped['count']} bad refs of {split} "
                   f"({skipped['source']}): {reasons}; see metadata.json")
  path = rpcoco.vocab_path(builder.data_dir)
  if path.exists():
    lines.append(f"vocabulary: {path} ({len(vocab_lib.Vocabulary.load(path))} words)")
  else:
    lines.append("vocabulary: none written (no train split built)")
  return lines


def main(argv):
  del argv
  try:
    builder = build(_DATASET.value, _MANUAL_DIR.value, _DATA_DIR.value,
                    skip_bad=_SKIP_BAD.value, refer_dir=_REFER_DIR.value,
                    splits=_SPLITS.value, overwrite=_OVERWRITE.value)
  except (records.BadRefsError, ValueError, FileNotFoundError) as e:
    sys.exit(f"build failed: {e}")
  print("\n".join(summary(builder)))


if __name__ == "__main__":
  flags.mark_flags_as_required(["dataset", "manual_dir", "data_dir"])
  app.run(main)
