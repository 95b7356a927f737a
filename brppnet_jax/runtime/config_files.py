"""Config files by path: loading one outside absl's flags, and naming one in stored results."""

from __future__ import annotations

import importlib.util
import os

from ml_collections import config_flags

# The repository root: configs/, benchmarks/ and README.md live here in a checkout.
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def repo_path(*parts: str) -> str:
  """A path inside the checkout, e.g. repo_path("configs", "synthetic.py")."""
  return os.path.join(REPO, *parts)


def load_config(path: str):
  """`get_config()` of a config file (configs/*.py import `configs.default`, which the
  package install puts on the path)."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"config file {path!r} does not exist")
  spec = importlib.util.spec_from_file_location("loaded_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def relative_to_repo(path: str) -> str:
  """`path` relative to the checkout when inside it, else as given."""
  path = os.path.abspath(path)
  return os.path.relpath(path, REPO) if path.startswith(REPO + os.sep) else path


def config_name(config_flag) -> str:
  """An absl config flag as a command would repeat it: the file and its --config.* overrides."""
  name = relative_to_repo(config_flags.get_config_filename(config_flag))
  overrides = config_flags.get_override_values(config_flag)
  return " ".join([name] + [f"--config.{k}={v}" for k, v in sorted(overrides.items())])
