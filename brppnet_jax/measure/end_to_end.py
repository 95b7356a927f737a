r"""Times the real training loop: ArrayRecord files -> Grain workers -> device -> jitted step.

    python -m brppnet_jax.measure.end_to_end --workers 1,2 \
        --json benchmarks/results/cpu_end_to_end.json
    python -m brppnet_jax.measure.end_to_end --config configs/default.py --batch 32 \
        --dtype bfloat16 --workers 15          # on a GPU host

Data: the synthetic twin at COCO's image size (`measure/full_size_twin.py`: every picture and
mask scaled so that its longer side is 640 px, JPEGs textured like photos, their mean size
reported), built once and reused.

For each worker count: the input pipeline alone (examples/s, and per worker), then the loop
as train/loop.py runs it (`DevicePrefetcher`, no host sync but at the end) against the same
compiled step on one batch kept on the device ("step only"). Reports img/s of both, their
ratio, the fraction of the loop's time spent waiting in `next(batches)` and peak memory
(device peak, or the process's peak RSS on the CPU). Prints a table, writes JSON.
"""

from __future__ import annotations

import time

from absl import app
from absl import flags
import jax

from brppnet_jax.data import pipeline as pipeline_lib
from brppnet_jax.data import sources
from brppnet_jax.measure import full_size_twin
from brppnet_jax.measure import records
from brppnet_jax.runtime import cli
from brppnet_jax.runtime import config_files
from brppnet_jax.runtime import devices
from brppnet_jax.runtime import prefetch
from brppnet_jax.runtime import sharding
from brppnet_jax.train import step_functions
from brppnet_jax.train import train_state

FLAGS = flags.FLAGS
flags.DEFINE_string("config", full_size_twin.CONFIG, "Config file whose network is trained.")
flags.DEFINE_integer("size", 416, "Input size (0: the config's).")
flags.DEFINE_integer("batch", 16, "Global batch size.")
flags.DEFINE_enum("dtype", None, ["float32", "bfloat16"],
                  "Compute dtype (default: the config's).")
flags.DEFINE_list("workers", ["1", "2"], "Grain worker counts to measure, one run each.")
flags.DEFINE_integer("steps", 12, "Timed steps of each run.")
flags.DEFINE_integer("warmup", 3, "Untimed steps before them.")
flags.DEFINE_integer("input_batches", 40, "Batches timed out of the input pipeline alone.")
flags.DEFINE_string("work_dir", full_size_twin.WORK_DIR, "Where the twin is built (once).")
flags.DEFINE_integer("num_train", 256, "The twin's training scenes.")
flags.DEFINE_string("json", "", "Where to write the result (default: benchmarks/results/"
                    "<platform>_end_to_end_<size>_b<batch>.json).")


def input_rate(config, source, vocab, workers: int, num_batches: int) -> float:
  """Examples per second out of the training iterator alone, after its workers started."""
  config.dataset.num_workers = workers
  iterator = pipeline_lib.create_train_iterator(config, source, vocab, seed=0)
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
  mesh = sharding.make_mesh()
  model, tx, train_fn, _ = step_functions.make_steps(config, steps_per_epoch=1000)
  state, shardings = train_state.create_replicated_state(model, config, tx, mesh,
                                                         train_state.prng_key(0))
  start = time.perf_counter()
  step = step_functions.jit_train(train_fn, mesh, shardings).lower(
      state, sharding.global_batch(example_batch, mesh)).compile()
  return step, state, mesh, time.perf_counter() - start


def loop_rates(config, source, vocab, workers: int, compiled, num_steps: int,
               warmup: int) -> dict:
  """Step-only and end-to-end img/s of the real loop with `workers` Grain workers.

  `compiled` is `compiled_step`'s list [step, state, mesh]; its state is replaced."""
  step, state, mesh = compiled
  config.dataset.num_workers = workers
  host = pipeline_lib.create_train_iterator(config, source, vocab, seed=0)
  batches = prefetch.DevicePrefetcher(host, mesh, depth=2)
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
          "peak_memory_gb": devices.peak_memory_gb()}


def format_run(run: dict) -> str:
  """One line per worker count."""
  return (f"{run['workers']} workers: input {run['input_examples_per_s']:.1f} ex/s "
          f"({run['input_examples_per_s_per_worker']:.1f} per worker); step only "
          f"{run['step_only_img_per_s']:.2f} img/s, end to end "
          f"{run['end_to_end_img_per_s']:.2f} img/s "
          f"({100 * run['end_to_end_over_step_only']:.0f}%), waited for input "
          f"{100 * run['input_wait_fraction']:.1f}% of the loop, peak memory "
          f"{run['peak_memory_gb']:.2f} GB")


def measure(config, data_dir: str) -> dict:
  """The record: the setting, then one run per worker count of --workers."""
  vocab = sources.load_vocab(config)
  config.model.vocab_size = len(vocab)
  source = sources.open_source(config, "train")
  result = {"config": config_files.relative_to_repo(FLAGS.config),
            "device": jax.devices()[0].device_kind, "num_devices": len(jax.devices()),
            "available_cpus": pipeline_lib.available_cpus(), "jax": jax.__version__,
            "dtype": config.model.dtype, "size": config.dataset.input_size,
            "batch": config.batch_size, "refs": len(source),
            "mean_jpeg_kb": full_size_twin.mean_jpeg_kb(data_dir), "steps": FLAGS.steps,
            "runs": []}
  config.dataset.num_workers = 0
  example = next(pipeline_lib.create_train_iterator(config, source, vocab, seed=0))
  step, state, mesh, result["compile_s"] = compiled_step(config, example)
  compiled = [step, state, mesh]
  for workers in (int(w) for w in FLAGS.workers):
    rate = input_rate(config, source, vocab, workers, FLAGS.input_batches)
    run = {"input_examples_per_s": rate,
           "input_examples_per_s_per_worker": rate / max(1, workers),
           **loop_rates(config, source, vocab, workers, compiled, FLAGS.steps, FLAGS.warmup)}
    result["runs"].append(run)
    print(format_run(run), flush=True)
  return result


def main(argv) -> None:
  cli.no_arguments(argv)
  with cli.one_line_errors():
    data_dir = full_size_twin.make(FLAGS.work_dir, num_train=FLAGS.num_train)
    config = full_size_twin.config(FLAGS.config, data_dir, FLAGS.size)
    config.batch_size = FLAGS.batch
    if FLAGS.dtype:
      config.model.dtype = FLAGS.dtype
    result = measure(config, data_dir)
    result["command"] = records.command("brppnet_jax.measure.end_to_end")
    path = FLAGS.json or records.results_path(
        f"end_to_end_{result['size']}_b{result['batch']}")
    print(f"wrote {records.write_json(path, result)}")


if __name__ == "__main__":
  app.run(main)
