"""Training: schedule, the data-parallel step, frozen parts, non-finite losses, learning."""

import json

import jax
import numpy as np
import pytest

from brppnet_jax.data import synthetic
from brppnet_jax.evaluation import checkpoint
from brppnet_jax.runtime import sharding
from brppnet_jax.train import loop
from brppnet_jax.train import step_functions
from brppnet_jax.train import train_state
from configs import default as default_config
from configs import synthetic as synthetic_config

from conftest import ONE_DEVICE
from conftest import TRAIN_STEPS
from conftest import run_module


def tiny_config(freeze_backbone=True):
  config = synthetic_config.get_config()
  config.dataset.input_size = 64
  config.model.vocab_size = 20
  config.model.freeze_backbone = freeze_backbone
  config.batch_size = 8
  return config


def large_epsilon_config():
  """tiny_config whose Adam updates are proportional to the gradient (a large epsilon)."""
  config = tiny_config()
  config.optimizer.eps, config.optimizer.learning_rate = 1000.0, 0.01
  return config


def random_batch(config, seed=0, n=16):
  rng = np.random.default_rng(seed)
  size, out = config.dataset.input_size, config.dataset.input_size // config.model.seg_out_stride
  return {
      "image": rng.random((n, size, size, 3), np.float32),
      "tokens": rng.integers(1, config.model.vocab_size, (n, config.dataset.word_len), np.int32),
      "mask": (rng.random((n, out, out, 1)) > 0.7).astype(np.float32),
  }


def make_state(config, mesh):
  model, tx, train_fn, _ = step_functions.make_steps(config, steps_per_epoch=10)
  state, shardings = loop.create_state(config, model, tx, mesh, train_state.prng_key(0))
  step = step_functions.jit_train(train_fn, mesh, shardings)
  return state, step


def test_learning_rate_follows_the_epoch_schedule_of_the_paper():
  config = default_config.get_config()
  schedule = train_state.learning_rate_fn(config, steps_per_epoch=7)
  lr_of_epoch = {e: float(schedule(7 * (e - 1))) for e in range(1, 51)}
  assert all(lr_of_epoch[e] == pytest.approx(1e-3) for e in range(1, 19))
  assert lr_of_epoch[19] == pytest.approx(5e-4) and lr_of_epoch[28] == pytest.approx(5e-4)
  assert lr_of_epoch[29] == pytest.approx(2.5e-4) and lr_of_epoch[39] == pytest.approx(1.25e-4)
  assert lr_of_epoch[50] == pytest.approx(6.25e-5)
  assert float(schedule(7 * 18 - 1)) == pytest.approx(1e-3)  # Last step of epoch 18.
  assert float(schedule(7 * 18)) == pytest.approx(5e-4)  # First step of epoch 19.


# One step of this config and batch, measured 2026-11-27 (jax 0.12.0.1, 2-core CPU): the
# update on 8 devices differs from the update on one device by LAYOUT_NOISE of its norm.
# Replacing device 1's rows with device 0's (one device's rows counted twice) moves it by
# WRONG_ROWS_DIFFERENCE. The network's gradient sums many terms that nearly cancel, so float32
# summation order alone moves it by tenths of a percent: with dropout off, the gradient of the
# same 16 rows in reverse order on one device (same arithmetic, another order) differed from
# the original order's by REVERSED_NOISE, more than 8 devices did.
LAYOUT_NOISE = 0.0072
REVERSED_NOISE = 0.018
WRONG_ROWS_DIFFERENCE = 1.17
LAYOUT_TOLERANCE = 3 * LAYOUT_NOISE


def relative_update_difference(a, b, start) -> float:
  """|a - b| / |a - start| over every parameter: a and b are parameters after one step."""
  flat = lambda tree: np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])
  a, b, start = flat(a), flat(b), flat(start)
  return float(np.linalg.norm(a - b) / np.linalg.norm(a - start))


def assert_same_update(a, b, start):
  difference = relative_update_difference(a, b, start)
  print(f"relative update difference: {difference:.3g}")
  assert difference < LAYOUT_TOLERANCE, (
      f"updates differ by {difference:.3g} of the update (float32 noise: {LAYOUT_NOISE})")


def one_step(config, mesh, *batches):
  """Start params, and for each batch (loss, params after one step from the start)."""
  start, step = make_state(config, mesh)
  results = []
  for batch in batches:  # The step donates its state: each starts from a copy of the start.
    state, metrics = step(jax.tree.map(lambda x: x.copy(), start),
                          sharding.global_batch(batch, mesh))
    results.append((float(metrics["loss"]), jax.device_get(state.params)))
  return jax.device_get(start.params), results


def test_data_parallel_step_on_8_devices_equals_one_device():
  """One step, 1 vs 8 devices: the same loss and update up to float32 summation order.

  A large Adam epsilon makes the update proportional to the gradient (Adam's first step is
  otherwise lr * sign(g), which flips on tiny gradients). A wrong reduction (one device's
  rows counted twice) fails the same comparison.
  """
  config = large_epsilon_config()
  batch = random_batch(config)
  # Device 1's two rows replaced by device 0's: device 0's rows count twice.
  wrong_batch = {k: np.concatenate([v[:2], v[:2], v[4:]]) for k, v in batch.items()}
  start, [(loss_one, one)] = one_step(config, sharding.make_mesh(jax.devices()[:1]), batch)
  _, [(loss_eight, eight), (_, wrong)] = one_step(
      config, sharding.make_mesh(jax.devices()[:8]), batch, wrong_batch)
  assert loss_eight == pytest.approx(loss_one, rel=1e-6)
  assert_same_update(one, eight, start)
  with pytest.raises(AssertionError, match="updates differ by"):
    assert_same_update(one, wrong, start)


def test_nonfinite_loss_freezes_the_state_and_names_the_step():
  config = large_epsilon_config()  # The one-device step of the test above, compiled once.
  state, step = make_state(config, sharding.make_mesh(jax.devices()[:1]))
  state, _ = step(state, random_batch(config, seed=0))
  good = jax.device_get(state.params)
  bad = random_batch(config, seed=1)
  bad["image"][0, 0, 0, 0] = np.nan
  state, metrics = step(state, bad)
  state, _ = step(state, random_batch(config, seed=2))
  assert not np.isfinite(float(metrics["loss"]))
  for a, b in zip(jax.tree.leaves(good), jax.tree.leaves(jax.device_get(state.params))):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(loop.NonFiniteLossError, match="training step 2; .* checkpoint is step 1"):
    loop.check_finite(state, last_good_step=1)


def test_diverging_run_stops_with_error_and_keeps_last_good_checkpoint(synthetic_dataset, tmp_path):
  proc = run_module(
      "brppnet_jax.main", "--config=configs/synthetic.py", f"--workdir={tmp_path}",
      f"--config.dataset.data_dir={synthetic_dataset / 'tfds'}", "--config.total_steps=6",
      "--config.optimizer.learning_rate=1e30", "--config.checkpoint_every_steps=1",
      "--config.log_every_steps=1", "--config.eval_every_steps=100",
      env=ONE_DEVICE, check=False)
  assert proc.returncode != 0
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("error: non-finite loss at training step ")
  bad_step = int(last.split("training step ")[1].split(";")[0])
  saved = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
  assert saved and saved[-1] == bad_step - 1
  assert f"last good checkpoint is step {bad_step - 1}" in last


def final_training_evaluation(workdir) -> dict:
  records = [json.loads(l) for l in (workdir / "eval_metrics.jsonl").read_text().splitlines()]
  assert all("split" not in r for r in records)  # `--mode=eval` writes elsewhere.
  return records[-1]


def test_synthetic_training_beats_the_text_blind_rules(trained_workdir, synthetic_dataset):
  final = final_training_evaluation(trained_workdir)
  assert final["step"] == TRAIN_STEPS
  rules = synthetic.text_blind_ceiling(str(synthetic_dataset / "raw"), split="test")
  assert final["num_expressions"] == rules["expressions"]  # Each expression once.
  assert final["miou"] > rules["ceiling"] + 0.1, (final, rules)
  assert sorted(final) == sorted(["step", "miou", "oiou", "miou_protected", "oiou_protected",
                                  "prec@0.5", "prec@0.6", "prec@0.7",
                                  "prec@0.8", "prec@0.9", "tdir", "tdir_haar", "tdir_dnn",
                                  "tdir_hog", "ssim", "psnr", "precision",
                                  "recall", "f1", "accuracy", "num_expressions"])
  assert final["tdir"] is None  # configs/synthetic.py skips the face test.
  precisions = [final[f"prec@{x}"] for x in (0.5, 0.6, 0.7, 0.8, 0.9)]
  assert precisions == sorted(precisions, reverse=True) and precisions[0] > precisions[-1]
  for key in ("oiou", "ssim", "precision", "recall", "f1", "accuracy"):
    assert 0.0 < final[key] < 1.0, key
  assert 10.0 < final["psnr"] < 100.0


def test_mistyped_config_key_is_one_clear_line(tmp_path):
  proc = run_module("brppnet_jax.main", "--config=configs/synthetic.py",
                    f"--workdir={tmp_path}", "--config.batch_sizee=8", check=False)
  assert proc.returncode != 0
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and "batch_sizee" in lines[0] and "batch_size" in lines[0].replace(
      "batch_sizee", ""), proc.stderr
  assert "Traceback" not in proc.stderr


def test_missing_config_file_is_one_line_quoting_it(tmp_path):
  proc = run_module("brppnet_jax.main", "--config=configs/synthetc.py",
                    f"--workdir={tmp_path}", check=False)
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines() == [
      "error: --config=configs/synthetc.py: no such file (here or in the installed configs/)"]


def printed_table(text: str) -> dict:
  """{key: value text} of the two-column table `evaluate.format_table` prints."""
  return dict(line.split() for line in text.strip().splitlines() if len(line.split()) == 2)


def test_eval_mode_reproduces_the_training_evaluation(trained_workdir, synthetic_dataset):
  """`--mode=eval` restores the best checkpoint (the last: the only one evaluated) and scores
  every test expression again: the same numbers as the evaluation during training."""
  proc = run_module("brppnet_jax.main", "--config=configs/synthetic.py",
                    f"--workdir={trained_workdir}", "--mode=eval",
                    f"--config.dataset.data_dir={synthetic_dataset / 'tfds'}",
                    env=ONE_DEVICE)
  training = final_training_evaluation(trained_workdir)
  expected = {k: ("n/a" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v))
              for k, v in training.items()}
  assert printed_table(proc.stdout) == {**expected, "split": "test"}
  written = json.loads((trained_workdir / checkpoint.EVAL_MODE_FILE).read_text().splitlines()[-1])
  assert sorted(written) == sorted([*training, "split"]) and written["split"] == "test"
  assert written["miou"] == pytest.approx(training["miou"], abs=1e-6)
