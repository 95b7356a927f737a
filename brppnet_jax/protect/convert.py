"""A restored `Predictor`'s network as bytes: a TFLite flatbuffer or a serialised jax.export.

Both wrap the package's own predict step (`train.step_functions.predict_step`), and the
weights travel inside the file: uint8 letterboxed image, geometry and tokens in, mask
probabilities out (model_file.ModelInfo).

TFLite: the checkpoint's parameters baked in as constants; jax2tf serialises the step
natively (StableHLO inside one XlaCallModule op) and TensorFlow's converter lowers that to
builtin TFLite ops only (convolutions, the GRU's unrolled scan, gathers), batch 1.
StableHLO: jax.export with a symbolic batch size, lowered for CPU, CUDA and TPU, in an .npz
archive beside the weights (model_file.STABLEHLO_PROGRAM, model_file.stablehlo_weight). The
weights are the exported function's arguments, not constants: XLA then compiles the very
program `Predictor` compiles, and gives its probabilities bit for bit (constants would be
folded, and rounded otherwise). Loading it needs numpy and jax alone.
"""

from __future__ import annotations

import io

import jax
import numpy as np

from brppnet_jax.protect import model_file
from brppnet_jax.protect import request_text
from brppnet_jax.train import step_functions

STABLEHLO_PLATFORMS = ("cpu", "cuda", "tpu")


def predict_with_weights(predictor):
  """(fn(weights, image, geometry, tokens) -> probabilities, weights): the predictor's step
  with its variables passed in as a flat list of host arrays (an array sharded over the
  predictor's mesh would make the exported module a multi-device one; the optimiser state is
  not needed to predict)."""
  state = predictor.state
  weights, treedef = jax.tree.flatten(
      jax.device_get({"params": state.params, "batch_stats": state.batch_stats}))
  skeleton = state.replace(params=None, batch_stats=None, opt_state=None)
  _, _, _, predict_fn = step_functions.make_steps(predictor.config, steps_per_epoch=1)

  def predict(weights, image, geometry, tokens):
    state = skeleton.replace(**jax.tree.unflatten(treedef, weights))
    return predict_fn(state, {"image": image, "geometry": geometry, "tokens": tokens})

  return predict, weights


def predict_function(predictor):
  """fn(image, geometry, tokens) -> probabilities, the predictor's step on host constants."""
  predict, weights = predict_with_weights(predictor)
  return lambda image, geometry, tokens: predict(weights, image, geometry, tokens)


def input_specs(config, batch) -> list[tuple[tuple, np.dtype]]:
  """(shape, dtype) of each input of model_file.INPUTS for a batch size (int or symbolic)."""
  size, length = config.dataset.input_size, config.dataset.word_len
  shapes = {"image": (batch, size, size, 3), "geometry": (batch, 4), "tokens": (batch, length)}
  return [(shapes[name], np.dtype(dtype)) for name, dtype in model_file.INPUTS]


def to_tflite(predictor, quantize: str) -> bytes:
  """A .tflite flatbuffer (batch 1) of builtin ops; `quantize` as model_file.QUANTIZATIONS."""
  from jax.experimental import jax2tf  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  (heavy; only this format)

  signature = [tf.TensorSpec(shape, tf.as_dtype(dtype), name=name) for (shape, dtype), (name, _)
               in zip(input_specs(predictor.config, 1), model_file.INPUTS)]
  tf_predict = tf.function(jax2tf.convert(predict_function(predictor), with_gradient=False),
                           input_signature=signature, autograph=False)
  converter = tf.lite.TFLiteConverter.from_concrete_functions(
      [tf_predict.get_concrete_function()], tf_predict)
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
  if quantize == "float16":  # Weights stored as float16, computed in float32.
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
  elif quantize == "dynamic_int8":  # Weights int8; activations quantised on the fly.
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
  elif quantize != "none":
    raise ValueError(f"unknown quantisation {quantize!r}: one of {model_file.QUANTIZATIONS}")
  return converter.convert()


def to_stablehlo(predictor) -> bytes:
  """An .npz archive: the serialised jax.export.Exported (symbolic batch size) of
  fn(weights, image, geometry, tokens) and each of the weights, in argument order."""
  predict, weights = predict_with_weights(predictor)
  batch, = jax.export.symbolic_shape("batch")
  args = [jax.ShapeDtypeStruct(shape, dtype) for shape, dtype
          in input_specs(predictor.config, batch)]
  weight_specs = [jax.ShapeDtypeStruct(w.shape, w.dtype) for w in weights]
  exported = jax.export.export(jax.jit(predict), platforms=STABLEHLO_PLATFORMS)(
      weight_specs, *args)
  archive = io.BytesIO()
  np.savez(archive, **{model_file.STABLEHLO_PROGRAM: np.frombuffer(exported.serialize(), np.uint8)},
           **{model_file.stablehlo_weight(i): np.asarray(w) for i, w in enumerate(weights)})
  return archive.getvalue()


def model_info(predictor, workdir: str, fmt: str, quantize: str, data: bytes,
               ) -> model_file.ModelInfo:
  """The sidecar of `data`, exported from `predictor` (restored from `workdir`)."""
  config = predictor.config
  return model_file.ModelInfo(
      format=fmt, quantize=quantize, input_size=int(config.dataset.input_size),
      word_len=int(config.dataset.word_len), mask_stride=int(config.model.seg_out_stride),
      words=tuple(predictor.vocab.words), request_prefix=request_text.REQUEST_PREFIX,
      text_padding=str(config.model.text_padding), threshold=model_file.DEFAULT_THRESHOLD,
      segment_thresh=float(config.segment_thresh), step=int(predictor.step),
      trained_on=predictor.trained_on, workdir=str(workdir), size_bytes=len(data),
      sha256=model_file.file_digest(data), batch=1 if fmt == "tflite" else None)


def convert(predictor, fmt: str, quantize: str) -> bytes:
  """The model bytes of `predictor` in format `fmt` (model_file.FORMATS)."""
  if fmt == "tflite":
    return to_tflite(predictor, quantize)
  if fmt == "stablehlo":
    if quantize != "none":
      raise ValueError(f"--quantize={quantize} is for --format=tflite; StableHLO is float32")
    return to_stablehlo(predictor)
  raise ValueError(f"unknown format {fmt!r}: one of {', '.join(model_file.FORMATS)}")
