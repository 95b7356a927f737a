"""`python -m brppnet_jax.protect`: runs the protect command line of `protect/cli.py`."""

from absl import app
from absl import flags

from brppnet_jax.protect import cli

__doc__ = cli.__doc__
flags.adopt_module_key_flags(cli)

if __name__ == "__main__":
  app.run(cli.main)
