"""Where a prepared dataset's pieces are: its TFDS splits, its vocabulary and its training
expressions (written beside the data by the builder), local or on a bucket."""

from __future__ import annotations

from collections.abc import Sequence
import os

import ml_collections

from brppnet_jax.data import file_checks
from brppnet_jax.data import transforms
from brppnet_jax.data import vocab as vocab_lib
from brppnet_jax.runtime import paths

# As in rpcoco; not imported from there, to keep TFDS out of worker processes.
VOCAB_FILE = "vocab.txt"
ALL_SPLITS_VOCAB_FILE = "vocab_all_splits.txt"  # For fixed word vectors (the original's).
EXPRESSIONS_FILE = "train_expressions.txt"


def open_source(config: ml_collections.ConfigDict, split: str):
  """The records of `split` of the TFDS dataset config.dataset.name, image and mask undecoded."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top  (heavy; not in workers)
  try:
    source = tfds.data_source(
        config.dataset.name, split=split, data_dir=config.dataset.data_dir or None,
        decoders={"image": tfds.decode.SkipDecoding(), "mask": tfds.decode.SkipDecoding()})
  except tfds.core.registered.DatasetNotFoundError:
    raise FileNotFoundError(missing_dataset_message(config)) from None
  except RuntimeError as e:  # Riegeli: a shard's footer or index does not read.
    raise file_checks.shard_error(_shard_files(config, split), e) from None
  shards = _shard_files(config, split)
  file_checks.check_shards(shards)
  return file_checks.CheckedSource(source, shards)


def _shard_files(config: ml_collections.ConfigDict, split: str) -> list:
  return sorted(paths.absolute(builder_dir(config)).glob(f"*-{split}.array_record*"))


def builder_dir(config: ml_collections.ConfigDict) -> str:
  """The prepared dataset's directory (where the builder writes vocab.txt); local or a URL."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    builder = tfds.builder(config.dataset.name, data_dir=config.dataset.data_dir or None)
  except tfds.core.registered.DatasetNotFoundError:
    raise FileNotFoundError(missing_dataset_message(config)) from None
  return os.fspath(builder.data_dir)


def missing_dataset_message(config: ml_collections.ConfigDict) -> str:
  """One line: where the dataset was looked for and the command that builds it there."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  data_dir = config.dataset.data_dir or tfds.core.constants.DATA_DIR
  searched = paths.join(data_dir, *config.dataset.name.split("/"))
  variant = config.dataset.name.split("/")[-1]
  if variant == "synthetic":
    command = ("python -m brppnet_jax.data.synthetic --out RAW_DIR && python -m "
               f"brppnet_jax.data.build --dataset=synthetic --manual_dir=RAW_DIR "
               f"--data_dir={data_dir}")
  else:
    command = (f"python -m brppnet_jax.data.build --dataset={variant} "
               f"--manual_dir=RPCOCO_DIR --data_dir={data_dir}")
  return (f"no prepared dataset {config.dataset.name} in {searched}; build it with: {command} "
          "(or point --config.dataset.data_dir at where it was built)")


def load_vocab(location: ml_collections.ConfigDict | str | os.PathLike) -> vocab_lib.Vocabulary:
  """The vocabulary beside the data: from a config, a dataset directory or a vocab.txt path."""
  name = VOCAB_FILE
  if isinstance(location, ml_collections.ConfigDict):
    # Fixed word vectors cover every split's words, as the original looked each word up.
    name = ALL_SPLITS_VOCAB_FILE if location.model.fixed_word_vectors else VOCAB_FILE
    location = builder_dir(location)
  path = paths.absolute(location)
  if path.is_dir():
    path = path / name
  if not path.is_file():
    raise FileNotFoundError(f"no vocabulary file {path} (the dataset builder writes it "
                            "beside the prepared data)")
  try:
    words = paths.read_lines(path)
  except ValueError as e:  # Not UTF-8.
    raise file_checks.DamagedDatasetError(f"{path}: {e}") from None
  file_checks.check_digest(path)
  try:
    return vocab_lib.Vocabulary(words)
  except ValueError as e:
    raise ValueError(f"{path}: {e}") from None


def load_train_expressions(config: ml_collections.ConfigDict) -> list[str]:
  """The training split's expressions, which the builder wrote beside the data."""
  path = paths.join(builder_dir(config), EXPRESSIONS_FILE)
  if not path.is_file():
    raise FileNotFoundError(f"no file {path} (the dataset builder writes it beside the "
                            "prepared data; rebuild the dataset)")
  file_checks.check_digest(path)
  return paths.read_lines(path)


def count_expressions(source: Sequence[dict]) -> int:
  """How many expressions (ref x sentence) `source` holds; reads every record."""
  return sum(len(transforms.sentences_of(source[i])) for i in range(len(source)))
