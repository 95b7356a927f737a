"""JAX's persistent compilation cache, on by default under WORKDIR/compilation_cache.

A restarted (preempted) run then loads its compiled train and predict steps instead of
compiling them again; BENCHMARKS.md has the time it saves. `config.compilation_cache_dir`
names another directory (local or gs://, shared by runs of the same config) or "off".
"""

from __future__ import annotations

import os

import jax

from brppnet_jax.runtime import paths

DIR_NAME = "compilation_cache"
# Compilations shorter than this are not worth a cache file (JAX's default is 1 s).
MIN_COMPILE_SECONDS = 0.5


def cache_dir(config, workdir: paths.PathLike) -> str | None:
  """Where the cache goes for this run; None when config.compilation_cache_dir is "off"."""
  setting = config.get("compilation_cache_dir", "")
  if setting == "off":
    return None
  return os.fspath(paths.absolute(setting) if setting else paths.join(workdir, DIR_NAME))


def enable(config, workdir: paths.PathLike) -> str | None:
  """Points JAX's persistent cache at `cache_dir(config, workdir)`; returns it."""
  directory = cache_dir(config, workdir)
  if directory is None:
    return None
  jax.config.update("jax_compilation_cache_dir", directory)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return directory
