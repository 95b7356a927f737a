r"""The paper's loss claim (spec section 4) on our data: one training run per loss and seed.

    python -m brppnet_jax.measure.ablate_loss --workdir=/tmp/ablate --data_dir=data/tfds \
        [--config=configs/synthetic.py] [--total_steps=N] [--seeds=0,1,2] [--losses=bce,...] \
        [--results_dir=benchmarks/results/ablate_loss] [--readme=README.md] [--table_only]

Each (loss, seed) trains in WORKDIR/<loss>/seed<seed> (resumed if it has checkpoints) and its
evaluations go to RESULTS_DIR/<loss>_seed<seed>_<steps>steps.json. The tables (final mIoU,
oIoU, prec@0.5 and F1, mean and std over seeds; mIoU at every evaluation) are then made from
those files alone and printed; with `--readme`, also written between the
`<!-- loss-ablation:start -->` and `<!-- loss-ablation:end -->` lines of that file.
`--table_only` skips training and remakes the tables from the stored files.
"""

from __future__ import annotations

from absl import app
from absl import flags
from ml_collections import config_flags

from brppnet_jax.measure import loss_runs
from brppnet_jax.measure import records
from brppnet_jax.runtime import cli
from brppnet_jax.runtime import config_files
from brppnet_jax.train import losses

FLAGS = flags.FLAGS
_CONFIG = config_flags.DEFINE_config_file(
    "config", config_files.repo_path("configs", "synthetic.py"), "Training configuration file.")
flags.DEFINE_string("workdir", None, "Root folder: one sub-workdir per loss and seed.")
flags.DEFINE_string("data_dir", None, "TFDS data_dir (default: the config's).")
flags.DEFINE_integer("total_steps", None, "Training steps per run (default: the config's).")
flags.DEFINE_list("seeds", ["0"], "Comma-separated seeds; several give mean ± std.")
flags.DEFINE_list("losses", list(losses.LOSSES), "Comma-separated losses to compare.")
flags.DEFINE_string("readme", "", "README whose loss-ablation section is replaced, e.g. "
                    "README.md (default: print only).")
flags.DEFINE_string("results_dir", config_files.repo_path("benchmarks", "results", "ablate_loss"),
                    "Where each run's evaluations are stored, and the tables read from.")
flags.DEFINE_bool("table_only", False, "Make the tables from stored results; train nothing.")


def _seeds() -> list[int]:
  """--seeds as integers, after checking --losses and --seeds."""
  unknown = [loss for loss in FLAGS.losses if loss not in losses.LOSSES]
  if unknown or not FLAGS.losses:
    raise ValueError(f"--losses must name some of {', '.join(losses.LOSSES)}, got "
                     f"{','.join(FLAGS.losses)!r}")
  if not all(s.strip().lstrip("-").isdigit() for s in FLAGS.seeds):
    raise ValueError(f"--seeds must be comma-separated integers, got {','.join(FLAGS.seeds)!r}")
  return [int(s) for s in FLAGS.seeds]


def main(argv) -> None:
  cli.no_arguments(argv)
  with cli.one_line_errors():
    seeds = _seeds()
    if not FLAGS.table_only and not FLAGS.workdir:
      raise ValueError("--workdir is required to train (or pass --table_only)")
    if FLAGS.readme:
      loss_runs.check_readme(FLAGS.readme)
    config = _CONFIG.value
    total_steps = FLAGS.total_steps or config.total_steps
    if not FLAGS.table_only:
      loss_runs.run_ablation(config, FLAGS.workdir, FLAGS.losses, seeds, data_dir=FLAGS.data_dir,
                             total_steps=FLAGS.total_steps, results_dir=FLAGS.results_dir,
                             config_name=config_files.config_name(FLAGS["config"]),
                             command=records.command("brppnet_jax.measure.ablate_loss"))
    section = loss_runs.section_from_results(FLAGS.results_dir, FLAGS.losses, seeds,
                                             total_steps)
    print(section)
    if FLAGS.readme:
      loss_runs.write_readme_section(FLAGS.readme, section)


if __name__ == "__main__":
  app.run(main)
