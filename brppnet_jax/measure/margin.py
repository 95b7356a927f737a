"""How much of each true person does the protected region leave visible, per margin?

    python -m brppnet_jax.measure.margin --workdir=WORKDIR [--data_dir=DIR] [--split=test]

For every expression of the split, the trained model's mask (probability >= 0.5, as
`protect` takes it) is dilated by each margin (`hiding.dilate_mask`) and compared with the
ground-truth person at the original size: the share of the person's pixels left outside
the region (visible), the share of people left with more than 5 % visible, and what the
margin costs (background pixels protected, as a share of the person's size). Prints a table
and writes JSON (default benchmarks/results/margin.json).
"""

from __future__ import annotations

import json
import os
import time

from absl import app
from absl import flags

from brppnet_jax.data import sources
from brppnet_jax.measure import margin_coverage
from brppnet_jax.protect import predictor as predictor_lib
from brppnet_jax.runtime import cli
from brppnet_jax.runtime import devices

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "A trained workdir (its best checkpoint is used).")
flags.DEFINE_string("data_dir", None, "TFDS data_dir; default: the checkpoint config's.")
flags.DEFINE_string("split", "test", "The split whose expressions are measured.")
flags.DEFINE_list("margins", ["0", "0.02", "0.05", "0.1"], "Margins (share of mask extent).")
flags.DEFINE_integer("max_expressions", 0, "Measure only the first N expressions (0: all).")
flags.DEFINE_string("out", "benchmarks/results/margin.json", "Where the JSON goes.")


def main(argv):
  cli.no_arguments(argv)
  with cli.one_line_errors():
    if not FLAGS.workdir:
      raise app.UsageError("--workdir is required (a trained workdir)")
    try:
      margins = [float(m) for m in FLAGS.margins]
    except ValueError:
      raise app.UsageError(f"--margins must be numbers, got {FLAGS.margins}") from None
    predictor = predictor_lib.Predictor.from_workdir(FLAGS.workdir)
    config = predictor.config
    if FLAGS.data_dir:
      config.dataset.data_dir = FLAGS.data_dir
    source = sources.open_source(config, FLAGS.split)
    start = time.time()
    result = margin_coverage.measure(predictor, source, margins, FLAGS.max_expressions)
    print(f"{'margin':>7} {'visible':>8} {'>5% seen':>9} {'extra':>7}   "
          f"({result['expressions']} expressions, {FLAGS.split})")
    for m, r in result["by_margin"].items():
      print(f"{m:>7} {r['visible']:8.4f} {r['leaking']:9.4f} {r['extra']:7.4f}")
    result = {"date": time.strftime("%Y-%m-%d"), "machine": devices.machine(),
              "workdir": FLAGS.workdir, "step": predictor.step, "split": FLAGS.split,
              "seconds": time.time() - start, **result}
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
    with open(FLAGS.out + ".tmp", "w") as f:
      json.dump(result, f, indent=1)
    os.replace(FLAGS.out + ".tmp", FLAGS.out)
    print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
  app.run(main)
