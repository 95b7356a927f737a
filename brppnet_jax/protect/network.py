"""Opens the network a user names (a training workdir or an exported .tflite file) and says
what it was trained on.

The JAX predictor is imported only for a workdir, so `--model=FILE.tflite` runs without jax.
"""

from __future__ import annotations

from absl import flags

from brppnet_jax.runtime import paths

# The README section that tells how to get the original's trained weights.
ORIGINAL_WEIGHTS_HELP = ("real photos need the original's trained weights: see the README "
                         "section \"import_original\"")


def define_network_flags(*, exported: bool) -> None:
  """--workdir and --step, and with `exported` --model: the flags that name a network.

  The calling command shows them in its --help with `flags.adopt_module_key_flags(network)`.
  """
  flags.DEFINE_string("workdir", None, "A training workdir (its best checkpoint is used).")
  flags.DEFINE_integer("step", None, "Checkpoint step instead of the best.")
  if exported:
    flags.DEFINE_string("model", None, "An exported .tflite (or .stablehlo) network instead "
                        "of --workdir.")


def check_source(workdir: str | None, model: str | None) -> None:
  """Exactly one of a workdir and a .tflite model, and it exists (one-line errors)."""
  if (workdir is None) == (model is None):
    raise ValueError("give exactly one of --workdir (a training workdir) and --model "
                     "(an exported .tflite file)")
  if model is not None:
    if not model.endswith((".tflite", ".stablehlo")):
      raise ValueError(f"--model={model} must be a .tflite (or .stablehlo) file that "
                       "brppnet_jax.protect.export wrote")
    if not paths.is_file(model):
      raise FileNotFoundError(f"model file not found: {model}")
  elif not paths.is_dir(workdir):  # Local or gs://, as Predictor reads it.
    raise FileNotFoundError(f"workdir not found: {workdir}")


def open_predictor(workdir: str | None = None, model: str | None = None,
                   step: int | None = None):
  """A Predictor for a workdir's checkpoint (best, or `step`) or a LitePredictor for an
  exported file."""
  check_source(workdir, model)
  if model is not None:
    from brppnet_jax.protect import lite  # pylint: disable=g-import-not-at-top  (no jax)
    return lite.LitePredictor.from_file(model)
  from brppnet_jax.protect import predictor  # pylint: disable=g-import-not-at-top  (slow)
  return predictor.Predictor.from_workdir(workdir, step=step)


def trained_on(net) -> str:
  """The dataset the network was trained on, e.g. "synthetic" or "rpcocom"."""
  name = getattr(net, "trained_on", None)
  if callable(name):
    name = name()
  if not name:
    config = getattr(net, "config", None)
    name = getattr(getattr(config, "dataset", None), "name", None)
  return str(name or "an unknown dataset")


def is_synthetic(net) -> bool:
  return "synthetic" in trained_on(net)


def description(net) -> str:
  """What the network knows, for the page and the CLI; plain about a synthetic-twin network."""
  name = trained_on(net)
  what = f"the synthetic twin (dataset {name!r})" if is_synthetic(net) else f"{name!r}"
  step = getattr(net, "step", None)
  text = f"This network was trained on {what}" + (
      f", checkpoint step {step}." if step is not None else ".")
  if is_synthetic(net):
    text += (" It knows only the twin's drawn people and words: real photos are beyond it, "
             f"and its masks on them are not protection; {ORIGINAL_WEIGHTS_HELP}.")
  return text
