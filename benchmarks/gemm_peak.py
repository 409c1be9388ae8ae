"""Measured float32 matrix-multiply peak of this machine, through XLA (jnp.dot) and numpy.

    python -m benchmarks.gemm_peak

The best of several trials of square products, all threads; this is the roof that the train
step's achieved FLOP/s is compared to (benchmarks/train_step.py).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np


def _best_seconds(fn, trials: int, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(trials):
        start = time.perf_counter()
        for _ in range(repeats):
            out = fn()
        jax.block_until_ready(out)
        best = min(best, (time.perf_counter() - start) / repeats)
    return best


def gemm_peak(n: int = 2048, trials: int = 5, repeats: int = 10) -> dict[str, float]:
    """GFLOP/s of an n x n x n float32 matmul: {'jax': ..., 'numpy': ..., 'peak': max}."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), np.float32) for _ in range(2))
    ja, jb = jnp.asarray(a), jnp.asarray(b)
    dot = jax.jit(jnp.dot)
    flops = 2.0 * n**3
    out = {
        "jax": flops / _best_seconds(lambda: dot(ja, jb), trials, repeats) / 1e9,
        "numpy": flops / _best_seconds(lambda: a @ b, trials, repeats) / 1e9,
    }
    return out | {"peak": max(out.values())}


if __name__ == "__main__":
    for n in (1024, 2048):
        print(f"n={n}: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in gemm_peak(n).items()))
