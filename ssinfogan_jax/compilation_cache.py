"""JAX's persistent compilation cache: a warm start skips XLA compilation of the train step.

Call `enable()` once, before the first jitted function runs (e.g. at the top of
`train_and_evaluate`). The same effect without code: set the environment variables
`JAX_COMPILATION_CACHE_DIR=~/.cache/ssinfogan_jax/xla` and
`JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0`.

Entries are keyed by the computation, the jax/jaxlib version, the device and the compile
options, so a stale or foreign entry is never used; delete the directory to reclaim space.
"""

from __future__ import annotations

import os

import jax

DEFAULT_CACHE_DIR = os.path.join("~", ".cache", "ssinfogan_jax", "xla")
ENV_VAR = "JAX_COMPILATION_CACHE_DIR"


def enable(cache_dir: str | None = None, min_compile_time_secs: float = 0.0) -> str:
    """Turns on the persistent compilation cache; returns the directory used.

    Args:
      cache_dir: where compiled executables are stored; default `$JAX_COMPILATION_CACHE_DIR`
        if set, else `~/.cache/ssinfogan_jax/xla`. A local path or a `gs://` URL.
      min_compile_time_secs: only computations that took at least this long to compile are
        stored. 0 stores all, so that even the small init and sampling functions start warm.
    """
    if cache_dir is None:
        cache_dir = os.environ.get(ENV_VAR) or DEFAULT_CACHE_DIR
    if "://" not in cache_dir:
        cache_dir = os.path.abspath(os.path.expanduser(cache_dir))
        os.makedirs(cache_dir, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_time_secs)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return cache_dir
