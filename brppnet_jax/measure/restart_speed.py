r"""How much a warm persistent compilation cache saves when a preempted run restarts.

    python -m brppnet_jax.measure.restart_speed \
        --json benchmarks/results/cpu_restart_compilation_cache.json
    python -m brppnet_jax.measure.restart_speed --data_dir DIR --config configs/synthetic.py

Trains `--steps` steps once (which fills a compilation cache), then restarts copies of that
workdir for `--more` steps, alternately with the cache off (everything compiles again) and
on (the train and predict steps load from it), `--repeats` times each. Each restart is a
whole `python -m brppnet_jax.main` process: imports, data, restore, compile, steps, one
evaluation. Prints a table and writes the timings as JSON. Without --data_dir it first makes
a small synthetic dataset in a temporary directory.
"""

from __future__ import annotations

import datetime
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
import jax

from brppnet_jax.measure import records
from brppnet_jax.runtime import cli
from brppnet_jax.runtime import devices
from brppnet_jax.runtime import paths

FLAGS = flags.FLAGS
flags.DEFINE_string("config", "configs/synthetic.py", "Config file of every run.")
flags.DEFINE_string("data_dir", "", "A built TFDS data_dir for the config (default: a small "
                    "synthetic dataset made in a temporary directory).")
flags.DEFINE_integer("steps", 10, "Steps of the first run.")
flags.DEFINE_integer("more", 10, "Steps each restart adds.")
flags.DEFINE_integer("repeats", 2, "Restarts of each kind (cache off, cache warm).")
flags.DEFINE_string("json", "", "Write the result here (default: print only).")


def _run(args: list[str], env: dict) -> float:
  """Seconds a `python -m ...` process took; its stderr on failure."""
  start = time.perf_counter()
  proc = subprocess.run([sys.executable, "-m", *args], env=env, capture_output=True, text=True,
                        check=False)
  seconds = time.perf_counter() - start
  if proc.returncode != 0:
    raise RuntimeError(f"{' '.join(args[:2])} failed:\n{proc.stderr[-3000:]}")
  return seconds


def make_dataset(root: str, env: dict) -> str:
  """A small synthetic dataset generated and built under `root`; returns its data_dir."""
  raw, tfds_dir = os.path.join(root, "raw"), os.path.join(root, "tfds")
  _run(["brppnet_jax.data.synthetic", "--out", raw, "--seed", "0", "--num_train", "200",
        "--num_test", "40"], env)
  _run(["brppnet_jax.data.build", "--dataset=synthetic", f"--manual_dir={raw}",
        f"--data_dir={tfds_dir}"], env)
  return tfds_dir


def train_args(config: str, workdir: str, data_dir: str, total: int, cache: str) -> list[str]:
  """`python -m` arguments training `config` to `total` steps with compilation cache `cache`."""
  return ["brppnet_jax.main", f"--config={config}", f"--workdir={workdir}",
          f"--config.dataset.data_dir={data_dir}", f"--config.total_steps={total}",
          f"--config.checkpoint_every_steps={total}", f"--config.eval_every_steps={total}",
          "--config.eval_max_examples=16", "--config.num_image_summaries=0",
          "--config.dataset.num_workers=0", f"--config.compilation_cache_dir={cache}"]


def measure(config: str, root: str, env: dict) -> dict:
  """Times the first run and every restart under `root`; returns the record."""
  load_before = os.getloadavg()[0]  # Other work on a shared machine slows every run.
  data_dir = FLAGS.data_dir or make_dataset(os.path.join(root, "data"), env)
  cache, base = os.path.join(root, "cache"), os.path.join(root, "base")
  first = _run(train_args(config, base, data_dir, FLAGS.steps, cache), env)
  runs = []
  for repeat in range(FLAGS.repeats):
    for setting in ("off", cache):
      workdir = os.path.join(root, f"restart_{repeat}_{'cold' if setting == 'off' else 'warm'}")
      shutil.copytree(base, workdir)
      seconds = _run(train_args(config, workdir, data_dir, FLAGS.steps + FLAGS.more,
                                setting), env)
      runs.append({"repeat": repeat, "cache": "off" if setting == "off" else "warm",
                   "seconds": round(seconds, 2)})
  cold = statistics.median(r["seconds"] for r in runs if r["cache"] == "off")
  warm = statistics.median(r["seconds"] for r in runs if r["cache"] == "warm")
  return {"date": datetime.date.today().isoformat(), "machine": devices.machine(),
          "jax": jax.__version__, "config": config, "steps": FLAGS.steps,
          "restart_steps": FLAGS.more, "first_run_seconds_empty_cache": round(first, 2),
          "cache_files": sorted(os.listdir(cache)), "runs": runs,
          "restart_seconds_cache_off_median": cold, "restart_seconds_cache_warm_median": warm,
          "saved_seconds": round(cold - warm, 2), "saved_fraction": round(1 - warm / cold, 3),
          "load_average_1min_before_after": [load_before, os.getloadavg()[0]],
          "command": records.command("brppnet_jax.measure.restart_speed")}


def table(result: dict) -> str:
  """Markdown: one row per restart, then the medians and what the cache saved."""
  rows = "\n".join(f"| {run['repeat'] + 1} | {run['cache']} | {run['seconds']:.1f} |"
                   for run in result["runs"])
  summary = (f"median: {result['restart_seconds_cache_off_median']:.1f} s cold, "
             f"{result['restart_seconds_cache_warm_median']:.1f} s warm; saved "
             f"{result['saved_seconds']:.1f} s ({100 * result['saved_fraction']:.0f}%)")
  return f"| restart | compilation cache | seconds |\n|---|---|---:|\n{rows}\n\n{summary}"


def main(argv) -> None:
  cli.no_arguments(argv)
  with cli.one_line_errors():
    config = paths.resolve_config_file(FLAGS.config)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    with tempfile.TemporaryDirectory() as root:
      result = measure(config, root, env)
    print(table(result))
    if FLAGS.json:
      records.write_json(FLAGS.json, result, indent=1)
      print(f"wrote {FLAGS.json}")


if __name__ == "__main__":
  app.run(main)
