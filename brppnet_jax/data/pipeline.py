"""Grain input pipelines for training (checkpointable) and evaluation (every expression).

Sources are random-access sequences of RPCOCO records (see transforms.py);
`sources.open_source` opens a prepared TFDS split that way.

Training order: every epoch the refs are permuted (seed, epoch); global batch t of the epoch
is positions [t * B, (t + 1) * B) of the permutation, of which process p takes its own
contiguous B / process_count rows, and the last N mod B refs of the permutation sit the epoch
out. So an epoch has len(source) // config.batch_size steps whatever the process count, and
the union of the processes' batches does not depend on it. Each visit draws one expression
of the ref from (seed, epoch, ref index).

Checkpointing: the training iterator is a grain DatasetIterator. Put
`grain.checkpoint.CheckpointSave(iterator)` in an Orbax `ocp.args.Composite` to save it and
`grain.checkpoint.CheckpointRestore(iterator)` (on a freshly created iterator with the same
config, seed and process layout) to restore it; it then yields exactly the next batch.
`iterator.get_state()` / `set_state(state)` do the same without Orbax.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
import functools
import math
import os
import threading
import time
from typing import Any

from absl import flags
import cv2
import grain
import ml_collections
import numpy as np

from brppnet_jax.data import transforms
from brppnet_jax.data import vocab as vocab_lib


def per_process_batch(batch_size: int, process_count: int, name: str = "batch_size") -> int:
  """Rows each process loads of a global batch; an error unless it divides evenly."""
  if batch_size < 1 or batch_size % process_count:
    raise ValueError(f"config.{name}={batch_size} must be a positive multiple of the process "
                     f"count {process_count}")
  return batch_size // process_count


# config.dataset.blind_text: every expression is read as this one sentence, in training and
# evaluation alike, so the model sees only the image: the learned text-blind floor.
BLIND_SENTENCE = "protect privacy of the person"


class _BlindPreprocessor(transforms.Preprocessor):
  """A Preprocessor that tokenizes BLIND_SENTENCE instead of the expression."""

  def arrays(self, rgb: np.ndarray, mask: np.ndarray, sentence: str) -> dict[str, np.ndarray]:
    del sentence
    return super().arrays(rgb, mask, BLIND_SENTENCE)


def _preprocessor(config, vocab) -> transforms.Preprocessor:
  blind = config.dataset.get("blind_text", False)
  kind = _BlindPreprocessor if blind else transforms.Preprocessor
  return kind(vocab, config.dataset.input_size, config.model.seg_out_stride,
              config.dataset.word_len)


def _check_process(process_index: int, process_count: int) -> None:
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index {process_index} is not in [0, {process_count})")


def _allow_grain_flags() -> None:
  """Grain's multiprocessing reads absl flags, unparsed outside absl.app.run (tests, notebooks)."""
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


def _exit_with_parent(parent: int, poll_s: float = 1.0) -> None:
  """Ends this worker once `parent` is gone (its parent id changes when it is orphaned)."""
  while os.getppid() == parent:
    time.sleep(poll_s)
  os._exit(1)  # pylint: disable=protected-access  (nothing of the worker's is worth saving)


def _init_worker(worker_index: int, worker_count: int) -> None:
  """Runs first in each grain worker process."""
  del worker_index, worker_count
  _allow_grain_flags()
  cv2.setNumThreads(1)  # One worker per core; OpenCV threads would oversubscribe.
  # A trainer killed with SIGKILL cannot stop its workers, and grain's would live on,
  # holding its output pipes and memory; each watches its parent instead.
  threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()


AUTO_WORKERS = -1


def available_cpus() -> int:
  """CPUs this process may run on (its affinity mask, which containers and SLURM narrow)."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # Not Linux.
    return os.cpu_count() or 1


def resolve_num_workers(value: int) -> int:
  """Grain worker processes for config.dataset.num_workers.

  AUTO_WORKERS (-1, the default) means one per available CPU but one, which is left to the
  training loop (dispatch, host-to-device copies): max(0, available_cpus() - 1), so 0
  (in-process) on a single CPU. 0 runs in-process; n > 0 is taken as given.
  """
  if isinstance(value, bool) or not isinstance(value, int) or value < AUTO_WORKERS:
    raise ValueError(f"config.dataset.num_workers must be an int >= 0, or {AUTO_WORKERS} for "
                     f"one per available CPU but one; got {value!r}")
  return max(0, available_cpus() - 1) if value == AUTO_WORKERS else value


def _iterate(ds: grain.MapDataset, config) -> grain.DatasetIterator:
  """Runs `ds` in-process with prefetch threads, or in worker processes (see
  `resolve_num_workers`)."""
  workers = resolve_num_workers(config.dataset.num_workers)
  prefetch = config.dataset.prefetch
  if workers == 0:
    return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=prefetch,
                                                     prefetch_buffer_size=prefetch)))
  _allow_grain_flags()
  it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))
  options = grain.MultiprocessingOptions(num_workers=workers,
                                         per_worker_buffer_size=max(1, prefetch))
  return iter(it_ds.mp_prefetch(options, worker_init_fn=_init_worker))


@functools.lru_cache(maxsize=4)
def _epoch_order(seed: int, epoch: int, num_refs: int) -> np.ndarray:
  return np.random.default_rng((seed, 0, epoch)).permutation(num_refs)


class _TrainExample(grain.transforms.MapWithIndex):
  """Element `index` of this process's stream -> one preprocessed example."""

  def __init__(self, source, preprocessor, *, seed, batch, steps, process_index, process_count):
    self._source = source
    self._pre = preprocessor
    self._seed = seed
    self._batch = batch
    self._steps = steps
    self._process_index = process_index
    self._process_count = process_count

  def map_with_index(self, index: int, element: Any) -> dict[str, np.ndarray]:
    del element
    epoch, in_epoch = divmod(index, self._steps * self._batch)
    step, row = divmod(in_epoch, self._batch)
    position = (step * self._process_count + self._process_index) * self._batch + row
    ref = int(_epoch_order(self._seed, epoch, len(self._source))[position])
    record = self._source[ref]
    sentences = transforms.sentences_of(record)
    choice = np.random.default_rng((self._seed, 1, epoch, ref)).integers(len(sentences))
    rgb, mask = self._pre.decode(record)
    return self._pre.arrays(rgb, mask, sentences[choice])


def create_train_iterator(config: ml_collections.ConfigDict, source: Sequence[dict],
                          vocab: vocab_lib.Vocabulary, *, seed: int, process_index: int = 0,
                          process_count: int = 1,
                          num_epochs: int | None = None) -> grain.DatasetIterator:
  """Training batches for this process, for `num_epochs` epochs (None: forever).

  Batches are dicts of numpy arrays: `image` uint8 [B, S, S, 3] and its letterbox `geometry`
  int32 [B, 4] (nw, nh, dx, dy; the jitted step rebuilds the float input from both, see
  letterbox.py), `tokens` int32 [B, T] and `mask` float32 [B, S/s, S/s, 1], with
  B = config.batch_size // process_count.
  """
  _check_process(process_index, process_count)
  batch = per_process_batch(config.batch_size, process_count)
  steps = len(source) // config.batch_size
  if steps == 0:
    raise ValueError(f"the training source has {len(source)} refs, fewer than "
                     f"config.batch_size={config.batch_size}")
  if num_epochs is not None and num_epochs < 1:
    raise ValueError(f"num_epochs must be positive or None, got {num_epochs}")
  example = _TrainExample(source, _preprocessor(config, vocab), seed=seed, batch=batch,
                          steps=steps, process_index=process_index,
                          process_count=process_count)
  ds = grain.MapDataset.range(steps * batch).repeat(num_epochs)
  ds = ds.map_with_index(example).batch(batch, drop_remainder=True)
  return _iterate(ds, config)


def expression_index(source: Sequence[dict], limit: int = 0) -> list[tuple[int, int]]:
  """(record index, sentence index) of every expression in order; the first `limit` if > 0."""
  pairs = []
  for i in range(len(source)):
    pairs.extend((i, j) for j in range(len(transforms.sentences_of(source[i]))))
    if 0 < limit <= len(pairs):
      return pairs[:limit]
  return pairs


class _EvalExample(grain.transforms.MapWithIndex):
  """Row `index` of this process's evaluation stream; rows past the last expression pad."""

  def __init__(self, source, preprocessor, pairs, num_images):
    self._source = source
    self._pre = preprocessor
    self._pairs = pairs
    self._num_images = num_images

  def map_with_index(self, index: int, element: Any) -> dict[str, Any]:
    del element
    if index >= len(self._pairs):
      return {**self._pre.padding(), "valid": False, "ref_id": -1, "sentence_index": -1,
              "orig_size": (0, 0), "gt_mask": None,
              "orig_image": None, "sentence": ""}
    ref, sentence_index = self._pairs[index]
    record = self._source[ref]
    sentence = transforms.sentences_of(record)[sentence_index]
    rgb, mask = self._pre.decode(record)
    h, w = mask.shape
    return {**self._pre.arrays(rgb, mask, sentence), "valid": True,
            "ref_id": int(record["ref_id"]), "sentence_index": sentence_index,
            "orig_size": (h, w), "gt_mask": mask,
            "orig_image": rgb if index < self._num_images else None, "sentence": sentence}


_EVAL_DTYPES = {"image": np.uint8, "tokens": np.int32, "mask": np.float32, "valid": bool,
                "ref_id": np.int64, "sentence_index": np.int32, "geometry": np.int32,
                "orig_size": np.int32}


def _collate_eval(examples: Sequence[dict], include_images: bool) -> dict[str, Any]:
  batch = {k: np.stack([np.asarray(e[k], dtype) for e in examples])
           for k, dtype in _EVAL_DTYPES.items()}
  batch["gt_masks"] = [e["gt_mask"] for e in examples]
  batch["sentence"] = [e["sentence"] for e in examples]
  if include_images:
    batch["orig_images"] = [e["orig_image"] for e in examples]
  return batch


def create_eval_iterator(config: ml_collections.ConfigDict, source: Sequence[dict],
                         vocab: vocab_lib.Vocabulary, *, process_index: int = 0,
                         process_count: int = 1, include_images: bool = True,
                         max_images: int | None = None) -> Iterator[dict[str, Any]]:
  """Every expression of `source` once, in order, split into contiguous parts by process.

  Batches of config.eval_batch_size // process_count rows hold the training fields plus
  `valid` bool [B], `ref_id` int64 [B], `sentence_index` int32 [B], `geometry` int32 [B, 4]
  (nw, nh, dx, dy), `orig_size` int32 [B, 2] (h, w), and lists `gt_masks` (uint8 [h, w],
  0/255), `sentence` (str) and, with include_images, `orig_images` (uint8 [h, w, 3] for the
  first max_images rows of this process, all if None; None for the others).
  Every process yields the same number of batches; rows past its last expression are padding
  (valid False, ref_id and sentence_index -1, geometry and orig_size 0, None, "").
  config.eval_max_examples > 0 keeps only the first that many expressions.
  """
  _check_process(process_index, process_count)
  batch = per_process_batch(config.eval_batch_size, process_count, "eval_batch_size")
  pairs = expression_index(source, max(0, config.eval_max_examples))
  if not pairs:
    raise ValueError("the evaluation source has no expressions")
  share = math.ceil(len(pairs) / process_count)
  mine = pairs[process_index * share:(process_index + 1) * share]
  num_rows = math.ceil(share / batch) * batch
  num_images = (num_rows if max_images is None else max_images) if include_images else 0
  example = _EvalExample(source, _preprocessor(config, vocab), mine, num_images)
  ds = grain.MapDataset.range(num_rows).map_with_index(example)
  ds = ds.batch(batch, batch_fn=functools.partial(_collate_eval, include_images=include_images))
  return _closing(_iterate(ds, config))


def _closing(iterator: grain.DatasetIterator) -> Iterator[dict[str, Any]]:
  """Yields from `iterator` and closes it (and its worker processes) once done or dropped."""
  try:
    yield from iterator
  finally:
    iterator.close()
