"""The original network, numerically: its weight files load, and its outputs are reproduced.

`../shared/parity` (beside the repository) holds the original's outputs for a seeded weight file
and inputs, the script that writes them, and the layer tables of the original and of keras-yolo3.
"""

import json
import os
import pathlib

from flax import traverse_util
import h5py
import jax
import numpy as np
import pytest

from brppnet_jax.models import create_model
from brppnet_jax.models import original_layout
from brppnet_jax.models import original_weights
from brppnet_jax.models import parity
from brppnet_jax.models.text_encoder import TextEncoder

from conftest import REPO

PARITY = REPO.parent / "shared" / "parity"
VOCAB = parity.VOCAB
full_config = parity.full_config
zero_variables = parity.zero_variables
relative = parity.relative


@pytest.fixture(scope="module")
def parity_dir():
  if not PARITY.is_dir():
    if os.environ.get("CI"):
      pytest.fail(f"{PARITY} is missing; CI must run the parity tests")
    pytest.skip(f"no parity fixture at {PARITY}")
  return PARITY


def flat(variables):
  return traverse_util.flatten_dict({c: variables[c] for c in ("params", "batch_stats")})


@pytest.fixture(scope="module")
def original_files(parity_dir, tmp_path_factory):
  """The seeded original weight file (358 MB) and inputs, written by the fixture's script."""
  h5, inputs = parity.write_original_files(str(parity_dir),
                                                  str(tmp_path_factory.mktemp("parity")))
  return pathlib.Path(h5), dict(np.load(inputs))


@pytest.fixture(scope="module")
def original_variables(original_files):
  variables, filled = original_weights.load_brppnet_h5(str(original_files[0]),
                                                       zero_variables(full_config()))
  variables["params"]["text_encoder"]["embedding"]["embedding"] = original_files[1]["table"]
  assert len(filled) == 188
  return variables


def test_parity_text_encoder(original_variables, original_files, parity_dir):
  expected = np.load(parity_dir / "expected_seed1234.npz")
  tokens = original_files[1]["tokens"]
  np.testing.assert_array_equal(tokens, expected["tokens"])
  encoder = TextEncoder(VOCAB, 300, 1024, 0.1, "original")
  q, h = jax.jit(lambda p, t: encoder.apply({"params": p}, t, False))(
      original_variables["params"]["text_encoder"], tokens)
  assert relative(h, expected["gru_seq"]) < 1e-5  # Measured 4.3e-7.
  assert relative(q, expected["q"]) < 1e-4  # Measured 3.5e-7.


def test_parity_logits(original_variables, original_files, parity_dir):
  """The original's own float32 run is 2.1e-4 of max|logit| from a float64 evaluation."""
  expected = np.load(parity_dir / "expected_seed1234.npz")
  model = create_model(full_config())
  inputs = original_files[1]
  logits = jax.jit(lambda v, i, t: model.apply(v, i, t, train=False))(
      original_variables, inputs["images"], inputs["tokens"])
  assert relative(logits, expected["logits"]) < 1e-3  # Measured 2.4e-4.


def test_layer_tables_match_the_original_manifest(parity_dir):
  manifest = json.loads((parity_dir / "original_manifest.json").read_text())
  weighted = {l["name"]: l for l in manifest["layers"] if l["weights"]}
  ours = original_layout.brppnet_layers()
  assert {l.name for l in ours} == set(weighted)
  for layer in ours:
    module = weighted[layer.name]["flax_module"]
    if layer.kind == original_layout.BIGRU:
      assert module == "text_encoder/gru_forward + text_encoder/gru_backward"
    else:  # The manifest names the conv / bn submodule or the layer module itself.
      assert "/".join(layer.path) == module, layer


def test_yolo3_table_is_keras_yolo3s_file(parity_dir):
  """Darknet's file order is keras-yolo3's creation order; both name and shape every conv."""
  facts = json.loads((parity_dir / "yolo3_byname.json").read_text())
  in_file = {l["name"]: [tuple(s) for s in l["shapes"]] for l in facts["h5_weighted_layers"]}
  ours = {}
  for conv in original_layout.yolo3_convs():
    cout = conv.kernel[-1]
    ours[conv.conv_name] = [conv.kernel] + ([] if conv.bn_name else [(cout,)])
    if conv.bn_name:
      ours[conv.bn_name] = [(cout,)] * 4
  assert ours == in_file
  # Creation order: conv2d_k is the k-th conv; BatchNorms count only the convs that have one.
  names = [c.conv_name for c in original_layout.yolo3_convs()]
  assert names == [f"conv2d_{k}" for k in range(1, 76)]


# keras-yolo3 files, by name -----------------------------------------------------------------


def _keras_yolo3_layers(facts, seed=0):
  """Distinct non-zero values for every weight of the keras-yolo3 file the facts describe."""
  rng = np.random.default_rng(seed)
  return {l["name"]: [rng.uniform(0.5, 1.5, s).astype(np.float32) for s in l["shapes"]]
          for l in facts["h5_weighted_layers"]}


def _write_keras_h5(path, layers):
  with h5py.File(path, "w") as f:
    f.attrs["layer_names"] = np.array([n.encode() for n in layers])
    for name, arrays in layers.items():
      group = f.create_group(name)
      weight_names = [f"{name}/w{i}:0".encode() for i in range(len(arrays))]
      group.attrs["weight_names"] = np.array(weight_names)
      for wname, array in zip(weight_names, arrays):
        group.create_dataset(wname.decode(), data=array)


def _write_darknet(path, layers):
  """Darknet's layout, built from the keras-yolo3 layer list alone: convs in index order, each
  with the next BatchNorm unless it has a bias."""
  convs = sorted((n for n in layers if n.startswith("conv2d_")), key=lambda n: int(n[7:]))
  bns = iter(sorted((n for n in layers if n.startswith("batch_normalization_")),
                    key=lambda n: int(n[20:])))
  with open(path, "wb") as f:
    f.write(np.array([0, 2, 0], "<i4").tobytes() + np.array([32013312], "<i8").tobytes())
    for name in convs:
      kernel, *bias = layers[name]
      if bias:
        f.write(bias[0].astype("<f4").tobytes())
      else:
        gamma, beta, mean, var = layers[next(bns)]
        for a in (beta, gamma, mean, var):
          f.write(a.astype("<f4").tobytes())
      f.write(kernel.transpose(3, 2, 0, 1).astype("<f4").tobytes())


@pytest.fixture(scope="module")
def yolo3(parity_dir, tmp_path_factory):
  facts = json.loads((parity_dir / "yolo3_byname.json").read_text())
  layers = _keras_yolo3_layers(facts)
  out = tmp_path_factory.mktemp("yolo3")
  _write_keras_h5(out / "yolov3.h5", layers)
  _write_darknet(out / "yolov3.weights", layers)
  return facts, layers, out


def test_keras_yolo3_file_fills_exactly_the_listed_layers(yolo3):
  facts, layers, out = yolo3
  variables, filled = original_weights.load_yolo3_h5(str(out / "yolov3.h5"),
                                                     zero_variables(full_config()))
  assert sorted(filled) == sorted(l["name"] for l in facts["filled"])
  assert len(filled) == facts["n_filled"] == 124
  loaded = flat(variables)
  by_name = {l.name: l for l in original_layout.brppnet_layers()}
  touched = set()
  for name in filled:
    for (collection, path), array in zip(original_weights._targets(by_name[name]), layers[name]):
      np.testing.assert_array_equal(loaded[(collection,) + path], array)
      touched.add((collection,) + path)
  assert not any(np.any(v) for k, v in loaded.items() if k not in touched)


def test_darknet_file_fills_the_same_as_its_keras_twin(yolo3):
  _, _, out = yolo3
  from_h5, filled_h5 = original_weights.load_yolo3_h5(str(out / "yolov3.h5"),
                                                      zero_variables(full_config()))
  from_darknet, filled_darknet = original_weights.load_darknet_weights(
      str(out / "yolov3.weights"), zero_variables(full_config()))
  assert filled_darknet == filled_h5
  a, b = flat(from_h5), flat(from_darknet)
  assert a.keys() == b.keys()
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=str(key))


def test_darknet_only_restricts_to_darknet_and_neck(yolo3):
  _, _, out = yolo3
  _, filled = original_weights.load_yolo3_h5(str(out / "yolov3.h5"),
                                             zero_variables(full_config()), only="darknet")
  assert sorted(filled) == sorted([f"conv2d_{k}" for k in range(1, 59)]
                                  + [f"batch_normalization_{k}" for k in range(1, 59)])


# Bad files ----------------------------------------------------------------------------------


def test_brppnet_h5_that_does_not_fit_lists_every_layer(yolo3, tmp_path):
  _, _, out = yolo3
  with pytest.raises(ValueError) as error:
    original_weights.load_brppnet_h5(str(out / "yolov3.h5"), zero_variables(full_config()))
  message = str(error.value)
  assert message.startswith(f"{out / 'yolov3.h5'} does not fit this network (")
  assert "bidirectional_1 (text_encoder): missing from the file" in message
  assert ("conv2d_63 (Res_c5/DBL_1x1/conv): file [(1, 1, 512, 256)], network "
          "[(1, 1, 1024, 512)]") in message
  assert "\n" not in message


def test_model_save_layout_and_renumbered_names(original_files, original_variables, tmp_path):
  """`model.save` keeps the weights under `model_weights`; a model built second in its Keras
  session has its layer numbers shifted (conv2d_92 ...): both load the same."""
  path = tmp_path / "saved_model.h5"
  with h5py.File(original_files[0], "r") as src, h5py.File(path, "w") as dst:
    group = dst.create_group("model_weights")
    names = [n.decode() for n in src.attrs["layer_names"]]
    shift = {"conv2d": 91, "batch_normalization": 92, "dense": 4, "bidirectional": 1}
    renamed = []
    for name in names:
      prefix, _, k = name.rpartition("_")
      new = f"{prefix}_{int(k) + shift[prefix]}" if prefix in shift else name
      renamed.append(new)
      src.copy(src[name], group, name=new)
    group.attrs["layer_names"] = np.array([n.encode() for n in renamed])
  variables, _ = original_weights.load_brppnet_h5(str(path), zero_variables(full_config()))
  a, b = flat(variables), flat(original_variables)
  for key in a:
    if key[-2:] != ("embedding", "embedding"):
      np.testing.assert_array_equal(a[key], b[key])


def test_not_an_h5_file(tmp_path):
  path = tmp_path / "weights.h5"
  path.write_bytes(b"not hdf5")
  with pytest.raises(ValueError, match=r"weights\.h5: not a readable HDF5 weight file"):
    original_weights.load_yolo3_h5(str(path), zero_variables(full_config()))


def test_darknet_short_or_garbled_file_names_file_and_conv(yolo3, tmp_path):
  _, _, out = yolo3
  data = (out / "yolov3.weights").read_bytes()
  short = tmp_path / "short.weights"
  short.write_bytes(data[:len(data) // 2])
  with pytest.raises(ValueError, match=r"short\.weights: file ends while reading .* of conv "
                     r"\d+ \(conv2d_\d+\)"):
    original_weights.load_darknet_weights(str(short), zero_variables(full_config()))
  garbled = tmp_path / "garbled.weights"
  garbled.write_bytes(np.array([1 << 20, 7, 3], "<i4").tobytes() + data[12:])
  with pytest.raises(ValueError, match=r"garbled\.weights: not a Darknet weights file"):
    original_weights.load_darknet_weights(str(garbled), zero_variables(full_config()))
  negative = bytearray(data)  # conv 0's variance starts after 20 header bytes + 3 x 32 floats.
  negative[20 + 3 * 32 * 4:20 + 3 * 32 * 4 + 4] = np.array([-1.0], "<f4").tobytes()
  bad = tmp_path / "negative.weights"
  bad.write_bytes(bytes(negative))
  with pytest.raises(ValueError, match=r"negative\.weights: negative variance in conv 0 "
                     r"\(conv2d_1\)"):
    original_weights.load_darknet_weights(str(bad), zero_variables(full_config()))


def test_h5_with_a_listed_layer_missing(tmp_path):
  path = tmp_path / "cut.h5"
  _write_keras_h5(path, {"conv2d_1": [np.zeros((3, 3, 3, 32), np.float32)]})
  with h5py.File(path, "a") as f:
    del f["conv2d_1"]["conv2d_1/w0:0"]
  with pytest.raises(ValueError, match=r"cut\.h5: layer conv2d_1 is listed but its weights "
                     r"conv2d_1/w0:0 is missing"):
    original_weights.read_keras_h5(str(path))
  with pytest.raises(FileNotFoundError, match="no weight file .*nothing.h5"):
    original_weights.read_keras_h5(str(tmp_path / "nothing.h5"))
