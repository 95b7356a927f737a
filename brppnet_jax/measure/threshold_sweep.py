r"""The mask threshold against mIoU, precision and recall of a trained workdir, and where it fails.

    python -m brppnet_jax.measure.threshold_sweep --workdir=demo_out/workdir \
        [--data_dir=demo_out/tfds] [--split=test] [--max_expressions=0] \
        [--json=benchmarks/results/threshold_sweep_demo.json]

Runs `analysis.analyse_predictor` over the split (every expression unless --max_expressions)
and prints the sweep, the breakdown by what the requests name and the share of expressions
whose protection covers another person more; --json stores all of it with the machine and the
command. README, "One threshold", reads the stored file.
"""

from __future__ import annotations

import time

from absl import app
from absl import flags
import ml_collections

from brppnet_jax.data import sources
from brppnet_jax.evaluation import analysis
from brppnet_jax.evaluation import request_aspects
from brppnet_jax.measure import records
from brppnet_jax.protect import hiding
from brppnet_jax.protect import predictor as predictor_lib
from brppnet_jax.runtime import cli
from brppnet_jax.runtime import devices
from brppnet_jax.runtime import paths

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "A trained workdir (its best checkpoint is used).")
flags.DEFINE_string("data_dir", None, "TFDS data_dir (default: the checkpoint's).")
flags.DEFINE_string("split", None, "Split (default: the checkpoint's evaluation split).")
flags.DEFINE_integer("max_expressions", 0, "Score only the first N expressions (0: all).")
flags.DEFINE_string("json", None, "Where to store the results (default: print only).")


def measure(workdir: str, data_dir: str | None, split: str | None,
            max_expressions: int) -> dict:
  """The sweep, histogram, breakdown and other-person share of `workdir`'s best checkpoint."""
  start = time.perf_counter()
  predictor = predictor_lib.Predictor.from_workdir(workdir)
  config = ml_collections.ConfigDict(predictor.config.to_dict())
  config.dataset.data_dir = data_dir or config.dataset.data_dir
  split = split or config.dataset.eval_split
  results = analysis.analyse_predictor(predictor, config, sources.open_source(config, split),
                                       max_expressions=max_expressions)
  return {
      "workdir": workdir, "step": predictor.step, "dataset": config.dataset.name,
      "split": split, "expressions": len(results),
      "paper_threshold": config.segment_thresh, "mask_threshold": hiding.MASK_THRESHOLD,
      "sweep": analysis.threshold_sweep(results),
      "iou_histogram": analysis.iou_histogram(results)[0].tolist(),
      "breakdown": analysis.breakdown(results, request_aspects.for_dataset(config.dataset.name)),
      "other_person_share": analysis.other_person_share(results),
      "seconds": time.perf_counter() - start,
  }


def main(argv) -> None:
  cli.no_arguments(argv)
  with cli.one_line_errors():
    if not FLAGS.workdir:
      raise ValueError("--workdir is required")
    if not paths.is_dir(FLAGS.workdir):
      raise FileNotFoundError(f"--workdir={FLAGS.workdir}: no such folder")
    result = measure(FLAGS.workdir, FLAGS.data_dir, FLAGS.split, FLAGS.max_expressions)
    print(analysis.format_rows(result["sweep"]))
    print()
    print(analysis.format_rows(result["breakdown"]))
    print(f"\n{result['expressions']} expressions; protection covers another person more in "
          f"{100 * result['other_person_share']:.1f}%")
    if FLAGS.json:
      record = {"date": time.strftime("%Y-%m-%d"), "machine": devices.machine(),
                "command": records.command("brppnet_jax.measure.threshold_sweep"), **result}
      print(f"wrote {records.write_json(FLAGS.json, record, indent=1)}")


if __name__ == "__main__":
  app.run(main)
