"""Tests of the losses (spec section 4) against float64 numpy and of the L2 penalty."""

from flax import traverse_util
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from brppnet_jax.models import create_model
from brppnet_jax.train import losses
from configs import default
from configs import synthetic


def _sample(shape=(3, 8, 10, 1), seed=0):
  rng = np.random.default_rng(seed)
  return (rng.normal(0, 3, shape).astype(np.float32),
          rng.uniform(0, 1, shape).astype(np.float32))


def _np_pixel(name, z, m, eps_pos=1.0, eps_neg=-0.4, pos_weight=3.0):
  z, m = z.astype(np.float64), m.astype(np.float64)
  bce = np.logaddexp(0.0, z) - m * z
  s = np.exp(-np.logaddexp(0.0, -z))
  if name == "bce":
    return bce
  if name == "weighted_bce":
    return bce * (1.0 + (pos_weight - 1.0) * m)
  return bce + eps_pos * (1.0 - m * s) + eps_neg * (1.0 - m) * (1.0 - s)


@pytest.mark.parametrize("name", ["bce", "weighted_bce", "balanced_bce"])
@pytest.mark.parametrize("average", [False, True])
def test_loss_matches_float64_formula(name, average):
  z, m = _sample()
  pixel = _np_pixel(name, z, m)
  expected = pixel.mean() if average else pixel.sum() / z.shape[0]
  got = getattr(losses, name)(jnp.asarray(z), jnp.asarray(m), average=average)
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_loss_parameters_are_used():
  z, m = _sample(seed=1)
  np.testing.assert_allclose(
      losses.balanced_bce(z, m, eps_pos=0.5, eps_neg=-0.2),
      _np_pixel("balanced_bce", z, m, eps_pos=0.5, eps_neg=-0.2).sum() / 3, rtol=1e-5)
  np.testing.assert_allclose(losses.weighted_bce(z, m, pos_weight=5.0),
                             _np_pixel("weighted_bce", z, m, pos_weight=5.0).sum() / 3,
                             rtol=1e-5)


def test_average_is_sum_over_batch_divided_by_pixels_per_image():
  z, m = _sample()
  pixels_per_image = 8 * 10
  for fn in (losses.bce, losses.weighted_bce, losses.balanced_bce):
    np.testing.assert_allclose(fn(z, m, average=True), fn(z, m) / pixels_per_image, rtol=1e-6)


def test_bfloat16_logits_are_computed_in_float32():
  z, m = _sample()
  got = losses.balanced_bce(jnp.asarray(z, jnp.bfloat16), m)
  z16 = np.asarray(jnp.asarray(z, jnp.bfloat16).astype(jnp.float32))
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(got, _np_pixel("balanced_bce", z16, m).sum() / 3, rtol=1e-5)


@pytest.mark.parametrize("name", ["bce", "weighted_bce", "balanced_bce"])
def test_large_logits_are_finite_and_exact(name):
  z = np.array([[1e4, -1e4, 1e4, -1e4, 30.0, -30.0]], np.float32)
  m = np.array([[1.0, 0.0, 0.0, 1.0, 0.5, 0.25]], np.float32)
  fn = getattr(losses, name)
  np.testing.assert_allclose(fn(z, m), _np_pixel(name, z, m).sum(), rtol=1e-6)
  grad = jax.grad(fn)(jnp.asarray(z), jnp.asarray(m))
  assert np.all(np.isfinite(grad))
  # d bce / dz = sigmoid(z) - m; the extra terms vanish where s(1-s) == 0.
  weight = 1.0 + 2.0 * m[0, :4] if name == "weighted_bce" else 1.0
  np.testing.assert_allclose(grad[0, :4], np.array([0.0, 0.0, 1.0, -1.0]) * weight, atol=1e-6)


def test_balanced_bce_gradient_of_extra_terms():
  rng = np.random.default_rng(3)
  z = rng.normal(0, 2, (2, 6, 6)).astype(np.float32)
  m = (rng.uniform(size=z.shape) < 0.4).astype(np.float32)
  extra = jax.grad(losses.balanced_bce)(z, m) - jax.grad(losses.bce)(z, m)
  s = 1.0 / (1.0 + np.exp(-z.astype(np.float64)))
  per_image = np.where(m == 1, -1.0 * s * (1 - s), 0.4 * s * (1 - s))
  np.testing.assert_allclose(extra, per_image / z.shape[0], rtol=1e-4, atol=1e-7)
  assert np.all(extra[m == 1] < 0) and np.all(extra[m == 0] > 0)


def test_get_loss_fn_follows_config():
  z, m = _sample()
  config = default.get_config().loss
  np.testing.assert_allclose(losses.get_loss_fn(config)(z, m), losses.balanced_bce(z, m))
  config.update(name="weighted_bce", pos_weight=2.0, average=True)
  np.testing.assert_allclose(losses.get_loss_fn(config)(z, m),
                             losses.weighted_bce(z, m, pos_weight=2.0, average=True))
  config.name = "bce"
  np.testing.assert_allclose(losses.get_loss_fn(config)(z, m), losses.bce(z, m, average=True))


def test_get_loss_fn_rejects_unknown_name():
  config = ml_collections.ConfigDict(dict(name="dice", eps_pos=1.0, eps_neg=-0.4,
                                          pos_weight=3.0, average=False))
  with pytest.raises(ValueError, match="loss.name .*balanced_bce, bce, weighted_bce.*'dice'"):
    losses.get_loss_fn(config)


def test_loss_rejects_mismatched_shapes():
  with pytest.raises(ValueError, match="same shape"):
    losses.bce(np.zeros((2, 4, 4, 1)), np.zeros((2, 4, 4)))


# Per top-level module: how many kernels the L2 penalty covers (stride-2 head).
PENALISED_KERNELS = {
    "backbone": 1 + 5 + 2 * 5 + 4,  # stem, downsamplings, 5 Res blocks, frozen neck.
    "DBL_neck4": 1, "DBL_neck5": 1, "Res_c3": 2, "Res_c4": 2, "Res_c5": 2, "Res_loc": 2,
    "MFFM_m2": 4, "MFFM_m3": 4,
    "ASPP": 5 + 1,  # Five DBL branches and the 1x1 projection.
    "head": 5 + 1,  # Five DBLs and the logits conv.
    "PSA": 0, "Fusion_c3": 0, "Fusion_c4": 0, "Fusion_c5": 0, "Fusion_loc": 0,
    "text_encoder": 0,
}


def _param_shapes(config):
  config.model.vocab_size = 50
  config.model.seg_out_stride = 2
  images = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
  tokens = jax.ShapeDtypeStruct((1, 15), jnp.int32)
  model = create_model(config)
  return jax.eval_shape(lambda i, t: model.init(jax.random.key(0), i, t), images, tokens)["params"]


def test_l2_penalty_covers_exactly_dbl_and_darknet_convs():
  shapes = _param_shapes(synthetic.get_config())
  flat = traverse_util.flatten_dict(shapes)
  rng = np.random.default_rng(0)
  params = traverse_util.unflatten_dict(
      {k: rng.normal(size=s.shape).astype(np.float32) for k, s in flat.items()})
  penalised = [k for k in flat if losses.is_penalised_kernel(k)]
  counts = {name: sum(k[0] == name for k in penalised) for name in shapes}
  assert counts == PENALISED_KERNELS
  assert all(len(flat[k].shape) == 4 for k in penalised)
  expected = 5e-4 * sum(np.sum(np.square(params_k, dtype=np.float64))
                        for params_k in (traverse_util.flatten_dict(params)[k]
                                         for k in penalised))
  np.testing.assert_allclose(losses.l2_penalty(params), expected, rtol=1e-5)
  np.testing.assert_allclose(losses.l2_penalty(params, weight=1.0), expected / 5e-4, rtol=1e-5)
  # Only the given subtree counts: the caller drops `backbone` when it is frozen.
  trainable = {k: v for k, v in params.items() if k != "backbone"}
  expected_trainable = 5e-4 * sum(
      np.sum(np.square(v, dtype=np.float64))
      for k, v in traverse_util.flatten_dict(params).items()
      if losses.is_penalised_kernel(k) and k[0] != "backbone")
  np.testing.assert_allclose(losses.l2_penalty(trainable), expected_trainable, rtol=1e-5)


def test_l2_penalised_parameter_count_at_full_size():
  flat = traverse_util.flatten_dict(_param_shapes(default.get_config()))
  penalised = sum(int(np.prod(s.shape)) for k, s in flat.items()
                  if k[0] != "backbone" and losses.is_penalised_kernel(k))
  # 29,982,977 trainable head parameters less biases, BN, dense layers and PSA convs.
  assert penalised == 27_724_032
