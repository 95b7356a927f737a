"""Training and evaluation loop: `train_and_evaluate(config, workdir)`.

One jitted step over a Mesh of every device (batch on `data`, state replicated); each JAX
process reads its own part of every global batch. Checkpoints, metrics and TensorBoard
summaries go under `workdir`. What a fault does to a run (a kill, a damaged checkpoint, a
full disk) is listed in the README's reliability section; tests/train/test_faults.py tries each.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import time

from absl import logging
from clu import periodic_actions
import jax
import jax.numpy as jnp
import ml_collections

from brppnet_jax.data import pipeline
from brppnet_jax.data import sources
from brppnet_jax.data import word_vectors
from brppnet_jax.evaluation import scoring
from brppnet_jax.evaluation import summaries
from brppnet_jax.models import pretrained
from brppnet_jax.runtime import paths
from brppnet_jax.runtime import prefetch
from brppnet_jax.runtime import sharding
from brppnet_jax.train import checkpoints as checkpoints_lib
from brppnet_jax.train import integrity
from brppnet_jax.train import preemption as preemption_lib
from brppnet_jax.train import resume
from brppnet_jax.train import step_functions
from brppnet_jax.train import train_state
from brppnet_jax.train import writers

EVAL_METRICS_FILE = scoring.EVAL_METRICS_FILE


class NonFiniteLossError(FloatingPointError):
  """Raised when a training step produced a non-finite loss."""


@dataclasses.dataclass
class Run:
  """What a training run is made of, built once by `setup`."""
  config: ml_collections.ConfigDict
  vocab: object
  train_source: object
  eval_source: object
  mesh: jax.sharding.Mesh
  steps_per_epoch: int
  total_steps: int
  p_train: object
  p_predict: object
  state: train_state.TrainState
  state_shardings: object


def total_steps(config, steps_per_epoch: int) -> int:
  if config.total_steps > 0:
    return int(config.total_steps)
  if config.num_epochs <= 0:
    raise ValueError("set config.total_steps or config.num_epochs to a positive number")
  return int(config.num_epochs * steps_per_epoch)


def with_vocab_size(config, vocab) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict(config.to_dict())
  config.model.vocab_size = len(vocab)
  return config


def create_state(config, model, tx, mesh, rng, embeddings=None):
  """A replicated train state, its shardings fixed from shapes before anything is allocated."""
  state, shardings = train_state.create_replicated_state(model, config, tx, mesh, rng)
  if embeddings is not None or config.model.backbone_weights:
    state = jax.device_put(pretrained.load_into_state(state, config, embeddings), shardings)
  return state, shardings


def setup(config, workdir: str) -> Run:
  """Data, vocabulary, model, mesh, jitted steps and a fresh (not restored) state."""
  del workdir
  pretrained.check_backbone_weights(config)
  vocab = sources.load_vocab(config)
  config = with_vocab_size(config, vocab)
  train_source = sources.open_source(config, config.dataset.train_split)
  eval_source = sources.open_source(config, config.dataset.eval_split)
  mesh = sharding.make_mesh()
  sharding.check_batch_size(config.batch_size, mesh)
  sharding.check_batch_size(config.eval_batch_size, mesh, "eval_batch_size")
  steps_per_epoch = len(train_source) // config.batch_size
  if steps_per_epoch == 0:
    raise ValueError(f"the train split has {len(train_source)} refs, fewer than "
                     f"config.batch_size={config.batch_size}")
  model, tx, p_train, p_predict = _jitted_steps(config.to_json_best_effort(), steps_per_epoch,
                                                mesh)
  state, shardings = create_state(config, model, tx, mesh, train_state.prng_key(config.seed),
                                  word_vectors.load_embeddings(config, vocab))
  return Run(config, vocab, train_source, eval_source, mesh, steps_per_epoch,
             total_steps(config, steps_per_epoch), p_train, p_predict, state, shardings)


@functools.lru_cache(maxsize=2)
def _jitted_steps(config_json: str, steps_per_epoch: int, mesh):
  """The model, optimiser and jitted steps of a config; another run of the same config in
  this process (a notebook, the fault tests) reuses their compiled code."""
  config = ml_collections.ConfigDict(json.loads(config_json))
  model, tx, train_fn, predict_fn = step_functions.make_steps(config, steps_per_epoch)
  shardings = jax.tree.map(lambda _: sharding.replicated(mesh), jax.eval_shape(
      lambda r: train_state.create_train_state(model, config, tx, r), train_state.prng_key(0)))
  return (model, tx, step_functions.jit_train(train_fn, mesh, shardings),
          step_functions.jit_predict(predict_fn, mesh, shardings))


def check_finite(state, last_good_step: int | None) -> None:
  bad = int(jax.device_get(state.nonfinite_step))
  if bad >= 0:
    raise NonFiniteLossError(
        f"non-finite loss at training step {bad + 1}; stopped. The last good checkpoint is "
        f"step {last_good_step}" if last_good_step is not None else
        f"non-finite loss at training step {bad + 1}; stopped before any checkpoint")


def _is_due(step: int, every: int, total: int) -> bool:
  return step == total or (every > 0 and step % every == 0)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> train_state.TrainState:
  """Trains (resuming from the newest sound checkpoint in `workdir`) and evaluates; returns the
  state. checkpoints_lib.WriteError when a checkpoint or eval_metrics.jsonl cannot be written."""
  run = setup(config, workdir)
  workdir = os.fspath(paths.makedirs(workdir))  # Absolute, or the URL as given.
  ckpts = checkpoints_lib.Checkpoints(workdir, keep=run.config.keep_checkpoints)
  writer = None
  try:
    train_iter = pipeline.create_train_iterator(
        run.config, run.train_source, run.vocab, seed=run.config.seed,
        process_index=jax.process_index(), process_count=jax.process_count())
    start, state = resume.restore_latest(ckpts, run.state, train_iter, run.config,
                                         run.vocab.words)
    if start:
      logging.info("Resuming from checkpoint step %d in %s", start, workdir)
    if jax.process_index() == 0:
      _forget_evaluations_after(workdir, start)
    writer = writers.create_writer(workdir, run.config, fresh=not start)
    state = _train_loop(run, state if start else run.state, start, train_iter, ckpts, writer,
                        workdir)
  except BaseException:
    _finish(ckpts, writer, quietly=True)  # The error in flight is the one to report.
    raise
  _finish(ckpts, writer, quietly=False)
  return state


def _finish(ckpts, writer, *, quietly: bool) -> None:
  """Pending saves finish (WriteError if one failed) and background threads stop."""
  try:
    ckpts.wait()
  except checkpoints_lib.WriteError:
    if not quietly:
      raise
  finally:
    ckpts.close()
    if writer is not None:
      writer.close()


def _forget_evaluations_after(workdir: str, step: int) -> None:
  """Drops training evaluations of steps after `step` (the checkpoints they went with are
  lost: the run evaluates those steps again) and lines a killed run left half written."""
  path = paths.join(workdir, EVAL_METRICS_FILE)
  if not path.exists():
    return
  lines = paths.read_lines(path)
  kept = [line for line in lines if _is_kept_evaluation(line, step)]
  if len(kept) != len(lines):
    logging.warning("%s: dropped %d line(s) of steps after %d or half written", path,
                    len(lines) - len(kept), step)
    paths.write_text_atomically(path, "".join(line + "\n" for line in kept))


def _is_kept_evaluation(line: str, step: int) -> bool:
  try:
    record = json.loads(line)
  except json.JSONDecodeError:
    return False
  return "split" in record or record.get("step", 0) <= step


def _train_loop(run: Run, state, start: int, train_iter, ckpts, writer, workdir: str):
  """Steps from `start` to the end, logging, evaluating and saving as the config says."""
  config = run.config
  eval_every = config.eval_every_steps or run.steps_per_epoch
  ckpt_every = config.checkpoint_every_steps or run.steps_per_epoch
  progress = periodic_actions.ReportProgress(num_train_steps=run.total_steps, writer=writer)
  # Batches reach the devices ahead of their step; checkpoints store the iterator state as
  # of the last batch stepped on, not of the ones staged ahead.
  batches = prefetch.DevicePrefetcher(train_iter, run.mesh, depth=2)
  save_kwargs = dict(config=config, vocab_words=run.vocab.words, data_iterator=batches,
                     expressions=sources.load_train_expressions(config))
  last_saved = start or None
  window, window_start = [], time.perf_counter()
  # Closing stops the input workers and frees their shared memory, on errors too.
  with preemption_lib.Preemption() as preemption, contextlib.closing(batches):
    for step in range(start + 1, run.total_steps + 1):
      with jax.profiler.StepTraceAnnotation("train", step_num=step):
        state, metrics = run.p_train(state, next(batches))
      window.append(metrics)
      progress(step)
      if step % config.log_every_steps == 0 or step == run.total_steps:
        check_finite(state, last_saved)
        _write_train_scalars(writer, step, window, time.perf_counter() - window_start,
                             config.batch_size)
        window, window_start = [], time.perf_counter()
      stop = preemption.requested or ckpts.manager.reached_preemption(step)
      eval_due = _is_due(step, eval_every, run.total_steps)
      save_due = eval_due or stop or _is_due(step, ckpt_every, run.total_steps)
      if save_due:
        check_finite(state, last_saved)  # A bad state is never saved.
      result = None
      if eval_due:
        with progress.timed("eval"):
          result = evaluate_and_write(run, state, step, writer, workdir, ckpts)
      if save_due:
        ckpts.save(step, state, metrics=result, force=True, **save_kwargs)
        last_saved = step
      if stop:
        logging.warning("Preempted at step %d: checkpoint saved, stopping.", step)
        break
  return state


def evaluate_and_write(run: Run, state, step: int, writer, workdir: str, ckpts=None) -> dict:
  """Evaluates on the eval split; appends the metrics to eval_metrics.jsonl and TensorBoard.

  checkpoints_lib.WriteError, naming the newest intact step of `ckpts`, when the file cannot
  be written (the line is then not there at all).
  """
  result, examples = scoring.evaluate_split(
      run.p_predict, state, run.config, run.mesh, run.eval_source, run.vocab)
  logging.info("Step %d eval: %s", step, json.dumps(result))
  if jax.process_index() == 0:
    try:
      scoring.append_metrics(workdir, {"step": step, **result})
    except OSError as e:
      raise _metrics_write_error(ckpts, step, workdir, e) from e
  scalars = {f"eval/{k}": v for k, v in result.items() if v is not None}
  writer.write_scalars(step, scalars)
  if examples:
    writer.write_images(step, {"eval/image_gt_prediction_protected":
                               summaries.example_grid(examples, run.config.dataset.input_size)})
  return {k: v for k, v in result.items() if v is not None}


def _metrics_write_error(ckpts, step: int, workdir: str, error: OSError):
  newest = None
  if ckpts is not None:
    ckpts.wait()  # A save that failed before (the disk filled up then) is the one to report.
    newest = ckpts.latest_step()
  intact = (f"the newest intact checkpoint is step {newest}" if newest else
            "no checkpoint was written before it")
  return checkpoints_lib.WriteError(
      f"could not write {paths.join(workdir, EVAL_METRICS_FILE)} at step {step}: "
      f"{integrity.plain_reason(error)}; {intact}")


def _write_train_scalars(writer, step, window, seconds, batch_size) -> None:
  means = jax.device_get(jax.tree.map(lambda *xs: jnp.mean(jnp.stack(xs)), *window))
  scalars = {f"train/{k}": float(v) for k, v in means.items()}
  scalars["train/img_per_sec"] = len(window) * batch_size / max(seconds, 1e-9)
  writer.write_scalars(step, scalars)


