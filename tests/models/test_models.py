"""Tests of the BRPPNet network: sizes against the spec, masking, freezing, dtypes, sharding."""


from flax import traverse_util
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec
import numpy as np
import pytest

from brppnet_jax.models import create_model
from brppnet_jax.models.layers import scaled_channels
from brppnet_jax.models.text_encoder import TextEncoder
from brppnet_jax.models.text_encoder import bigru_sequence
from configs import default
from configs import synthetic

VOCAB = 50
BATCH, HEIGHT, WIDTH, WORDS = 8, 64, 96, 15
# rbg keys: threefry initialisers take tens of seconds to compile on CPU.
INIT_KEY = jax.random.key(0, impl="rbg")
DROPOUT_KEY = jax.random.key(1, impl="rbg")


def tiny_config(**model_overrides):
  config = synthetic.get_config()
  config.model.vocab_size = VOCAB
  config.model.seg_out_stride = 2
  config.model.freeze_backbone = True
  config.model.update(model_overrides)
  return config


def full_config():
  config = default.get_config()
  config.model.vocab_size = 1000
  return config


def count(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def init_shapes(model, height, width, batch=1):
  images = jax.ShapeDtypeStruct((batch, height, width, 3), jnp.float32)
  tokens = jax.ShapeDtypeStruct((batch, WORDS), jnp.int32)
  return jax.eval_shape(lambda i, t: model.init_with_output(INIT_KEY, i, t), images, tokens)


@pytest.fixture(scope="module")
def inputs():
  images = jax.random.uniform(jax.random.key(1), (BATCH, HEIGHT, WIDTH, 3))
  lengths = np.array([3, 15, 7, 11, 4, 9, 15, 6])
  tokens = np.array(jax.random.randint(jax.random.key(2), (BATCH, WORDS), 2, VOCAB))
  tokens[np.arange(WORDS)[None, :] >= lengths[:, None]] = 0
  return images, jnp.asarray(tokens, jnp.int32)


@pytest.fixture(scope="module")
def tiny(inputs):
  model = create_model(tiny_config())
  variables = jax.jit(lambda k: model.init(k, *inputs))(INIT_KEY)
  return model, variables


@pytest.fixture(scope="module")
def eval_fn(tiny):
  model, _ = tiny
  return jax.jit(lambda v, i, t: model.apply(v, i, t, train=False))


def test_full_size_parameter_counts_and_output():
  logits, variables = init_shapes(create_model(full_config()), 416, 416)
  params = variables["params"]
  assert (logits.shape, logits.dtype) == ((1, 208, 208, 1), jnp.float32)
  assert count(params["backbone"]) == 51_076_832
  darknet = {k: v for k, v in params["backbone"].items() if not k.startswith("DBL_neck")}
  assert count(darknet) == 40_584_928
  rest = {k: v for k, v in params.items() if k not in ("backbone", "text_encoder")}
  assert count(rest) == 29_982_977
  neck = sorted(k for k in params["backbone"] if k.startswith("DBL_neck"))
  assert neck == ["DBL_neck0", "DBL_neck1", "DBL_neck2", "DBL_neck3"]
  assert {"DBL_neck4", "DBL_neck5"} <= set(params)
  assert params["ASPP"]["DarknetConv_project"]["kernel"].shape == (1, 1, 1280, 256)
  assert params["text_encoder"]["embedding"]["embedding"].shape == (1000, 300)
  gru = {k: v for k, v in params["text_encoder"].items() if k != "embedding"}
  assert count(gru) == 8_140_800  # Keras' reset_after=False GRU: one bias per gate.
  assert {k: v.shape for k, v in gru["gru_backward"].items()} == {
      "kernel": (300, 3072), "recurrent_kernel": (1024, 3072), "bias": (3072,)}


def test_full_size_non_square_output():
  logits, _ = init_shapes(create_model(full_config()), 416, 320)
  assert logits.shape == (1, 208, 160, 1)


@pytest.mark.parametrize("stride", [2, 4, 8])
def test_output_shape_per_stride(stride):
  logits, variables = init_shapes(create_model(tiny_config(seg_out_stride=stride)), 64, 96, 2)
  assert logits.shape == (2, 64 // stride, 96 // stride, 1)
  assert len(variables["params"]["head"]) == 3 + {2: 2, 4: 1, 8: 0}[stride] + 1


def test_width_scales_channels():
  assert [scaled_channels(c, 1.0) for c in (32, 256, 1024)] == [32, 256, 1024]
  assert [scaled_channels(c, 0.125) for c in (32, 64, 128, 1024)] == [8, 8, 16, 128]
  assert scaled_channels(1024, 0.01) == 8 and scaled_channels(100, 0.5) == 48
  _, variables = init_shapes(create_model(tiny_config(width=0.25)), 64, 64)
  params = variables["params"]
  assert params["backbone"]["Res5_0"]["DBL_1x1"]["conv"]["kernel"].shape == (1, 1, 256, 128)
  assert params["MFFM_m2"]["DBL_1x1"]["conv"]["kernel"].shape == (1, 1, 128, 64)
  assert params["PSA"]["channel_value"]["kernel"].shape == (1, 1, 32, 16)  # hidden_dim 32.


@pytest.mark.parametrize("key,value,match", [
    ("vocab_size", 1, "config.model.vocab_size"),
    ("seg_out_stride", 16, "config.model.seg_out_stride"),
    ("dtype", "float16", "config.model.dtype"),
    ("hidden_dim", 33, "config.model.hidden_dim"),
    ("stage_blocks", (1, 1, 1, 1), "config.model.stage_blocks"),
    ("width", 0.0, "config.model.width"),
    ("rnn_dropout", 1.0, "config.model.rnn_dropout"),
])
def test_create_model_rejects_bad_values(key, value, match):
  with pytest.raises(ValueError, match=match):
    create_model(tiny_config(**{key: value}))


def test_rejects_image_size_not_multiple_of_32():
  model = create_model(tiny_config())
  with pytest.raises(ValueError, match=r"multiples of 32, got \(1, 64, 80, 3\)"):
    init_shapes(model, 64, 80)


def test_forward_under_jit(tiny, inputs, eval_fn):
  logits = eval_fn(tiny[1], *inputs)
  assert (logits.shape, logits.dtype) == ((BATCH, HEIGHT // 2, WIDTH // 2, 1), jnp.float32)
  assert np.all(np.isfinite(logits)) and np.std(logits) > 0


def test_padding_does_not_change_logits(tiny, inputs, eval_fn):
  images, tokens = inputs
  padded = jnp.pad(tokens, ((0, 0), (0, 5)))
  np.testing.assert_allclose(eval_fn(tiny[1], images, padded), eval_fn(tiny[1], images, tokens),
                             rtol=1e-5, atol=1e-6)


def test_changing_a_word_changes_logits(tiny, inputs, eval_fn):
  images, tokens = inputs
  changed = tokens.at[:, 1].set(jnp.where(tokens[:, 1] == 5, 6, 5))
  diff = np.abs(eval_fn(tiny[1], images, changed) - eval_fn(tiny[1], images, tokens))
  assert np.all(diff.max(axis=(1, 2, 3)) > 1e-6)


def test_all_padding_is_finite(tiny, inputs, eval_fn):
  logits = eval_fn(tiny[1], inputs[0], jnp.zeros_like(inputs[1]))
  assert np.all(np.isfinite(logits))


def _changed_leaves(before, after):
  flat_before, flat_after = (traverse_util.flatten_dict(t) for t in (before, after))
  return {k: not np.array_equal(flat_before[k], flat_after[k]) for k in flat_before}


def test_frozen_batchnorm_modes(tiny, inputs):
  """batch_stats (Keras 2.3.1): the frozen backbone normalises with the batch's statistics in
  training; stored: with its stored ones, which then stay as they are."""
  model, variables = tiny
  assert model.frozen_bn == "batch_stats"
  stored = create_model(tiny_config(frozen_bn="stored"))
  train = lambda m: jax.jit(lambda v, i, t: m.apply(v, i, t, train=True, mutable=["batch_stats"],
                                                     rngs={"dropout": DROPOUT_KEY}))
  (batch_logits, batch_upd) = train(model)(variables, *inputs)
  (stored_logits, stored_upd) = train(stored)(variables, *inputs)
  assert np.abs(batch_logits - stored_logits).max() > 1e-3
  assert all(_changed_leaves(variables["batch_stats"]["backbone"],
                             batch_upd["batch_stats"]["backbone"]).values())
  assert not any(_changed_leaves(variables["batch_stats"]["backbone"],
                                 stored_upd["batch_stats"]["backbone"]).values())


def test_bfloat16_forward_is_close_to_float32(tiny, inputs, eval_fn):
  model = create_model(tiny_config(dtype="bfloat16"))
  logits16 = jax.jit(lambda v, i, t: model.apply(v, i, t))(tiny[1], *inputs)
  logits32 = eval_fn(tiny[1], *inputs)
  assert logits16.dtype == jnp.float32 and np.all(np.isfinite(logits16))
  assert np.abs(logits16 - logits32).max() <= 0.05 * np.abs(logits32).max()
  assert np.corrcoef(np.ravel(logits16), np.ravel(logits32))[0, 1] > 0.99


def test_batch_sharded_forward_matches_unsharded(tiny, inputs, eval_fn):
  mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  batch = NamedSharding(mesh, PartitionSpec("data"))
  replicated = NamedSharding(mesh, PartitionSpec())
  images, tokens = (jax.device_put(x, batch) for x in inputs)
  variables = jax.device_put(tiny[1], replicated)
  logits = eval_fn(variables, images, tokens)
  assert logits.sharding.is_equivalent_to(batch, logits.ndim)
  np.testing.assert_allclose(logits, eval_fn(tiny[1], *inputs), rtol=1e-5, atol=1e-6)


# Text encoder ------------------------------------------------------------------------------


def _text_encoder(padding, tokens, table):
  encoder = TextEncoder(table.shape[0], table.shape[1], 8, 0.1, padding)
  params = encoder.init(INIT_KEY, tokens, False)["params"]
  params["embedding"]["embedding"] = table
  return lambda t, train=False: encoder.apply({"params": params}, t, train,
                                              rngs={"dropout": DROPOUT_KEY})


@pytest.fixture(scope="module")
def word_table():
  table = np.array(jax.random.normal(jax.random.key(3), (10, 6)))
  table[0] = 0.0
  table[9] = 0.0  # A word without a vector.
  return table


def test_original_padding_masks_zero_vectors_and_repeats_outputs(word_table):
  tokens = np.array([[3, 9, 4, 0, 0, 0]], np.int32)
  q, h = _text_encoder("original", tokens, word_table)(tokens)
  h = np.asarray(h[0])
  # Forward repeats the last output after the sentence; backward outputs zeros there, so the
  # padded steps all carry the forward direction's last output.
  np.testing.assert_array_equal(h[3], h[4])
  np.testing.assert_array_equal(h[4], h[5])
  np.testing.assert_allclose(np.asarray(q[0]), h.sum(axis=0), rtol=1e-6)
  # The word without a vector is skipped: the same as the sentence without it, at its steps.
  _, h_without = _text_encoder("original", tokens, word_table)(np.array([[3, 4, 0, 0, 0, 0]]))
  np.testing.assert_allclose(h[2], np.asarray(h_without[0, 1]), rtol=1e-5, atol=1e-6)
  # q sums every step, so more padding changes it.
  q_longer, _ = _text_encoder("original", tokens, word_table)(np.pad(tokens, ((0, 0), (0, 3))))
  assert np.abs(np.asarray(q_longer) - np.asarray(q)).max() > 1e-3


def test_masked_padding_is_invariant_and_sums_valid_steps(word_table):
  tokens = np.array([[3, 9, 4, 0, 0, 0], [5, 6, 7, 8, 1, 2]], np.int32)
  encode = _text_encoder("masked", tokens, word_table)
  q, h = encode(tokens)
  q_padded, _ = encode(np.pad(tokens, ((0, 0), (0, 4))))
  np.testing.assert_allclose(np.asarray(q_padded), np.asarray(q), rtol=1e-6, atol=1e-6)
  assert not np.any(np.asarray(h[0, 3:]))
  np.testing.assert_allclose(np.asarray(q[0]), np.asarray(h[0, :3]).sum(axis=0), rtol=1e-6)


def test_gru_dropout_one_mask_per_sentence_and_direction():
  """With one input unit and rate 0.5, each direction sees either the whole sentence doubled or
  all zeros (one mask per sentence and direction, shared by its steps, as Keras draws it)."""
  table = np.array([[0.0], [0.7], [-1.2], [0.4]], np.float32)
  tokens = np.tile(np.array([[1, 2, 3, 1, 2]], np.int32), (64, 1))
  encoder = TextEncoder(4, 1, 8, 0.5, "masked")
  params = encoder.init(INIT_KEY, tokens, False)["params"]
  params["embedding"]["embedding"] = table
  _, h = encoder.apply({"params": params}, tokens, True, rngs={"dropout": DROPOUT_KEY})
  x = table[tokens[0]][None]  # [1, T, 1]
  valid = np.ones((1, tokens.shape[1]), bool)
  order = np.arange(tokens.shape[1])[::-1][None]
  weights = [params[f"gru_{d}"] for d in ("forward", "backward")]
  stacked = [np.stack([w[k] for w in weights]) for k in ("kernel", "recurrent_kernel", "bias")]
  candidates = [np.asarray(bigru_sequence(np.stack([fw * x, bw * x]), valid, order, *stacked)[0])
                for fw in (0.0, 2.0) for bw in (0.0, 2.0)]
  seen = set()
  for row in np.asarray(h):
    errors = [np.abs(row - c).max() for c in candidates]
    assert min(errors) < 1e-5, errors
    seen.add(int(np.argmin(errors)))
  assert len(seen) == 4  # 64 sentences draw every combination.
