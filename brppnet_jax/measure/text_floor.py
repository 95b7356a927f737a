r"""How much of the synthetic twin's score needs the text: rules, an oracle, a learned floor.

    python -m brppnet_jax.measure.text_floor --workdir=/tmp/text_floor --data_dir=demo_out/tfds \
        --raw_dir=demo_out/raw [--config=configs/synthetic.py] [--total_steps=N] [--seed=S] \
        [--results_dir=benchmarks/results/text_floor] [--readme=README.md] [--table_only]

Trains the config twice with the same steps and seed: as it is ("grounded", in
WORKDIR/grounded) and with `config.dataset.blind_text=True` ("blind", in WORKDIR/blind), where
every expression, in training and evaluation, is one fixed sentence: the model sees only the
image, so its score is what a network of this size learns without the text. Both are
evaluated on the config's eval split. The text-blind rules and the per-image oracle of
`synthetic.text_blind_ceiling` are computed on RAW_DIR's annotations of the same split.

Each figure is stored in RESULTS_DIR (grounded_seed<S>_<N>steps.json,
blind_seed<S>_<N>steps.json, rules_<split>.json); the section is made from those files alone
and printed; with `--readme`, also written between `<!-- text-floor:start -->` and
`<!-- text-floor:end -->` of that file.
"""

from __future__ import annotations

from absl import app
from absl import flags
from ml_collections import config_flags

from brppnet_jax.measure import records
from brppnet_jax.measure import text_floor_runs
from brppnet_jax.runtime import cli
from brppnet_jax.runtime import config_files

FLAGS = flags.FLAGS
_CONFIG = config_flags.DEFINE_config_file(
    "config", config_files.repo_path("configs", "synthetic.py"), "Training configuration file.")
flags.DEFINE_string("workdir", None, "Root folder: WORKDIR/grounded and WORKDIR/blind.")
flags.DEFINE_string("data_dir", None, "TFDS data_dir (default: the config's).")
flags.DEFINE_string("raw_dir", None, "The synthetic twin's released layout (its anns/ and "
                    "masks/), for the rules and the oracle.")
flags.DEFINE_integer("total_steps", None, "Training steps per run (default: the config's).")
flags.DEFINE_integer("seed", None, "Seed of both runs (default: the config's).")
flags.DEFINE_string("results_dir", config_files.repo_path("benchmarks", "results", "text_floor"),
                    "Where the results are stored, and the section read from.")
flags.DEFINE_string("readme", "", "README whose text-floor section is replaced, e.g. "
                    "README.md (default: print only).")
flags.DEFINE_bool("table_only", False, "Make the section from stored results; train nothing.")


def train(config, seed: int, total_steps: int, split: str) -> None:
  """Scores the rules on --raw_dir and trains both runs, storing each in --results_dir."""
  if not FLAGS.workdir or not FLAGS.raw_dir:
    raise ValueError("--workdir and --raw_dir are required to train (or pass --table_only)")
  command = records.command("brppnet_jax.measure.text_floor")
  text_floor_runs.store_rules(FLAGS.raw_dir, split, FLAGS.results_dir, command)
  name = config_files.config_name(FLAGS["config"])
  for run in text_floor_runs.RUNS:
    text_floor_runs.train_run(config, run, FLAGS.workdir, FLAGS.results_dir, name, command,
                              seed=seed, data_dir=FLAGS.data_dir, total_steps=total_steps)


def main(argv) -> None:
  cli.no_arguments(argv)
  with cli.one_line_errors():
    config = _CONFIG.value
    seed = config.seed if FLAGS.seed is None else FLAGS.seed
    total_steps = FLAGS.total_steps or config.total_steps
    split = config.dataset.eval_split
    if FLAGS.readme:
      text_floor_runs.check_readme(FLAGS.readme)
    if not FLAGS.table_only:
      train(config, seed, total_steps, split)
    section = text_floor_runs.section_from_results(FLAGS.results_dir, seed, total_steps, split)
    print(section)
    if FLAGS.readme:
      text_floor_runs.write_readme_section(FLAGS.readme, section)


if __name__ == "__main__":
  app.run(main)
