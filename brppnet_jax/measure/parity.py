r"""How far this network is from the original's own outputs (`../shared/parity`); prints,
writes JSON.

    python -m brppnet_jax.measure.parity --parity_dir=../shared/parity \
        --json=benchmarks/results/parity_seed1234.json

The comparison is `brppnet_jax.models.parity.compare`, which `tests/models/test_original_weights.py`
asserts.
"""

from __future__ import annotations

import datetime
import tempfile

from absl import app
from absl import flags
import jax

from brppnet_jax.measure import records
from brppnet_jax.models import parity
from brppnet_jax.runtime import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("parity_dir", "../shared/parity", "The parity fixture folder.")
flags.DEFINE_string("json", None, "Where to write the result (default: print only).")


def main(argv) -> None:
  cli.no_arguments(argv)
  with cli.one_line_errors(), tempfile.TemporaryDirectory() as work:
    result = parity.compare(FLAGS.parity_dir, work)
  print("| output | max abs. difference / max abs. reference |\n|---|---:|")
  for name, value in result.items():
    print(f"| {name} | {value:.2g} |")
  if FLAGS.json:
    record = {"date": datetime.date.today().isoformat(), "backend": jax.default_backend(),
              "jax": jax.__version__, "dtype": "float32", "weights_seed": 1234,
              "inputs_seed": 0, "relative_max_difference": result,
              "command": records.command("brppnet_jax.measure.parity")}
    records.write_json(FLAGS.json, record, indent=1)


if __name__ == "__main__":
  app.run(main)
