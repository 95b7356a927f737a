"""Host cost of evaluation per expression, and what it makes of a full RPCOCO test split.

    python -m brppnet_jax.measure.eval_speed --json benchmarks/results/cpu_eval_host.json

On the test split of the full-size synthetic twin (`measure/full_size_twin.py`), with the
prediction set to the letterboxed ground truth (the host's work does not depend on the
network), it times on one thread each part of an expression's evaluation: reading and
letterboxing the record (the input pipeline's share), mapping the prediction back, IoU,
privacy metrics and the Haar-cascade face test; then `scoring.score_row` through a pool of
1 and of every available thread. The face test runs once per expression when the original
person shows no face (the twin's people have none) and twice when it does (COCO's people
often do), so the estimate for `--expressions` (RPCOCO-m testA: 4,327) on `--cores` cores
gives both bounds. With `--whole`, `scoring.evaluate_split` also runs whole (device and
host pipelined) with the config's untrained network. Prints a table, writes JSON.
"""

from __future__ import annotations

from absl import app
from absl import flags
import cv2
import jax

from brppnet_jax.data import pipeline as pipeline_lib
from brppnet_jax.data import sources
from brppnet_jax.measure import eval_stages
from brppnet_jax.measure import full_size_twin
from brppnet_jax.measure import records
from brppnet_jax.runtime import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("config", full_size_twin.CONFIG, "Config file (its network for --whole).")
flags.DEFINE_bool("whole", False, "Also run scoring.evaluate_split whole.")
flags.DEFINE_integer("size", 416, "Input size.")
flags.DEFINE_integer("batch", 24, "Evaluation batch size.")
flags.DEFINE_integer("max_expressions", 96, "Expressions of the twin's test split timed.")
flags.DEFINE_integer("expressions", 4327, "Expressions of the split estimated "
                     "(RPCOCO-m testA: 4,327).")
flags.DEFINE_integer("cores", 16, "Cores of the machine estimated.")
flags.DEFINE_string("work_dir", full_size_twin.WORK_DIR, "Where the twin is built (once).")
flags.DEFINE_string("json", "", "Where to write the result (default: "
                    "benchmarks/results/<platform>_eval_host.json).")


def format_table(result: dict) -> str:
  """Stage seconds, pool rates and the estimate, one line each."""
  lines = [f"{'stage (one thread)':<34}{'s/expression':>14}"]
  lines += [f"{k:<34}{v:>14.4f}" for k, v in result["seconds_per_expression_one_thread"].items()]
  lines += [f"score_row, {t} thread(s){'':<14}{v:>14.2f} expressions/s"
            for t, v in result["score_row_expressions_per_s"].items()]
  est = result["estimate"]
  lines.append(f"{est['expressions']} expressions on {est['cores']} cores: "
               f"{est['seconds_if_no_original_face']:.0f} s (no face in any original) to "
               f"{est['seconds_if_every_original_face']:.0f} s (a face in every original)")
  if "whole_evaluation" in result:
    whole = result["whole_evaluation"]
    lines.append(f"evaluate_split whole: {whole['expressions']} expressions in "
                 f"{whole['seconds']:.1f} s")
  return "\n".join(lines)


def measure(config) -> dict:
  """Stage seconds on one thread, pool rates, the estimate (and the whole split)."""
  vocab = sources.load_vocab(config)
  source = sources.open_source(config, "test")
  cv2.setNumThreads(1)  # Stage times on one core.
  rows = eval_stages.rows(config, source, vocab)
  stages = eval_stages.stage_seconds(config, source, vocab, rows)
  cpus = pipeline_lib.available_cpus()
  cv2.setNumThreads(0)
  result = {"device": jax.devices()[0].device_kind, "available_cpus": cpus,
            "size": FLAGS.size, "expressions_timed": len(rows),
            "seconds_per_expression_one_thread": stages,
            "score_row_expressions_per_s": {str(t): eval_stages.pool_rate(config, rows, t)
                                            for t in sorted({1, cpus})},
            "estimate": eval_stages.estimate(stages, FLAGS.expressions, FLAGS.cores)}
  if FLAGS.whole:
    result["whole_evaluation"] = eval_stages.whole_evaluation(config, source, vocab)
  return result


def main(argv) -> None:
  cli.no_arguments(argv)
  with cli.one_line_errors():
    data_dir = full_size_twin.make(FLAGS.work_dir)
    config = full_size_twin.config(FLAGS.config, data_dir, FLAGS.size)
    config.eval_batch_size, config.compute_tdir = FLAGS.batch, True
    config.dataset.num_workers, config.eval_max_examples = 0, FLAGS.max_expressions
    result = measure(config)
    print(format_table(result))
    result["command"] = records.command("brppnet_jax.measure.eval_speed")
    path = FLAGS.json or records.results_path("eval_host")
    print(f"wrote {records.write_json(path, result)}")


if __name__ == "__main__":
  app.run(main)
