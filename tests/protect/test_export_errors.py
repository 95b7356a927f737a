"""Bad input of the export command and of the light predictor: one line each, nothing written."""

import io
import json
import pathlib
import shutil
import subprocess
import zipfile

import pytest

from brppnet_jax.protect import lite
from brppnet_jax.protect import model_file
from brppnet_jax.train import checkpoints as checkpoints_lib

from conftest import ONE_DEVICE
from conftest import run_module


def _export(*flags: str) -> subprocess.CompletedProcess:
  return run_module("brppnet_jax.protect.export", *flags, env=ONE_DEVICE, check=False)


def _one_line_error(proc) -> str:
  assert proc.returncode == 1 and "Traceback" not in proc.stderr
  return proc.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("flags, message", [
    (["--format=onnx"], "error: --format=onnx: unknown format; one of tflite, stablehlo"),
    (["--quantize=int4"], "error: --quantize=int4: unknown quantisation; one of none, "
                          "float16, dynamic_int8"),
    (["--format=stablehlo", "--quantize=float16", "--out={out}.stablehlo"],
     "error: --quantize=float16 is for --format=tflite; StableHLO is exported in float32"),
    (["--out={out}.stablehlo"], "error: --out={out}.stablehlo must end in .tflite for "
                                "--format=tflite"),
    (["--out={existing}"], "error: {existing} exists; not overwriting it (remove it or choose "
                           "another --out)"),
])
def test_bad_flags_stop_in_one_line_before_anything_loads(
    flags, message, trained_workdir, exported_tflite, tmp_path):
  names = {"out": tmp_path / "model", "existing": exported_tflite}
  before = exported_tflite.read_bytes()
  defaults = {"--workdir": str(trained_workdir), "--format": "tflite",
              "--out": f"{tmp_path / 'model'}.tflite"}
  given = dict(f.format(**names).split("=", 1) for f in flags)
  proc = _export(*(f"{k}={v}" for k, v in {**defaults, **given}.items()))
  assert _one_line_error(proc) == message.format(**names)
  assert list(tmp_path.iterdir()) == [] and exported_tflite.read_bytes() == before


def test_a_workdir_without_a_good_checkpoint_stops_in_one_line_and_writes_nothing(
    trained_workdir, tmp_path):
  out = tmp_path / "out"
  out.mkdir()
  proc = _export(f"--workdir={tmp_path}", "--format=tflite", f"--out={out / 'm.tflite'}")
  assert _one_line_error(proc) == f"error: no checkpoint in {tmp_path}/checkpoints"
  workdir = tmp_path / "damaged"
  shutil.copytree(trained_workdir / "checkpoints", workdir / "checkpoints")
  ckpts = checkpoints_lib.Checkpoints(str(workdir), read_only=True)
  best = ckpts.best_step()
  ckpts.close()
  state_files = [p for p in (workdir / "checkpoints" / str(best) / "state").rglob("*")
                 if p.is_file() and p.parent.name == "d"]
  target = max(state_files, key=lambda p: p.stat().st_size)
  data = bytearray(target.read_bytes())
  data[len(data) // 2] ^= 0xFF
  target.write_bytes(bytes(data))
  proc = _export(f"--workdir={workdir}", "--format=stablehlo", f"--out={out / 'm.stablehlo'}")
  assert _one_line_error(proc).startswith(
      f"error: checkpoint step {best} in {workdir}/checkpoints is damaged: ")
  assert list(out.iterdir()) == []


def test_a_model_file_not_ours_or_damaged_is_refused_in_one_line(exported_tflite, tmp_path):
  stranger = tmp_path / "stranger.tflite"
  stranger.write_bytes(exported_tflite.read_bytes())
  damaged = tmp_path / "damaged.tflite"
  data = bytearray(exported_tflite.read_bytes())
  data[len(data) // 2] ^= 0x01
  damaged.write_bytes(bytes(data))
  shutil.copy(model_file.sidecar_path(exported_tflite), model_file.sidecar_path(damaged))
  other = tmp_path / "other.tflite"
  other.write_bytes(b"not a model")
  pathlib.Path(model_file.sidecar_path(other)).write_text('{"kind": "something else"}')
  cases = {
      stranger: f"{stranger} is not an exported brppnet_jax model: its sidecar "
                f"{stranger}.json is missing",
      damaged: f"{damaged} is damaged or was replaced: its SHA-256 differs from the exported "
               "file's",
      other: f"{other}.json is not the sidecar of an exported brppnet_jax model",
  }
  for path, message in cases.items():
    with pytest.raises(model_file.ModelFileError) as raised:
      lite.LitePredictor.from_file(path)
    assert str(raised.value) == message
  with pytest.raises(FileNotFoundError, match=f"^model file not found: {tmp_path}/none.tflite$"):
    lite.LitePredictor.from_file(tmp_path / "none.tflite")


def test_a_stablehlo_file_of_another_layout_is_refused_in_one_line(exported_stablehlo, tmp_path):
  """A sidecar that vouches for bytes that are no .npz archive (a .stablehlo exported before
  the weights left the program was one serialised jax.export), or an archive without them."""
  sidecar = json.loads(pathlib.Path(model_file.sidecar_path(exported_stablehlo)).read_text())
  with zipfile.ZipFile(exported_stablehlo) as archive:
    program = archive.read(f"{model_file.STABLEHLO_PROGRAM}.npy")
  without_weights = io.BytesIO()
  with zipfile.ZipFile(without_weights, "w") as archive:
    archive.writestr(f"{model_file.STABLEHLO_PROGRAM}.npy", program)
  cases = {
      "old.stablehlo": (b"serialised jax.export bytes",
                        "is not an .npz archive of a StableHLO program and its weights; export it "
                        "again with python -m brppnet_jax.protect.export"),
      "empty.stablehlo": (without_weights.getvalue(), "holds 0 weights; its program takes "),
  }
  for name, (data, message) in cases.items():
    path = tmp_path / name
    path.write_bytes(data)
    pathlib.Path(model_file.sidecar_path(path)).write_text(json.dumps(
        {**sidecar, "size_bytes": len(data), "sha256": model_file.file_digest(data)}))
    with pytest.raises(model_file.ModelFileError) as raised:
      lite.LitePredictor.from_file(path)
    assert str(raised.value).startswith(f"{path} {message}")
