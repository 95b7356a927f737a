"""The original's weight files, loaded into BRPPNet's variables ({"params", "batch_stats"}).

- `load_brppnet_h5`: a whole original model (Keras 2.3.1 `save_weights`, or `model.save` with
  its `model_weights` group). Every weighted layer must fit; the word table is left as it is.
- `load_yolo3_h5`: a keras-yolo3 file (`yolov3_480000.h5`) with the original's by-name
  semantics (`load_weights(by_name=True, skip_mismatch=True)`): each layer whose Keras name and
  weight shapes match one in the file is filled, the others are left alone. That fills
  Darknet-53, the six neck convs and a few decoder layers whose names and shapes coincide
  with YOLO head layers. `only="darknet"` restricts it to Darknet-53 and the neck.
- `load_darknet_weights`: Darknet's `yolov3.weights`, read conv by conv into the keras-yolo3
  layout and filled by the same rule, so both routes give the same network.
Each returns (new variables, names of the Keras layers filled).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import os

from flax import traverse_util
import numpy as np

from brppnet_jax.models import original_layout as layout

Arrays = list[np.ndarray]
_MAX_VERSION = 1000  # A Darknet header has small version numbers; more means another format.
_BN_PARAMS = (("params", "scale"), ("params", "bias"), ("batch_stats", "mean"),
              ("batch_stats", "var"))  # Keras order: gamma, beta, moving mean, moving variance.


def _targets(layer: layout.KerasLayer) -> list[tuple[str, tuple[str, ...]]]:
  """(collection, path) of each Keras weight of `layer`, in Keras' weight order."""
  if layer.kind == layout.BN:
    return [(c, layer.path + (leaf,)) for c, leaf in _BN_PARAMS]
  if layer.kind == layout.BIGRU:
    return [("params", layer.path + (f"gru_{d}", leaf)) for d in ("forward", "backward")
            for leaf in ("kernel", "recurrent_kernel", "bias")]
  return [("params", layer.path + (leaf,)) for leaf in ("kernel", "bias")]


def _stage_blocks(flat: Mapping) -> tuple[int, ...]:
  """Residual blocks per Darknet stage, counted from the `backbone/Res{stage}_{block}` modules."""
  counts = [0] * len(layout.STAGE_CHANNELS)
  for key in flat:
    if key[:2] == ("params", "backbone") and key[2].startswith("Res") and key[3:] == (
        "DBL_1x1", "conv", "kernel"):
      counts[int(key[2][3:].split("_")[0]) - 1] += 1
  return tuple(counts)


def _network_layers(flat: Mapping) -> list[layout.KerasLayer]:
  """The original's layer table for the network `flat` (flattened variables) describes."""
  ups = {key[2] for key in flat if key[:2] == ("params", "head") and key[2].startswith("DBL_up")}
  stride = {v: k for k, v in layout.HEAD_UPSAMPLINGS.items()}[len(ups)]
  return layout.brppnet_layers(_stage_blocks(flat), stride)


def _channels(flat: Mapping):
  """Maps the published channel counts (32 ... 1024) to this network's, read off its convs."""
  out = lambda *path: flat[("params", "backbone") + path + ("conv", "kernel")].shape[-1]
  table = {layout.STEM_CHANNELS: out("DBL_stem")}
  table.update({c: out(f"DBL_down{s}") for s, c in enumerate(layout.STAGE_CHANNELS, start=1)})
  return table.__getitem__


def _flatten(variables) -> dict:
  return {k: np.asarray(v) for k, v in traverse_util.flatten_dict(
      {c: dict(variables[c]) for c in ("params", "batch_stats")}).items()}


def _unflatten(flat: dict) -> dict:
  return traverse_util.unflatten_dict(flat)


def _layer_targets(layer, flat) -> list[tuple]:
  """Full keys of `layer`'s weights that exist in `flat` (a conv without bias has no bias)."""
  return [(c,) + p for c, p in _targets(layer) if (c,) + p in flat]


def _fill(flat: dict, layer, arrays: Arrays) -> str | None:
  """Writes `arrays` into `layer`'s weights; returns a mismatch description or None."""
  keys = _layer_targets(layer, flat)
  expected = [flat[k].shape for k in keys]
  got = [tuple(a.shape) for a in arrays]
  if expected != got:
    return f"{layer.name} ({'/'.join(layer.path)}): file {got}, network {expected}"
  for key, array in zip(keys, arrays):
    flat[key] = np.asarray(array, flat[key].dtype)
  return None


# -- h5 files -------------------------------------------------------------------------------

def _attribute(group, name: str) -> list[str]:
  """A Keras string-list attribute, also when Keras split it into `name0`, `name1`, ..."""
  if name in group.attrs:
    values = list(group.attrs[name])
  else:
    values, k = [], 0
    while f"{name}{k}" in group.attrs:
      values += list(group.attrs[f"{name}{k}"])
      k += 1
  return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def read_keras_h5(path: str) -> dict[str, Arrays]:
  """{layer name: its weights in Keras order} of every weighted layer of a Keras h5 file."""
  import h5py  # pylint: disable=g-import-not-at-top  (only the weight import needs it)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"no weight file {path}")
  try:
    f = h5py.File(path, "r")
  except OSError as e:
    raise ValueError(f"{path}: not a readable HDF5 weight file ({e})") from None
  with f:
    root = f["model_weights"] if "model_weights" in f else f
    names = _attribute(root, "layer_names")
    if not names:
      raise ValueError(f"{path}: no Keras 'layer_names' attribute; not a Keras weight file")
    layers = {}
    for name in names:
      weight_names = _attribute(root[name], "weight_names") if name in root else None
      missing = [w for w in weight_names or () if w not in root[name]]
      if weight_names is None or missing:
        raise ValueError(f"{path}: layer {name} is listed but its "
                         f"{'weights ' + ', '.join(missing) if missing else 'group'} is missing")
      if weight_names:
        layers[name] = [np.asarray(root[name][w]) for w in weight_names]
  return layers


def load_brppnet_h5(path: str, variables) -> tuple[dict, list[str]]:
  """The original BRPPNet's own weight file into a copy of `variables` (all layers must fit)."""
  flat = _flatten(variables)
  file_layers = read_keras_h5(path)
  renamed = layout.canonical_names(list(file_layers))
  file_layers = {renamed[n]: a for n, a in file_layers.items()}
  layers = _network_layers(flat)
  problems = [f"{layer.name} ({'/'.join(layer.path)}): missing from the file"
              for layer in layers if layer.name not in file_layers]
  for layer in layers:
    if layer.name in file_layers:
      problem = _fill(flat, layer, file_layers[layer.name])
      if problem:
        problems.append(problem)
  extra = sorted(set(file_layers) - {layer.name for layer in layers})
  problems += [f"{name}: in the file, not in the network" for name in extra]
  if problems:
    raise ValueError(f"{path} does not fit this network ({len(problems)} layers): "
                     + "; ".join(problems))
  return _unflatten(flat), [layer.name for layer in layers]


def _by_name(flat: dict, file_layers: Mapping[str, Arrays], only: str,
             network: Sequence[layout.KerasLayer]) -> list[str]:
  """Keras `by_name=True, skip_mismatch=True`: fill each layer whose name and shapes match."""
  if only not in ("all", "darknet"):
    raise ValueError(f"only must be 'all' or 'darknet', got {only!r}")
  filled = []
  for layer in network:
    if only == "darknet" and layer.path[0] not in ("backbone", "DBL_neck4", "DBL_neck5"):
      continue
    arrays = file_layers.get(layer.name)
    if arrays is not None and _fill(flat, layer, arrays) is None:
      filled.append(layer.name)
  return filled


def load_yolo3_h5(path: str, variables, only: str = "all") -> tuple[dict, list[str]]:
  """A keras-yolo3 weight file, by name as the original loads it."""
  flat = _flatten(variables)
  filled = _by_name(flat, read_keras_h5(path), only, _network_layers(flat))
  if not filled:
    raise ValueError(f"{path}: no layer matches this network by name and shape; "
                     "not a keras-yolo3 file for it")
  return _unflatten(flat), filled


# -- Darknet .weights -------------------------------------------------------------------------

class _Reader:
  """Reads little-endian arrays from an open file, naming the file and layer when it runs short."""

  def __init__(self, f, path: str):
    self._f, self._path = f, path

  def read(self, dtype: str, count: int, what: str) -> np.ndarray:
    size = np.dtype(dtype).itemsize * count
    data = self._f.read(size)
    if len(data) != size:
      raise ValueError(f"{self._path}: file ends while reading {what}")
    return np.frombuffer(data, dtype=dtype)


def read_darknet_weights(path: str, convs: Sequence[layout.YoloConv]) -> dict[str, Arrays]:
  """Darknet `yolov3.weights` as keras-yolo3 layers ({name: weights in Keras order}).

  After the header (int32 major, minor, revision; `seen` int64 from version 0.2 on, else
  int32) each conv stores, in network order, its BatchNorm beta, gamma, mean and variance, or
  its bias when it has no BatchNorm, then its kernel as [out, in, kh, kw] float32.
  """
  layers = {}
  with open(path, "rb") as f:
    reader = _Reader(f, path)
    major, minor, revision = reader.read("<i4", 3, "the header")
    if not all(0 <= v < _MAX_VERSION for v in (major, minor, revision)):
      raise ValueError(f"{path}: not a Darknet weights file (header version "
                       f"{major}.{minor}.{revision})")
    reader.read("<i8" if major * 10 + minor >= 2 else "<i4", 1, "the header")
    for index, conv in enumerate(convs):
      kh, kw, cin, cout = conv.kernel
      what = f"conv {index} ({conv.conv_name})"
      if conv.bn_name:
        beta, gamma, mean, var = (reader.read("<f4", cout, f"{n} of {what}")
                                  for n in ("beta", "gamma", "mean", "variance"))
        if not np.all(var >= 0):
          raise ValueError(f"{path}: negative variance in {what}; wrong file or network size?")
        layers[conv.bn_name] = [gamma, beta, mean, var]
      else:
        bias = reader.read("<f4", cout, f"the bias of {what}")
      kernel = reader.read("<f4", cout * cin * kh * kw, f"the kernel of {what}")
      kernel = kernel.reshape(cout, cin, kh, kw).transpose(2, 3, 1, 0)
      layers[conv.conv_name] = [kernel] if conv.bn_name else [kernel, bias]
      if not all(np.all(np.isfinite(a)) for a in layers[conv.conv_name]):
        raise ValueError(f"{path}: non-finite weights in {what}; wrong file or network size?")
  return layers


def load_darknet_weights(path: str, variables, only: str = "all") -> tuple[dict, list[str]]:
  """Darknet `yolov3.weights`, filled by name exactly as its keras-yolo3 twin would be."""
  flat = _flatten(variables)
  convs = layout.yolo3_convs(_stage_blocks(flat), _channels(flat))
  filled = _by_name(flat, read_darknet_weights(path, convs), only, _network_layers(flat))
  return _unflatten(flat), filled
