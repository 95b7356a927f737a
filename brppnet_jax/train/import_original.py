r"""Imports a trained original BRPPNet (its Keras h5) as a checkpoint of this project.

    python -m brppnet_jax.train.import_original --h5=best_map.h5 --config=configs/rpcocom.py \
        --word_vectors=glove.840B.300d.txt --workdir=DIR \
        [--config.dataset.data_dir=$HOME/tensorflow_datasets | --vocab=words.txt]

The checkpoint (step 0) holds the network in the original's modes (padding "original", fixed
word vectors), the word table of every word of the vocabulary (zero for words the vectors file
lacks, as in the original), the config and the vocabulary: `--mode=eval`,
`Predictor.from_workdir`, the notebook and `python -m brppnet_jax.protect` use it as they use a
trained workdir. The vocabulary is the built dataset's (every split's words) unless `--vocab`
names a file with one word per line (`<pad>` and `<unk>` first).
"""

from __future__ import annotations

import sys

from absl import app
from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
from ml_collections import config_flags
import numpy as np

from brppnet_jax.runtime import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Configuration file (a paper config).")
flags.DEFINE_string("h5", None, "The original's weight file (save_weights or model.save layout).")
flags.DEFINE_string("word_vectors", None, "GloVe-format word vectors (glove.840B.300d.txt).")
flags.DEFINE_string("workdir", None, "Where to write the checkpoint.")
flags.DEFINE_string("vocab", None, "Vocabulary file; default: the built dataset's.")
FLAGS = flags.FLAGS


def original_config(config: ml_collections.ConfigDict, word_vectors: str):
  """`config` with the modes the original's weights were trained in."""
  config = ml_collections.ConfigDict(config.to_dict())
  config.model.text_padding = "original"
  config.model.fixed_word_vectors = True
  config.dataset.word_vectors = word_vectors
  return config


def import_original(config, h5_path: str, word_vectors: str, workdir: str,
                    vocab_path: str | None = None) -> int:
  """Writes the checkpoint; returns its step (0)."""
  # Imported here: absl flags above must be defined before these modules' own.
  from brppnet_jax.data import sources
  from brppnet_jax.data import vocab as vocab_lib  # pylint: disable=g-import-not-at-top
  from brppnet_jax.data import word_vectors as word_vectors_lib  # Not the argument's name.
  from brppnet_jax.models import original_weights  # pylint: disable=g-import-not-at-top
  from brppnet_jax.runtime import sharding  # pylint: disable=g-import-not-at-top
  from brppnet_jax.train import checkpoints  # pylint: disable=g-import-not-at-top
  from brppnet_jax.train import step_functions  # pylint: disable=g-import-not-at-top
  from brppnet_jax.train import train_state  # pylint: disable=g-import-not-at-top

  config = original_config(config, word_vectors)
  vocab = (vocab_lib.Vocabulary.load(vocab_path) if vocab_path
           else sources.load_vocab(config))
  config.model.vocab_size = len(vocab)
  table = word_vectors_lib.load_embeddings(config, vocab)
  model, tx, _, _ = step_functions.make_steps(config, steps_per_epoch=1)
  size, length = config.dataset.input_size, config.dataset.word_len
  shapes = jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros((1, size, size, 3)), jnp.ones((1, length), jnp.int32)))
  variables = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
  variables, filled = original_weights.load_brppnet_h5(h5_path, variables)
  variables["params"]["text_encoder"]["embedding"]["embedding"] = table
  logging.info("Loaded %d layers of %s", len(filled), h5_path)
  mesh = sharding.make_mesh()
  state = jax.device_put(train_state.state_from_variables(variables, config, tx,
                                                    train_state.prng_key(config.seed)),
                         sharding.replicated(mesh))
  try:
    expressions = sources.load_train_expressions(config)
  except FileNotFoundError:  # Only spoken requests need them.
    logging.warning("No training expressions beside the data: spoken requests (--audio) "
                    "will not work with this checkpoint.")
    expressions = []
  ckpts = checkpoints.Checkpoints(workdir, async_save=False)
  try:
    ckpts.save(0, state, config=config, vocab_words=vocab.words, expressions=expressions,
               force=True)
    ckpts.wait()
  finally:
    ckpts.close()
  return 0


def missing_input_files() -> list[str]:
  """One message per input file flag naming a file that does not exist, as the user wrote it."""
  from brppnet_jax.runtime import paths  # pylint: disable=g-import-not-at-top
  return [f"--{name}={FLAGS[name].value}: no such file"
          for name in ("h5", "word_vectors", "vocab")
          if FLAGS[name].value and not paths.is_file(FLAGS[name].value)]


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  missing = [f"--{name}" for name in ("h5", "word_vectors", "workdir") if not FLAGS[name].value]
  if missing:
    sys.exit(f"error: {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required")
  problems = missing_input_files()
  if problems:  # The user's own files first, before the dataset or anything else is read.
    sys.exit("error: " + "; ".join(problems))
  with cli.one_line_errors(log=False):
    step = import_original(_CONFIG.value, FLAGS.h5, FLAGS.word_vectors, FLAGS.workdir,
                           FLAGS.vocab)
  print(f"Wrote checkpoint step {step} of {FLAGS.h5} to {FLAGS.workdir}")


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main)
