r"""Trains or evaluates BRPPNet; this file only parses flags.

    python -m brppnet_jax.main --config=configs/rpcocom.py --workdir=DIR [--config.batch_size=8]
    python -m brppnet_jax.main --config=configs/rpcocom.py --workdir=DIR --mode=eval [--step=N]
"""

import logging as py_logging
import os
import re
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from brppnet_jax.runtime import paths

FLAGS = flags.FLAGS
_CONFIG = config_flags.DEFINE_config_file("config", None, "Training configuration file.",
                                          lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and summaries.")
flags.DEFINE_enum("mode", "train", ["train", "eval"], "Train (and evaluate), or only scoring.")
flags.DEFINE_integer("step", None, "With --mode=eval: the checkpoint step (default: the best).")
flags.DEFINE_string("coordinator_address", None,
                    "host:port of process 0; with --num_processes and --process_id starts "
                    "multi-process JAX on machines that do not configure it themselves.")
flags.DEFINE_integer("num_processes", None, "Number of JAX processes.")
flags.DEFINE_integer("process_id", None, "This process's index.")
flags.mark_flags_as_required(["config", "workdir"])


def _resolved_config(value: str) -> str:
  """The config file to load; exits with one line quoting `value` when there is none."""
  path = paths.resolve_config_file(value)
  if not (os.path.isfile(path) or os.path.isfile(path.split(":", 1)[0])):  # file.py:args
    sys.exit(f"error: --config={value}: no such file (here or in the installed configs/)")
  return path


def _with_resolved_config(argv: list[str]) -> list[str]:
  out = list(argv)
  for i, arg in enumerate(out):
    if arg.startswith("--config="):
      out[i] = "--config=" + _resolved_config(arg[len("--config="):])
    elif arg == "--config" and i + 1 < len(out):
      out[i + 1] = _resolved_config(out[i + 1])
  return out


def parse_flags(argv):
  """absl parsing, with a one-line error for a mistyped --config.<key>."""
  try:
    return FLAGS(_with_resolved_config(argv))
  except (AttributeError, KeyError) as e:
    detail = " ".join(re.sub(r"\\n|\\'|[\"']", " ", str(e)).split())
    sys.exit(f"error: unknown config key on the command line: {detail}")
  except flags.Error as e:
    sys.exit(f"error: {e}")


def quiet_library_info_logs() -> None:
  """Drops Orbax's and Grain's INFO lines (dozens per checkpoint); warnings still show."""
  def keep(record) -> bool:
    noisy = any(f"{os.sep}{name}{os.sep}" in record.pathname for name in ("orbax", "grain"))
    return record.levelno >= py_logging.WARNING or not noisy
  logging.get_absl_handler().addFilter(keep)


def initialize_distributed(config) -> None:
  import jax  # pylint: disable=g-import-not-at-top
  if FLAGS.coordinator_address:
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  elif config.distributed:
    jax.distributed.initialize()  # Cloud TPU, SLURM, ...: settings come from the environment.
  else:
    return
  # The backend (on CPUs: its gloo collectives, which connect with a short timeout) starts
  # now, while every process has just passed initialize's barrier together, rather than
  # after each process's own, load-dependent imports.
  jax.devices()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  quiet_library_info_logs()
  initialize_distributed(config)
  # Imported after distributed initialisation, which must precede any JAX computation.
  from brppnet_jax.evaluation import checkpoint  # pylint: disable=g-import-not-at-top
  from brppnet_jax.evaluation import summaries  # pylint: disable=g-import-not-at-top
  from brppnet_jax.runtime import cli  # pylint: disable=g-import-not-at-top
  from brppnet_jax.runtime import compilation_cache  # pylint: disable=g-import-not-at-top
  from brppnet_jax.runtime import devices  # pylint: disable=g-import-not-at-top
  from brppnet_jax.train import checkpoints  # pylint: disable=g-import-not-at-top
  from brppnet_jax.train import loop  # pylint: disable=g-import-not-at-top
  logging.info("Config:\n%s", config)
  devices.warn_if_accelerator_unused()
  logging.info("Compilation cache: %s", compilation_cache.enable(config, FLAGS.workdir))
  # USER_ERRORS hold loop.NonFiniteLossError; a failed write is one line too.
  with cli.one_line_errors(checkpoints.WriteError):
    if FLAGS.mode == "train":
      loop.train_and_evaluate(config, FLAGS.workdir)
    else:
      result = checkpoint.evaluate_checkpoint(config, FLAGS.workdir, step=FLAGS.step)
      print(summaries.format_table(result))


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
