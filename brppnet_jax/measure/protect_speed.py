r"""Photos per second of the protect CLI's folder mode: read, predict, hide, write PNG.

    python -m brppnet_jax.measure.protect_speed --workdir=demo_out/workdir \
        --photos=demo_out/raw/images/train2014 [--count=64]

Times `protect.batch.run` on the first `--count` images of a folder, once with the
predictor's batches (its eval batch size) and once one photo at a time, each after a warm-up
run that compiles the network. Every photo gets the same request; empty masks are allowed
(the speed does not depend on them). Prints a table, writes JSON.
"""

from __future__ import annotations

import os
import tempfile
import time

from absl import app
from absl import flags
import jax

from brppnet_jax.measure import records
from brppnet_jax.protect import batch
from brppnet_jax.protect import hiding
from brppnet_jax.protect import predictor as predictor_lib
from brppnet_jax.runtime import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Training workdir whose best checkpoint is timed.")
flags.DEFINE_string("photos", None, "Folder of photos (the first --count are used).")
flags.DEFINE_integer("count", 64, "Photos per timed run.")
flags.DEFINE_string("text", "protect privacy of the person in the middle", "The request.")
flags.DEFINE_string("json", "", "Where to write the result (default: "
                    "benchmarks/results/<platform>_protect_speed.json).")


def _jobs(files: list[str], text: str, out: str, prefix: str) -> list[batch.Job]:
  return [batch.Job(f, [text], os.path.join(out, f"{prefix}{i}.png"), f)
          for i, f in enumerate(files)]


def time_run(predictor, files: list[str], text: str) -> float:
  """Seconds for batch.run over `files` into a fresh folder (after one warm-up batch)."""
  options = batch.Options(method=hiding.DEFAULT_METHOD, allow_empty=True, overwrite=True)
  with tempfile.TemporaryDirectory() as out:
    warm = _jobs(files[:predictor.max_batch_size], text, out, "warm")
    batch.run(predictor, warm, options, os.path.join(out, "warm.json"))
    jobs = _jobs(files, text, out, "")
    start = time.perf_counter()
    batch.run(predictor, jobs, options, os.path.join(out, "report.json"))
    return time.perf_counter() - start


def main(argv) -> None:
  cli.no_arguments(argv)
  with cli.one_line_errors():
    if not FLAGS.workdir or not FLAGS.photos:
      raise ValueError("--workdir and --photos are required")
    files = batch.image_files(FLAGS.photos)[:FLAGS.count]
    if not files:
      raise ValueError(f"no images in {FLAGS.photos}")
    result = {"device": jax.devices()[0].device_kind, "devices": jax.device_count(),
              "cpus": len(os.sched_getaffinity(0)), "photos": len(files),
              "workdir": FLAGS.workdir, "runs": {},
              # Other work on the machine slows this down: the 1-minute load before the runs.
              "load_average_1min": round(os.getloadavg()[0], 2)}
    for name, rows in (("batched", None), ("one at a time", 1)):
      predictor = predictor_lib.Predictor.from_workdir(FLAGS.workdir, max_batch_size=rows)
      seconds = time_run(predictor, files, FLAGS.text)
      result["runs"][name] = {"batch_rows": predictor.max_batch_size,
                              "seconds": round(seconds, 3),
                              "photos_per_second": round(len(files) / seconds, 2)}
    print(f"{'run':<16}{'batch rows':>12}{'seconds':>10}{'photos/s':>10}")
    for name, run in result["runs"].items():
      print(f"{name:<16}{run['batch_rows']:>12}{run['seconds']:>10.2f}"
            f"{run['photos_per_second']:>10.2f}")
    result["command"] = records.command("brppnet_jax.measure.protect_speed")
    path = FLAGS.json or records.results_path("protect_speed")
    print(f"wrote {records.write_json(path, result)}")


if __name__ == "__main__":
  app.run(main)
