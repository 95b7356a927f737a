"""How much a warm persistent compilation cache saves when a preempted run restarts.

    python -m brppnet_jax.restart_benchmark --json benchmarks/results/cpu_restart_compilation_cache.json
    python -m brppnet_jax.restart_benchmark --data_dir DIR --config configs/synthetic.py

Trains `--steps` steps once (which fills a compilation cache), then restarts copies of that
workdir for `--more` steps, alternately with the cache off (everything compiles again) and
on (the train and predict steps load from it), `--repeats` times each. Each restart is a
whole `python -m brppnet_jax.main` process: imports, data, restore, compile, steps, one
evaluation. Prints a table and writes the timings as JSON. Without --data_dir it first makes
a small synthetic dataset in a temporary directory.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import jax

from brppnet_jax import paths


def _run(args: list[str], env: dict) -> float:
  """Seconds a `python -m ...` process took; its stderr on failure."""
  start = time.perf_counter()
  proc = subprocess.run([sys.executable, "-m", *args], env=env, capture_output=True, text=True)
  seconds = time.perf_counter() - start
  if proc.returncode != 0:
    raise RuntimeError(f"{' '.join(args[:2])} failed:\n{proc.stderr[-3000:]}")
  return seconds


def make_dataset(root: str, env: dict) -> str:
  raw, tfds_dir = os.path.join(root, "raw"), os.path.join(root, "tfds")
  _run(["brppnet_jax.data.synthetic", "--out", raw, "--seed", "0", "--num_train", "200",
        "--num_test", "40"], env)
  _run(["brppnet_jax.data.build", "--dataset=synthetic", f"--manual_dir={raw}",
        f"--data_dir={tfds_dir}"], env)
  return tfds_dir


def train_args(config: str, workdir: str, data_dir: str, total: int, cache: str) -> list[str]:
  return ["brppnet_jax.main", f"--config={config}", f"--workdir={workdir}",
          f"--config.dataset.data_dir={data_dir}", f"--config.total_steps={total}",
          f"--config.checkpoint_every_steps={total}", f"--config.eval_every_steps={total}",
          "--config.eval_max_examples=16", "--config.num_image_summaries=0",
          "--config.dataset.num_workers=0", f"--config.compilation_cache_dir={cache}"]


def machine() -> str:
  model = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      model = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
  except (OSError, StopIteration):
    pass
  return f"{os.cpu_count()} cores, {model}"


def measure(args, root: str, env: dict) -> dict:
  load_before = os.getloadavg()[0]  # Other work on a shared machine slows every run.
  data_dir = args.data_dir or make_dataset(os.path.join(root, "data"), env)
  cache, base = os.path.join(root, "cache"), os.path.join(root, "base")
  first = _run(train_args(args.config, base, data_dir, args.steps, cache), env)
  runs = []
  for repeat in range(args.repeats):
    for setting in ("off", cache):
      workdir = os.path.join(root, f"restart_{repeat}_{'cold' if setting == 'off' else 'warm'}")
      shutil.copytree(base, workdir)
      seconds = _run(train_args(args.config, workdir, data_dir, args.steps + args.more,
                                setting), env)
      runs.append({"repeat": repeat, "cache": "off" if setting == "off" else "warm",
                   "seconds": round(seconds, 2)})
  cold = statistics.median(r["seconds"] for r in runs if r["cache"] == "off")
  warm = statistics.median(r["seconds"] for r in runs if r["cache"] == "warm")
  return {"date": datetime.date.today().isoformat(), "machine": machine(),
          "jax": jax.__version__, "config": args.config, "steps": args.steps,
          "restart_steps": args.more, "first_run_seconds_empty_cache": round(first, 2),
          "cache_files": sorted(os.listdir(cache)), "runs": runs,
          "restart_seconds_cache_off_median": cold, "restart_seconds_cache_warm_median": warm,
          "saved_seconds": round(cold - warm, 2), "saved_fraction": round(1 - warm / cold, 3),
          "load_average_1min_before_after": [load_before, os.getloadavg()[0]],
          "command": "python -m brppnet_jax.restart_benchmark " + " ".join(sys.argv[1:])}


def table(result: dict) -> str:
  lines = ["| restart | compilation cache | seconds |", "|---|---|---:|"]
  for run in result["runs"]:
    lines.append(f"| {run['repeat'] + 1} | {run['cache']} | {run['seconds']:.1f} |")
  lines.append(f"\nmedian: {result['restart_seconds_cache_off_median']:.1f} s cold, "
               f"{result['restart_seconds_cache_warm_median']:.1f} s warm; saved "
               f"{result['saved_seconds']:.1f} s ({100 * result['saved_fraction']:.0f}%)")
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", default="configs/synthetic.py")
  parser.add_argument("--data_dir", default="", help="A built TFDS data_dir for the config.")
  parser.add_argument("--steps", type=int, default=10, help="Steps of the first run.")
  parser.add_argument("--more", type=int, default=10, help="Steps each restart adds.")
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--json", default="")
  args = parser.parse_args()
  args.config = paths.resolve_config_file(args.config)
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
  with tempfile.TemporaryDirectory() as root:
    result = measure(args, root, env)
  print(table(result))
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(result, f, indent=1)
    print(f"wrote {args.json}")


if __name__ == "__main__":
  main()
