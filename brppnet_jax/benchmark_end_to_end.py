"""Times the real training loop: ArrayRecord files -> Grain workers -> device -> jitted step.

    python -m brppnet_jax.benchmark --end_to_end --workers 1,2 \
        --json benchmarks/results/cpu_end_to_end.json
    python -m brppnet_jax.benchmark_end_to_end --config configs/default.py --batch 32 \
        --dtype bfloat16 --workers 15          # on a GPU host

Data: the synthetic twin at COCO's image size (`full_size_twin`: generated, every picture
and mask scaled so that its longer side is 640 px, noise added so the JPEGs are textured
like photos (their mean size is reported), built with the TFDS builder), reused when built.

For each worker count: the input pipeline alone (examples/s, and per worker), then the loop
as train.py runs it (`DevicePrefetcher`, no host sync but at the end) against the same
compiled step on one batch kept on the device ("step only"). Reports img/s of both, their
ratio, the fraction of the loop's time spent waiting in `next(batches)` and peak memory
(device peak, or the process's peak RSS on the CPU). Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import cv2
from etils import epath
import jax
import numpy as np

from brppnet_jax import benchmark
from brppnet_jax import parallel
from brppnet_jax import steps
from brppnet_jax.data import input_pipeline

COCO_LONGER_SIDE = 640
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(REPO, "configs", "synthetic.py")  # A network the CPU can step.
NOISE_SIGMA = 12.0  # Grey levels of texture, so JPEG decoding costs about what a photo does.


def _scale_released_layout(raw: epath.Path, longer_side: int, seed: int) -> None:
  """Scales every image, mask and bbox of the released layout under `raw` in place."""
  rng = np.random.default_rng(seed)
  anns = {split: json.loads((raw / "anns" / "synthetic" / f"{split}.json").read_text())
          for split in ("train", "test")}
  factors = {}
  for path in sorted((raw / "images" / "train2014").iterdir()):
    rgb = cv2.imread(os.fspath(path), cv2.IMREAD_COLOR)
    factor = longer_side / max(rgb.shape[:2])
    size = (round(rgb.shape[1] * factor), round(rgb.shape[0] * factor))
    big = cv2.resize(rgb, size, interpolation=cv2.INTER_CUBIC).astype(np.float32)
    big = np.clip(big + rng.normal(0, NOISE_SIGMA, big.shape), 0, 255).astype(np.uint8)
    cv2.imwrite(os.fspath(path), big, [cv2.IMWRITE_JPEG_QUALITY, 90])
    factors[path.name] = (factor, size)
  for entries in anns.values():
    for entry in entries:
      factor, size = factors[entry["img_name"]]
      mask_path = raw / "masks" / "synthetic" / f"{entry['segment_id']}.png"
      mask = cv2.imread(os.fspath(mask_path), cv2.IMREAD_GRAYSCALE)
      cv2.imwrite(os.fspath(mask_path), cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST))
      entry["bbox"] = [min(int(v * factor), size[i % 2]) for i, v in enumerate(entry["bbox"])]
  for split, entries in anns.items():
    (raw / "anns" / "synthetic" / f"{split}.json").write_text(json.dumps(entries))


def full_size_twin(work_dir: str, num_train: int = 256, num_test: int = 64,
                   seed: int = 0) -> str:
  """A built synthetic twin at COCO's image size under work_dir; returns its TFDS data_dir."""
  from brppnet_jax.data import build  # pylint: disable=g-import-not-at-top  (TFDS: heavy)
  from brppnet_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  name = f"twin_{COCO_LONGER_SIDE}_{NOISE_SIGMA:g}_{num_train}_{num_test}_{seed}"
  root = epath.Path(work_dir) / name
  data_dir = root / "tfds"
  if not (root / "DONE").exists():
    synthetic.generate(root / "raw", seed=seed, num_train=num_train, num_test=num_test)
    _scale_released_layout(root / "raw", COCO_LONGER_SIDE, seed)
    build.build("synthetic", root / "raw", data_dir, overwrite=True)
    (root / "DONE").touch()
  return os.fspath(data_dir)


def mean_jpeg_kb(work_dir_data: str) -> float:
  raw = epath.Path(work_dir_data).parent / "raw" / "images" / "train2014"
  return float(np.mean([p.stat().length for p in raw.iterdir()]) / 1024)


def configure(args, data_dir: str):
  config = benchmark.load_config(args.config)
  config.dataset.name, config.dataset.data_dir = "rpcoco/synthetic", data_dir
  config.dataset.input_size = args.size or config.dataset.input_size
  config.batch_size = args.batch
  if args.dtype:
    config.model.dtype = args.dtype
  if "allow_random_backbone" in config.model:  # Speed does not depend on the weights.
    config.model.allow_random_backbone = True
  return config


def input_rate(config, source, vocab, workers: int, num_batches: int) -> float:
  """Examples per second out of the training iterator alone, after its workers started."""
  config.dataset.num_workers = workers
  iterator = input_pipeline.create_train_iterator(config, source, vocab, seed=0)
  for _ in range(max(2, workers * config.dataset.prefetch)):  # Start-up and full buffers.
    next(iterator)
  start = time.perf_counter()
  for _ in range(num_batches):
    next(iterator)
  rate = num_batches * config.batch_size / (time.perf_counter() - start)
  iterator.close()
  return rate


def _timed_steps(step, state, batches, num_steps: int):
  """Runs num_steps steps; returns the state, seconds and seconds spent in next(batches)."""
  waited, start = 0.0, time.perf_counter()
  for _ in range(num_steps):
    t = time.perf_counter()
    batch = next(batches)
    waited += time.perf_counter() - t
    state, metrics = step(state, batch)
  jax.block_until_ready((state, metrics))  # The only sync, as at a log step.
  return state, time.perf_counter() - start, waited


def compiled_step(config, example_batch: dict):
  """(compiled train step, fresh replicated state, mesh, compile seconds) for config."""
  mesh = parallel.make_mesh()
  model, tx, train_fn, _ = steps.make_steps(config, steps_per_epoch=1000)
  state, shardings = steps.create_replicated_state(model, config, tx, mesh, steps.prng_key(0))
  start = time.perf_counter()
  step = steps.jit_train(train_fn, mesh, shardings).lower(
      state, parallel.global_batch(example_batch, mesh)).compile()
  return step, state, mesh, time.perf_counter() - start


def loop_rates(config, source, vocab, workers: int, compiled, num_steps: int,
               warmup: int) -> dict:
  """Step-only and end-to-end img/s of the real loop with `workers` Grain workers.

  `compiled` is `compiled_step`'s list [step, state, mesh]; its state is replaced."""
  step, state, mesh = compiled
  config.dataset.num_workers = workers
  host = input_pipeline.create_train_iterator(config, source, vocab, seed=0)
  batches = parallel.DevicePrefetcher(host, mesh, depth=2)
  first = next(batches)
  repeat = iter(lambda: first, None)
  state, _, _ = _timed_steps(step, state, repeat, warmup)
  state, step_s, _ = _timed_steps(step, state, repeat, num_steps)
  state, _, _ = _timed_steps(step, state, batches, warmup)
  state, loop_s, waited = _timed_steps(step, state, batches, num_steps)
  host.close()
  compiled[1] = state
  b = config.batch_size
  return {"workers": workers,
          "step_only_img_per_s": num_steps * b / step_s,
          "end_to_end_img_per_s": num_steps * b / loop_s,
          "end_to_end_over_step_only": step_s / loop_s,
          "input_wait_fraction": waited / loop_s,
          "peak_memory_gb": benchmark.peak_memory_gb()}


def _parse(argv):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--end_to_end", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--config", default=DEFAULT_CONFIG)
  parser.add_argument("--size", type=int, default=416, help="input size (0: the config's)")
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--dtype", default=None, choices=["float32", "bfloat16"])
  parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
  parser.add_argument("--steps", type=int, default=12)
  parser.add_argument("--warmup", type=int, default=3)
  parser.add_argument("--input_batches", type=int, default=40)
  parser.add_argument("--work_dir", default="/tmp/brppnet_benchmark_data")
  parser.add_argument("--num_train", type=int, default=256, help="twin's training scenes")
  parser.add_argument("--json", default="", help="default: benchmarks/results/"
                      "<platform>_end_to_end_<size>_b<batch>.json")
  return parser.parse_args(argv)


def results_path(name: str) -> str:
  """benchmarks/results/<platform>_<name>.json in the repository."""
  return os.path.join(REPO, "benchmarks", "results", f"{jax.devices()[0].platform}_{name}.json")


def main(argv=None) -> dict:
  args = _parse(argv)
  data_dir = full_size_twin(args.work_dir, num_train=args.num_train)
  config = configure(args, data_dir)
  vocab = input_pipeline.load_vocab(config)
  config.model.vocab_size = len(vocab)
  source = input_pipeline.open_source(config, "train")
  result = {"config": os.path.relpath(args.config, REPO),
            "device": jax.devices()[0].device_kind, "num_devices": len(jax.devices()),
            "available_cpus": input_pipeline.available_cpus(), "jax": jax.__version__,
            "dtype": config.model.dtype, "size": config.dataset.input_size,
            "batch": config.batch_size, "refs": len(source),
            "mean_jpeg_kb": mean_jpeg_kb(data_dir), "steps": args.steps, "runs": []}
  config.dataset.num_workers = 0
  example = next(input_pipeline.create_train_iterator(config, source, vocab, seed=0))
  step, state, mesh, result["compile_s"] = compiled_step(config, example)
  compiled = [step, state, mesh]
  for workers in (int(w) for w in args.workers.split(",")):
    rate = input_rate(config, source, vocab, workers, args.input_batches)
    run = {"input_examples_per_s": rate,
           "input_examples_per_s_per_worker": rate / max(1, workers),
           **loop_rates(config, source, vocab, workers, compiled, args.steps, args.warmup)}
    result["runs"].append(run)
    print(format_run(run), flush=True)
  path = args.json or results_path(f"end_to_end_{result['size']}_b{result['batch']}")
  with open(path, "w", encoding="utf-8") as f:
    json.dump(result, f, indent=2)
  print(f"wrote {path}")
  return result


def format_run(run: dict) -> str:
  return (f"{run['workers']} workers: input {run['input_examples_per_s']:.1f} ex/s "
          f"({run['input_examples_per_s_per_worker']:.1f} per worker); step only "
          f"{run['step_only_img_per_s']:.2f} img/s, end to end "
          f"{run['end_to_end_img_per_s']:.2f} img/s "
          f"({100 * run['end_to_end_over_step_only']:.0f}%), waited for input "
          f"{100 * run['input_wait_fraction']:.1f}% of the loop, peak memory "
          f"{run['peak_memory_gb']:.2f} GB")


if __name__ == "__main__":
  main()
