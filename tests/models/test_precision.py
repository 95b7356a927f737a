"""The bfloat16 training step does its convolutions and matmuls in bfloat16 (no GPU needed).

Flax promotes a bfloat16 activation times a float32 parameter to float32 unless the layer
gets `dtype`; one such layer would quietly run at float32 speed. The step is lowered (not
compiled) on the CPU and every convolution and dot_general is checked by its operand types
and the module scope JAX names it with.

Allowed in float32, by design: the text encoder (`text_encoder/`: its recurrence keeps
float32, see models/text_encoder.py). The loss and the L2 penalty run in float32 too, but
hold no convolution or matmul.
"""

import re

import jax
import pytest

from brppnet_jax.measure import timing
from brppnet_jax.train import step_functions
from brppnet_jax.train import train_state
from configs import synthetic as synthetic_config

FLOAT32_SCOPES = ("/text_encoder/",)
_OP = re.compile(r"stablehlo\.(convolution|dot_general)\b.*:\s*\(([^)]*)\)\s*->.*loc\((#loc\d+)\)")
_LOC = re.compile(r"^(#loc\d+) = loc\((.*)\)$", re.M)


def _ops(config):
  """[(kind, operand types, JAX op name)] of every convolution and dot_general in the step."""
  model, tx, train_fn, _ = step_functions.make_steps(config, steps_per_epoch=10)
  state = jax.eval_shape(lambda r: train_state.create_train_state(model, config, tx, r),
                         train_state.prng_key(0))
  batch = timing.random_batch(config, 2, config.dataset.input_size, config.model.vocab_size)
  text = jax.jit(train_fn).lower(state, batch).as_text(debug_info=True)
  locations = dict(_LOC.findall(text))
  ops = []
  for line in text.splitlines():
    match = _OP.search(line)
    if match:
      name = re.match(r'"([^"]*)"', locations[match.group(3)])
      ops.append((match.group(1), match.group(2), name.group(1) if name else ""))
  return ops


@pytest.mark.parametrize("freeze_backbone", [True, False])
def test_bfloat16_step_has_no_float32_conv_or_matmul_outside_the_text_encoder(freeze_backbone):
  config = synthetic_config.get_config()
  config.dataset.input_size, config.model.vocab_size = 64, 20
  config.model.dtype, config.model.freeze_backbone = "bfloat16", freeze_backbone
  ops = _ops(config)
  float32 = [(kind, types, name) for kind, types, name in ops if "xf32>" in types]
  stray = [op for op in float32 if not any(scope in op[2] for scope in FLOAT32_SCOPES)]
  assert not stray, "float32 outside " + str(FLOAT32_SCOPES) + ":\n" + "\n".join(map(str, stray))
  # The check sees what it should: bf16 convolutions forward and backward, f32 GRU matmuls.
  convs = [name for kind, types, name in ops if kind == "convolution" and "xbf16>" in types]
  assert any("transpose(jvp" in name for name in convs) and len(convs) > 50
  assert any("/text_encoder/" in name for _, _, name in float32)


def test_the_check_finds_float32_convolutions_in_a_float32_step():
  config = synthetic_config.get_config()
  config.dataset.input_size, config.model.vocab_size, config.model.dtype = 64, 20, "float32"
  stray = [name for kind, types, name in _ops(config)
           if kind == "convolution" and "xf32>" in types]
  assert any("/backbone/DBL_stem/conv/" in name for name in stray)
