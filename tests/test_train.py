"""Training: schedule, the data-parallel step, frozen parts, non-finite losses, learning."""

import json

import jax
import numpy as np
import pytest

from brppnet_jax import parallel
from brppnet_jax import steps
from brppnet_jax import train
from brppnet_jax.data import synthetic
from configs import default as default_config
from configs import synthetic as synthetic_config
from conftest import TRAIN_STEPS, run_module


def tiny_config(freeze_backbone=True):
  config = synthetic_config.get_config()
  config.dataset.input_size = 64
  config.model.vocab_size = 20
  config.model.freeze_backbone = freeze_backbone
  config.batch_size = 8
  return config


def random_batch(config, seed=0, n=8):
  rng = np.random.default_rng(seed)
  size, out = config.dataset.input_size, config.dataset.input_size // config.model.seg_out_stride
  return {
      "image": rng.random((n, size, size, 3), np.float32),
      "tokens": rng.integers(1, config.model.vocab_size, (n, config.dataset.word_len), np.int32),
      "mask": (rng.random((n, out, out, 1)) > 0.7).astype(np.float32),
  }


def make_state(config, mesh):
  model, tx, train_fn, _ = steps.make_steps(config, steps_per_epoch=10)
  state, shardings = train.create_state(config, model, tx, mesh, steps.prng_key(0))
  step = steps.jit_train(train_fn, mesh, shardings)
  return state, step


def test_learning_rate_follows_the_epoch_schedule_of_the_paper():
  config = default_config.get_config()
  schedule = steps.learning_rate_fn(config, steps_per_epoch=7)
  lr_of_epoch = {e: float(schedule(7 * (e - 1))) for e in range(1, 51)}
  assert all(lr_of_epoch[e] == pytest.approx(1e-3) for e in range(1, 19))
  assert lr_of_epoch[19] == pytest.approx(5e-4) and lr_of_epoch[28] == pytest.approx(5e-4)
  assert lr_of_epoch[29] == pytest.approx(2.5e-4) and lr_of_epoch[39] == pytest.approx(1.25e-4)
  assert lr_of_epoch[50] == pytest.approx(6.25e-5)
  assert float(schedule(7 * 18 - 1)) == pytest.approx(1e-3)  # Last step of epoch 18.
  assert float(schedule(7 * 18)) == pytest.approx(5e-4)  # First step of epoch 19.


def test_step_trains_everything_but_the_frozen_backbone():
  # Unfrozen training is covered in tests/test_models.py and by every synthetic run.
  config = tiny_config(freeze_backbone=True)
  state, step = make_state(config, parallel.make_mesh(jax.devices()[:1]))
  before = jax.device_get(state)
  after, metrics = step(state, random_batch(config))
  after = jax.device_get(after)
  changed = lambda a, b: any(not np.array_equal(x, y) for x, y in zip(
      jax.tree.leaves(a), jax.tree.leaves(b)))
  assert not changed(before.params["backbone"], after.params["backbone"])
  assert not changed(before.batch_stats["backbone"], after.batch_stats["backbone"])
  assert changed(before.params["head"], after.params["head"])
  assert changed(before.params["text_encoder"], after.params["text_encoder"])
  # The optimiser keeps no moments for frozen parameters.
  assert "backbone" not in str(jax.tree_util.tree_structure(before.opt_state))
  assert int(after.step) == 1 and float(metrics["l2"]) > 0


def test_data_parallel_step_on_8_devices_equals_one_device():
  """One step, 1 vs 8 devices: same loss; the same update up to float32 summation order.

  A large Adam epsilon makes the update proportional to the gradient (Adam's first step is
  otherwise lr * sign(g), which flips on tiny gradients); see tests/test_multiprocess.py.
  """
  config = tiny_config()
  config.optimizer.eps, config.optimizer.learning_rate = 1000.0, 0.01
  batch = random_batch(config, n=16)
  start, results, losses = None, [], []
  for devices in (jax.devices()[:1], jax.devices()[:8]):
    mesh = parallel.make_mesh(devices)
    state, step = make_state(config, mesh)
    start = jax.device_get(state.params)
    state, metrics = step(state, parallel.global_batch(batch, mesh))
    results.append(jax.device_get(state.params))
    losses.append(float(metrics["loss"]))
  assert losses[0] == pytest.approx(losses[1], rel=1e-6)
  flat = lambda tree: np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])
  one, eight, init = (flat(t) for t in (*results, start))
  assert np.linalg.norm(one - eight) < 0.02 * np.linalg.norm(one - init)


def test_nonfinite_loss_freezes_the_state_and_names_the_step():
  config = tiny_config()
  state, step = make_state(config, parallel.make_mesh(jax.devices()[:1]))
  state, _ = step(state, random_batch(config, seed=0))
  good = jax.device_get(state.params)
  bad = random_batch(config, seed=1)
  bad["image"][0, 0, 0, 0] = np.nan
  state, metrics = step(state, bad)
  state, _ = step(state, random_batch(config, seed=2))
  assert not np.isfinite(float(metrics["loss"]))
  for a, b in zip(jax.tree.leaves(good), jax.tree.leaves(jax.device_get(state.params))):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(train.NonFiniteLossError, match="training step 2; .* checkpoint is step 1"):
    train.check_finite(state, last_good_step=1)


def test_diverging_run_stops_with_error_and_keeps_last_good_checkpoint(synthetic_dataset, tmp_path):
  proc = run_module(
      "brppnet_jax.main", "--config=configs/synthetic.py", f"--workdir={tmp_path}",
      f"--config.dataset.data_dir={synthetic_dataset / 'tfds'}", "--config.total_steps=6",
      "--config.optimizer.learning_rate=1e30", "--config.checkpoint_every_steps=1",
      "--config.log_every_steps=1", "--config.eval_every_steps=100",
      env={"XLA_FLAGS": ""}, check=False)
  assert proc.returncode != 0
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("error: non-finite loss at training step ")
  bad_step = int(last.split("training step ")[1].split(";")[0])
  saved = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
  assert saved and saved[-1] == bad_step - 1
  assert f"last good checkpoint is step {bad_step - 1}" in last


def test_synthetic_training_beats_the_text_blind_ceiling(trained_workdir, synthetic_dataset):
  records = [json.loads(l) for l in (trained_workdir / "eval_metrics.jsonl").read_text().splitlines()]
  final = [r for r in records if "split" not in r][-1]  # `--mode=eval` runs add a split key.
  assert final["step"] == TRAIN_STEPS
  ceiling = synthetic.text_blind_ceiling(str(synthetic_dataset / "raw"), split="test")
  assert final["num_expressions"] == ceiling["expressions"]  # Each expression once.
  assert final["miou"] > ceiling["ceiling"] + 0.1, (final, ceiling)
  for key in ("miou", "oiou", "prec@0.5", "prec@0.9", "tdir", "ssim", "psnr", "precision",
              "recall", "f1", "accuracy"):
    assert key in final


def test_mistyped_config_key_is_one_clear_line(tmp_path):
  proc = run_module("brppnet_jax.main", "--config=configs/synthetic.py",
                    f"--workdir={tmp_path}", "--config.batch_sizee=8", check=False)
  assert proc.returncode != 0
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and "batch_sizee" in lines[0] and "batch_size" in lines[0].replace(
      "batch_sizee", ""), proc.stderr
  assert "Traceback" not in proc.stderr


def test_eval_mode_reports_every_metric_of_the_best_checkpoint(trained_workdir, synthetic_dataset):
  proc = run_module("brppnet_jax.main", "--config=configs/synthetic.py",
                    f"--workdir={trained_workdir}", "--mode=eval",
                    f"--config.dataset.data_dir={synthetic_dataset / 'tfds'}",
                    "--config.eval_max_examples=40", env={"XLA_FLAGS": ""})
  for key in ("miou", "oiou", "prec@0.5", "tdir", "ssim", "psnr", "f1", "accuracy"):
    assert key in proc.stdout
  assert "num_expressions" in proc.stdout and " 40" in proc.stdout

