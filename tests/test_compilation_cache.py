"""compilation_cache.enable points JAX's persistent cache at a directory."""

import os

import jax

from ssinfogan_jax import compilation_cache

OPTIONS = (
    "jax_compilation_cache_dir",
    "jax_persistent_cache_min_compile_time_secs",
    "jax_persistent_cache_min_entry_size_bytes",
)


def test_enable_sets_the_cache_directory(tmp_path):
    before = {name: getattr(jax.config, name) for name in OPTIONS}
    try:
        cache_dir = compilation_cache.enable(str(tmp_path / "xla"))
        assert cache_dir == str(tmp_path / "xla") and os.path.isdir(cache_dir)
        assert jax.config.jax_compilation_cache_dir == cache_dir
        assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.0
    finally:
        for name, value in before.items():
            jax.config.update(name, value)
