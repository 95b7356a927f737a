r"""File size, one-photo latency and mIoU of the exported predictors against the JAX one.

    python -m brppnet_jax.measure.export --demo_workdir=workdirs/synthetic \
        --data_dir=data/tfds [--runs=7] [--nofull_size]

For the demo's network (a trained synthetic workdir) and the full-size one (configs/default.py
at 416 px, random weights, a vocabulary of --vocab_size words: size and speed do not depend
on the weights), each variant is exported by `python -m brppnet_jax.protect.export`, then
timed in a process of its own: loading, the first call (compilation, allocation) and the
median of --runs further calls on one 640x480 photo, letterbox and its inverse included.
mIoU over the demo data's test split: `export_parity.compare_on_split`. Writes
benchmarks/results/cpu_export.json and prints the table of BENCHMARKS.md.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

from absl import app
from absl import flags
import numpy as np

from brppnet_jax.runtime import config_files

FLAGS = flags.FLAGS
flags.DEFINE_string("demo_workdir", "workdirs/synthetic", "A trained configs/synthetic.py workdir.")
flags.DEFINE_string("data_dir", "data/tfds", "TFDS data_dir holding the demo's synthetic data.")
flags.DEFINE_bool("full_size", True, "Also measure the full-size network (size and speed).")
flags.DEFINE_integer("vocab_size", 10000, "Words of the full-size network's vocabulary.")
flags.DEFINE_integer("runs", 7, "Timed calls after the first, per variant.")
flags.DEFINE_string("work_dir", "/tmp/brppnet_export_benchmark", "Where exports are written.")
flags.DEFINE_bool("reuse_exports", False, "Keep model files already in --work_dir (from an "
                  "interrupted run) instead of exporting them again.")
flags.DEFINE_string("out", config_files.repo_path("benchmarks", "results", "cpu_export.json"),
                    "The JSON record.")
flags.DEFINE_string("time_one", None, "Internal: RUNTIME=PATH, time one variant in this "
                    "process and print its JSON (jax=WORKDIR, lite=MODEL FILE).")

REQUEST = "protect privacy of man in red shirt"
PHOTO_SIZE = (480, 640)  # (h, w): COCO's usual photo.
VARIANTS = (("tflite_float32", "tflite", "none"), ("tflite_float16", "tflite", "float16"),
            ("tflite_dynamic_int8", "tflite", "dynamic_int8"), ("stablehlo", "stablehlo", "none"))


def benchmark_photo() -> np.ndarray:
  """uint8 [480, 640, 3]: a smooth, deterministic picture (timing only, no person needed)."""
  rows, cols = np.mgrid[0:PHOTO_SIZE[0], 0:PHOTO_SIZE[1]]
  rgb = np.stack([rows * 255 // PHOTO_SIZE[0], cols * 255 // PHOTO_SIZE[1],
                  (rows + cols) % 256], axis=-1)
  return rgb.astype(np.uint8)


def time_one(spec: str, runs: int) -> dict:
  """Load, first call and the median of `runs` calls of one predictor, in this process."""
  runtime, path = spec.split("=", 1)
  start = time.perf_counter()
  if runtime == "jax":
    from brppnet_jax.protect import predictor  # pylint: disable=g-import-not-at-top
    model = predictor.Predictor.from_workdir(path, max_batch_size=1)
  else:
    from brppnet_jax.protect import lite  # pylint: disable=g-import-not-at-top
    model = lite.LitePredictor.from_file(path)
  load_s = time.perf_counter() - start
  rgb = benchmark_photo()
  start = time.perf_counter()
  model.predict_mask(rgb, REQUEST)
  first_s = time.perf_counter() - start
  seconds = []
  for _ in range(runs):
    start = time.perf_counter()
    model.predict_mask(rgb, REQUEST)
    seconds.append(time.perf_counter() - start)
  return {"load_s": load_s, "first_call_s": first_s, "median_s": statistics.median(seconds),
          "runs_s": seconds}


def _python(*args: str) -> str:
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
  proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                        cwd=config_files.repo_path())
  if proc.returncode != 0:
    raise RuntimeError(f"{' '.join(args)} failed:\n{proc.stderr[-3000:]}")
  return proc.stdout


def make_full_size_workdir(path: str, demo_words: list[str], vocab_size: int) -> str:
  """A workdir with one checkpoint (step 0) of configs/default.py's network, random weights."""
  import jax  # pylint: disable=g-import-not-at-top

  from brppnet_jax.train import checkpoints  # pylint: disable=g-import-not-at-top
  from brppnet_jax.train import step_functions  # pylint: disable=g-import-not-at-top
  from brppnet_jax.train import train_state  # pylint: disable=g-import-not-at-top
  if os.path.isdir(os.path.join(path, "checkpoints")):
    return path
  config = config_files.load_config(config_files.repo_path("configs", "default.py"))
  words = list(demo_words) + [f"word{i}" for i in range(vocab_size - len(demo_words))]
  config.model.vocab_size = len(words)
  model, tx, _, _ = step_functions.make_steps(config, steps_per_epoch=1)
  state = jax.jit(lambda r: train_state.create_train_state(model, config, tx, r))(
      train_state.prng_key(0))
  ckpts = checkpoints.Checkpoints(path, async_save=False)
  try:
    ckpts.save(0, state, config=config, vocab_words=words, force=True)
    ckpts.wait()
  finally:
    ckpts.close()
  return path


def export_all(workdir: str, folder: str, reuse: bool) -> dict:
  """{variant: {path, size_bytes, export_s}}, each exported by the export command (export_s
  None for a file kept from an earlier run with `reuse`)."""
  os.makedirs(folder, exist_ok=True)
  out = {}
  for name, fmt, quantize in VARIANTS:
    path = os.path.join(folder, f"{name}.{fmt}")
    if reuse and os.path.exists(path) and os.path.exists(path + ".json"):
      out[name] = {"path": path, "size_bytes": os.path.getsize(path), "export_s": None}
      continue
    for stale in (path, path + ".json"):
      if os.path.exists(stale):
        os.remove(stale)
    start = time.perf_counter()
    _python("-m", "brppnet_jax.protect.export", f"--workdir={workdir}", f"--format={fmt}",
            f"--quantize={quantize}", f"--out={path}")
    out[name] = {"path": path, "size_bytes": os.path.getsize(path),
                 "export_s": time.perf_counter() - start}
  return out


def measure_network(workdir: str, folder: str, runs: int, reuse: bool) -> dict:
  """Sizes and latencies of the JAX predictor and every exported variant of `workdir`."""
  exported = export_all(workdir, folder, reuse)
  record = {"jax": {"size_bytes": None}}
  for name, spec in [("jax", f"jax={workdir}"),
                     *((n, f"lite={e['path']}") for n, e in exported.items())]:
    timing = json.loads(_python("-m", "brppnet_jax.measure.export", f"--time_one={spec}",
                                f"--runs={runs}").strip().splitlines()[-1])
    record[name] = {**exported.get(name, record.get(name, {})), **timing}
    print(f"{workdir} {name}: {record[name]['median_s'] * 1e3:.1f} ms", flush=True)
  return record


def demo_miou(workdir: str, data_dir: str, exported: dict) -> dict:
  """{variant: mIoU ...} of the demo's network and its exports over its test split."""
  from brppnet_jax.data import sources  # pylint: disable=g-import-not-at-top
  from brppnet_jax.measure import export_parity  # pylint: disable=g-import-not-at-top
  from brppnet_jax.protect import lite  # pylint: disable=g-import-not-at-top
  from brppnet_jax.protect import predictor as predictor_lib  # pylint: disable=g-import-not-at-top
  predictor = predictor_lib.Predictor.from_workdir(workdir)
  config = predictor.eval_config(predictor.config)
  config.dataset.data_dir = data_dir
  lites = {name: lite.LitePredictor.from_file(entry["path"])
           for name, entry in exported.items()}
  result = export_parity.compare_on_split(predictor, lites, config,
                                          sources.open_source(config, "test"))
  return {name: {"miou": r["metrics"]["miou"], "num_expressions": r["metrics"]["num_expressions"],
                 **{k: v for k, v in r.items() if k != "metrics"}} for name, r in result.items()}


def format_table(record: dict) -> str:
  lines = ["| network | runtime | file MiB | load s | first call s | median ms | mIoU |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
  for network, variants in record["networks"].items():
    for name, v in variants.items():
      size = "" if v.get("size_bytes") is None else f"{v['size_bytes'] / 2**20:.2f}"
      miou = record["miou"].get(name, {}).get("miou") if network == "demo" else None
      lines.append(f"| {network} | {name} | {size} | {v['load_s']:.2f} | "
                   f"{v['first_call_s']:.2f} | {v['median_s'] * 1e3:.1f} | "
                   f"{'' if miou is None else f'{miou:.4f}'} |")
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if FLAGS.time_one:
    print(json.dumps(time_one(FLAGS.time_one, FLAGS.runs)))
    return
  from brppnet_jax.runtime import devices  # pylint: disable=g-import-not-at-top
  networks = {"demo": FLAGS.demo_workdir}
  if FLAGS.full_size:
    from brppnet_jax.train import checkpoints  # pylint: disable=g-import-not-at-top
    ckpts = checkpoints.Checkpoints(FLAGS.demo_workdir, read_only=True)
    _, words, _ = ckpts.restore_metadata(ckpts.best_step())
    ckpts.close()
    networks["full"] = make_full_size_workdir(os.path.join(FLAGS.work_dir, "full_workdir"),
                                              words, FLAGS.vocab_size)
  record = {"date": time.strftime("%Y-%m-%d"), "machine": devices.machine(),
            "command": " ".join(["python -m brppnet_jax.measure.export", *sys.argv[1:]]),
            "photo": list(PHOTO_SIZE), "runs": FLAGS.runs, "networks": {},
            "load_average_1min_start": os.getloadavg()[0]}  # Others' work shares the cores.
  for network, workdir in networks.items():
    record["networks"][network] = measure_network(
        workdir, os.path.join(FLAGS.work_dir, network), FLAGS.runs, FLAGS.reuse_exports)
  demo = {k: v for k, v in record["networks"]["demo"].items() if k != "jax"}
  record["miou"] = demo_miou(FLAGS.demo_workdir, FLAGS.data_dir, demo)
  record["load_average_1min_end"] = os.getloadavg()[0]
  os.makedirs(os.path.dirname(FLAGS.out), exist_ok=True)
  with open(FLAGS.out, "w") as f:
    json.dump(record, f, indent=1)
  print(format_table(record))
  print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
  app.run(main)
