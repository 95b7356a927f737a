r"""Times pre-processing per example and the training input pipeline on synthetic records.

    python -m brppnet_jax.measure.pipeline_speed --num_examples 200 --size 416 --workers 0 \
        --json pipeline.json

Makes N synthetic 640x480 JPEGs (about 120 KB each, like COCO's) with person-like PNG masks
and 11-word expressions in memory. Stage times run on one core (OpenCV limited to one
thread); PIL's bicubic resize is timed as a reference for the choice made in letterbox.py.
Then the training iterator runs with --workers processes (0: in-process, no prefetch
threads). Prints a table and writes the numbers as JSON.
"""

from __future__ import annotations

import os

from absl import app
from absl import flags
import numpy as np

from brppnet_jax.measure import pipeline_stages
from brppnet_jax.measure import records
from brppnet_jax.runtime import cli

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_examples", 200, "Synthetic records made (at least 4 * --batch).")
flags.DEFINE_integer("size", 416, "Input size.")
flags.DEFINE_integer("stride", 2, "Output stride of the masks.")
flags.DEFINE_integer("word_len", 15, "Tokens per expression.")
flags.DEFINE_integer("workers", 0, "Grain worker processes (0: in-process).")
flags.DEFINE_integer("batch", 8, "Batch size of the training iterator.")
flags.DEFINE_string("json", "", "Write the result here (default: print only).")


def format_table(result: dict) -> str:
  """The setting, milliseconds per stage and the pipeline's rate."""
  stages, workers = result["ms_per_stage"], result["workers"]
  lines = [f"{pipeline_stages.WIDTH}x{pipeline_stages.HEIGHT} JPEGs "
           f"({result['mean_jpeg_kb']:.0f} KB) -> {result['size']}, mask stride "
           f"{result['stride']}, {result['num_examples']} examples",
           f"{'stage (one core)':<32}{'ms/example':>12}"]
  lines += [f"{name:<32}{ms:>12.3f}" for name, ms in stages.items()]
  lines.append(f"{'examples/s per core':<32}{result['examples_per_s_per_core']:>12.1f}")
  lines.append(f"{f'pipeline, {workers} workers':<32}"
               f"{result['pipeline_examples_per_s']:>12.1f} examples/s "
               f"({result['pipeline_examples_per_s_per_worker']:.1f} per worker)")
  return "\n".join(lines)


def main(argv) -> None:
  cli.no_arguments(argv)
  if FLAGS.num_examples < 4 * FLAGS.batch:
    raise app.UsageError(f"--num_examples must be at least 4 * --batch = {4 * FLAGS.batch}")
  records_made = [pipeline_stages.synthetic_record(i) for i in range(FLAGS.num_examples)]
  stages = pipeline_stages.stage_times(records_made, FLAGS.size, FLAGS.stride, FLAGS.word_len)
  rate = pipeline_stages.pipeline_rate(records_made, FLAGS.size, FLAGS.stride, FLAGS.word_len,
                                       FLAGS.workers, FLAGS.batch)
  result = {
      "image": f"{pipeline_stages.WIDTH}x{pipeline_stages.HEIGHT} JPEG", "size": FLAGS.size,
      "stride": FLAGS.stride, "num_examples": FLAGS.num_examples,
      "mean_jpeg_kb": float(np.mean([len(r["image"]) for r in records_made]) / 1024),
      "ms_per_stage": stages,
      "examples_per_s_per_core": 1e3 / stages["example_total"],
      "workers": FLAGS.workers, "cpu_count": os.cpu_count(),
      "pipeline_examples_per_s": rate,
      "pipeline_examples_per_s_per_worker": rate / max(1, FLAGS.workers),
  }
  print(format_table(result))
  if FLAGS.json:
    result["command"] = records.command("brppnet_jax.measure.pipeline_speed")
    records.write_json(FLAGS.json, result)


if __name__ == "__main__":
  app.run(main)
