"""Host cost of evaluation per expression, and what it makes of a full RPCOCO test split.

    python -m brppnet_jax.benchmark_eval --json benchmarks/results/cpu_eval_host.json

On the test split of the full-size synthetic twin (benchmark_end_to_end.full_size_twin),
with the prediction set to the letterboxed ground truth (the host's work does not depend on
the network), it times on one thread each part of an expression's evaluation: reading and
letterboxing the record (the input pipeline's share), mapping the prediction back, IoU,
privacy metrics and the Haar-cascade face test; then `evaluate.score_row` through a pool of
1 and of every available thread. The face test runs once per expression when the original
person shows no face (the twin's people have none) and twice when it does (COCO's people
often do), so the estimate for `--expressions` (RPCOCO-m testA: 4,327) on `--cores` cores
gives both bounds. With `--config`, `evaluate.evaluate_split` also runs whole (device and
host pipelined) with that untrained network. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import time

import cv2
import jax
import numpy as np

from brppnet_jax import benchmark
from brppnet_jax import benchmark_end_to_end
from brppnet_jax import evaluate
from brppnet_jax import metrics
from brppnet_jax import parallel
from brppnet_jax import privacy
from brppnet_jax import steps
from brppnet_jax.data import input_pipeline
from brppnet_jax.data import letterbox
from brppnet_jax.data import transforms


def _config(args, data_dir: str):
  config = benchmark.load_config(args.config)
  config.dataset.name, config.dataset.data_dir = "rpcoco/synthetic", data_dir
  config.dataset.input_size = args.size
  config.eval_batch_size, config.compute_tdir = args.batch, True
  config.dataset.num_workers, config.eval_max_examples = 0, args.max_expressions
  if "allow_random_backbone" in config.model:
    config.model.allow_random_backbone = True
  return config


def _rows(config, source, vocab) -> list[tuple[dict, int, np.ndarray]]:
  """(batch, row, prediction) of every expression; the prediction is the ground truth."""
  out = []
  for batch in input_pipeline.create_eval_iterator(config, source, vocab, include_images=False):
    for i in np.flatnonzero(batch["valid"]):
      out.append((batch, int(i), batch["mask"][i, ..., 0]))
  return out


def _seconds_each(fn, items) -> float:
  start = time.perf_counter()
  for item in items:
    fn(*item)
  return (time.perf_counter() - start) / len(items)


def stage_seconds(config, source, vocab, rows) -> dict:
  """Seconds per expression of each host stage, on one thread."""
  size, thresh = config.dataset.input_size, config.segment_thresh
  pre = input_pipeline._preprocessor(config, vocab)  # pylint: disable=protected-access
  pairs = input_pipeline.expression_index(source, len(rows))
  read = lambda r, j: pre.arrays(*pre.decode(source[r]), transforms.sentences_of(source[r])[j])

  def inputs(batch, i, prob):
    geometry, (h, w) = batch["geometry"][i], batch["orig_size"][i]
    picture = letterbox.picture_probabilities(prob, geometry, size)
    nw, nh, dx, dy = (int(v) for v in geometry)
    gt = cv2.resize((batch["gt_masks"][i] > 0).astype(np.uint8), (nw, nh),
                    interpolation=cv2.INTER_NEAREST).astype(bool)
    image = np.divide(batch["image"][i][dy:dy + nh, dx:dx + nw], np.float32(255),
                      dtype=np.float32)
    return picture, letterbox.picture_to_original(picture, (int(h), int(w))), gt, image

  mapped = [(b, i, p, *inputs(b, i, p)) for b, i, p in rows]
  persons = [metrics._to_uint8(image * gt[..., None])  # pylint: disable=protected-access
             for *_, gt, image in mapped]
  return {
      "read_and_letterbox": _seconds_each(read, pairs),
      "map_back": _seconds_each(lambda b, i, p: inputs(b, i, p), rows),
      "iou": _seconds_each(lambda b, i, p, pic, orig, gt, im: metrics.score_expression(
          orig, b["gt_masks"][i], thresh=thresh), mapped),
      "privacy_metrics": _seconds_each(lambda b, i, p, pic, orig, gt, im: metrics.score_expression(
          orig, b["gt_masks"][i], letterboxed_image=im, prob_letterbox=pic, gt_letterbox=gt,
          thresh=thresh), mapped),
      "face_test_once": _seconds_each(privacy.has_face, [(p,) for p in persons]),
  }


def pool_rate(config, rows, threads: int) -> float:
  """Expressions per second of evaluate.score_row (every metric) through `threads` threads."""
  start = time.perf_counter()
  with concurrent.futures.ThreadPoolExecutor(threads) as pool:
    futures = [pool.submit(evaluate.score_row, b, i, p, config, privacy.has_face)
               for b, i, p in rows]
    for future in futures:
      future.result()
  return len(rows) / (time.perf_counter() - start)


def whole_evaluation(config, source, vocab) -> dict:
  """Wall time of evaluate.evaluate_split (pipelined) with an untrained network."""
  mesh = parallel.make_mesh()
  config.model.vocab_size = len(vocab)
  model, tx, _, predict_fn = steps.make_steps(config, steps_per_epoch=1)
  state, shardings = steps.create_replicated_state(model, config, tx, mesh, steps.prng_key(0))
  p_predict = steps.jit_predict(predict_fn, mesh, shardings)
  evaluate.evaluate_split(p_predict, state, config, mesh, source, vocab,
                          num_examples=0)  # Compiles and warms up.
  start = time.perf_counter()
  result, _ = evaluate.evaluate_split(p_predict, state, config, mesh, source, vocab,
                                      num_examples=0)
  seconds = time.perf_counter() - start
  return {"expressions": result["num_expressions"], "seconds": seconds,
          "expressions_per_s": result["num_expressions"] / seconds}


def estimate(stages: dict, expressions: int, cores: int) -> dict:
  """Seconds for `expressions` on `cores` cores if host work spreads over them evenly."""
  # privacy_metrics includes the IoU (score_expression computes both).
  once = (stages["read_and_letterbox"] + stages["map_back"] + stages["privacy_metrics"]
          + stages["face_test_once"])
  return {"expressions": expressions, "cores": cores,
          "host_seconds_per_expression_no_face": once,
          "host_seconds_per_expression_face": once + stages["face_test_once"],
          "seconds_if_no_original_face": expressions * once / cores,
          "seconds_if_every_original_face": expressions * (once + stages["face_test_once"]) / cores}


def format_table(result: dict) -> str:
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


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", default=benchmark_end_to_end.DEFAULT_CONFIG)
  parser.add_argument("--whole", action="store_true", help="also run evaluate_split whole")
  parser.add_argument("--size", type=int, default=416)
  parser.add_argument("--batch", type=int, default=24)
  parser.add_argument("--max_expressions", type=int, default=96)
  parser.add_argument("--expressions", type=int, default=4327)
  parser.add_argument("--cores", type=int, default=16)
  parser.add_argument("--work_dir", default="/tmp/brppnet_benchmark_data")
  parser.add_argument("--json", default="",
                      help="default: benchmarks/results/<platform>_eval_host.json")
  args = parser.parse_args(argv)
  data_dir = benchmark_end_to_end.full_size_twin(args.work_dir)
  config = _config(args, data_dir)
  vocab = input_pipeline.load_vocab(config)
  source = input_pipeline.open_source(config, "test")
  cv2.setNumThreads(1)  # Stage times on one core.
  rows = _rows(config, source, vocab)
  stages = stage_seconds(config, source, vocab, rows)
  cpus = input_pipeline.available_cpus()
  cv2.setNumThreads(0)
  result = {"device": jax.devices()[0].device_kind, "available_cpus": cpus,
            "size": args.size, "expressions_timed": len(rows),
            "seconds_per_expression_one_thread": stages,
            "score_row_expressions_per_s": {str(t): pool_rate(config, rows, t)
                                            for t in sorted({1, cpus})},
            "estimate": estimate(stages, args.expressions, args.cores)}
  if args.whole:
    result["whole_evaluation"] = whole_evaluation(config, source, vocab)
  print(format_table(result))
  path = args.json or benchmark_end_to_end.results_path("eval_host")
  with open(path, "w", encoding="utf-8") as f:
    json.dump(result, f, indent=2)
  print(f"wrote {path}")
  return result


if __name__ == "__main__":
  main()
