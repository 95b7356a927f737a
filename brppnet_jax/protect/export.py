r"""Exports a workdir's trained predictor for phones (TFLite) or servers (StableHLO).

    python -m brppnet_jax.protect.export --workdir=workdirs/synthetic --format=tflite \
        --out=synthetic.tflite [--quantize=none|float16|dynamic_int8] [--step=N]
    python -m brppnet_jax.protect.export --workdir=workdirs/synthetic --format=stablehlo \
        --out=synthetic.stablehlo

Writes FILE and its sidecar FILE.json (protect/model_file.py): vocabulary, input size, word
length, request rule, threshold and the checkpoint it came from. `protect.lite.LitePredictor`
runs either. Nothing is overwritten: an existing FILE or FILE.json is an error, and a failed
export leaves neither behind.
"""

from __future__ import annotations

import os
import sys

from absl import app
from absl import flags

from brppnet_jax.protect import model_file
from brppnet_jax.protect import network
from brppnet_jax.runtime import cli

FLAGS = flags.FLAGS
network.define_network_flags(exported=False)
flags.adopt_module_key_flags(network)
flags.DEFINE_string("format", None, "tflite (phones, embedded) or stablehlo (servers, other "
                    "JAX programs; symbolic batch, CPU/CUDA/TPU).")
flags.DEFINE_string("out", None, "The model file to write (.tflite or .stablehlo); its "
                    "sidecar goes to the same name plus .json. Neither may exist.")
flags.DEFINE_string("quantize", "none", "TFLite only: none (float32), float16 (weights) or "
                    "dynamic_int8 (int8 weights, activations quantised on the fly).")


def check_flags() -> tuple[str, str]:
  """Every flag checked before JAX loads; returns (out, sidecar) paths."""
  missing = [f"--{name}" for name in ("workdir", "format", "out") if not FLAGS[name].value]
  if missing:
    raise ValueError(f"missing required flag(s): {' '.join(missing)}")
  if FLAGS.format not in model_file.FORMATS:
    raise ValueError(f"--format={FLAGS.format}: unknown format; one of "
                     f"{', '.join(model_file.FORMATS)}")
  if FLAGS.quantize not in model_file.QUANTIZATIONS:
    raise ValueError(f"--quantize={FLAGS.quantize}: unknown quantisation; one of "
                     f"{', '.join(model_file.QUANTIZATIONS)}")
  if FLAGS.format == "stablehlo" and FLAGS.quantize != "none":
    raise ValueError(f"--quantize={FLAGS.quantize} is for --format=tflite; StableHLO is "
                     "exported in float32")
  out, extension = FLAGS.out, model_file.FORMATS[FLAGS.format]
  if not out.endswith(extension):
    raise ValueError(f"--out={out} must end in {extension} for --format={FLAGS.format}")
  sidecar = model_file.sidecar_path(out)
  for path in (out, sidecar):
    if os.path.lexists(path):
      raise ValueError(f"{path} exists; not overwriting it (remove it or choose another --out)")
  folder = os.path.dirname(os.path.abspath(out))
  if not os.path.isdir(folder):
    raise FileNotFoundError(f"--out={out}: folder {folder} does not exist")
  return out, sidecar


def write_new_files(contents: dict[str, bytes]) -> None:
  """Writes each path's bytes; all appear or none (no path that exists is replaced).

  Each file is written in full under a temporary name and then hard-linked to its name,
  which fails rather than replace a file that appeared meanwhile.
  """
  temporary = {path: f"{path}.partial-{os.getpid()}" for path in contents}
  done = []
  try:
    for path, data in contents.items():
      with open(temporary[path], "xb") as f:
        f.write(data)
    for path in contents:
      os.link(temporary[path], path)
      done.append(path)
  except BaseException:
    for path in done:
      os.remove(path)
    raise
  finally:
    for tmp in temporary.values():
      if os.path.exists(tmp):
        os.remove(tmp)


def run() -> str:
  out, sidecar = check_flags()
  # Heavy imports only once the flags are known good.
  from brppnet_jax.protect import convert  # pylint: disable=g-import-not-at-top
  from brppnet_jax.protect import predictor as predictor_lib  # pylint: disable=g-import-not-at-top
  predictor = predictor_lib.Predictor.from_workdir(FLAGS.workdir, step=FLAGS.step)
  data = convert.convert(predictor, FLAGS.format, FLAGS.quantize)
  info = convert.model_info(predictor, FLAGS.workdir, FLAGS.format, FLAGS.quantize, data)
  write_new_files({out: data, sidecar: info.to_json().encode("utf-8")})
  return (f"wrote {out} ({len(data) / 2**20:.2f} MiB, {FLAGS.format}, quantize "
          f"{FLAGS.quantize}) and {sidecar}, from step {predictor.step} of {FLAGS.workdir}")


def main(argv):
  if len(argv) > 1:
    sys.exit(f"error: unexpected arguments: {' '.join(argv[1:])}")
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ logs: not the user's.
  cli.quiet_library_logs()
  with cli.one_line_errors(OSError, log=False):
    print(run())


if __name__ == "__main__":
  app.run(main)
