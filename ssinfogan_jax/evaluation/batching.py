"""Applying a function to a large input in fixed-size chunks, with one compiled shape."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np

PyTree = Any


def batched_apply(fn: Callable[[PyTree], PyTree], inputs: PyTree, batch_size: int) -> PyTree:
    """`fn` over `inputs` (a pytree of [N, ...] leaves) in chunks of at most `batch_size` rows.

    The last chunk is padded with zeros to the chunk size, so a jitted `fn` compiles once per
    chunk size (min(N, batch_size)); padded rows are dropped. Returns `fn`'s outputs ([N, ...]
    leaves) as numpy arrays, concatenated.
    """
    n = len(jax.tree.leaves(inputs)[0])
    size = max(1, min(n, batch_size))
    chunks = []
    for start in range(0, n, size):
        chunk = jax.tree.map(lambda x, start=start: np.asarray(x[start : start + size]), inputs)
        count = min(size, n - start)
        outputs = fn(jax.tree.map(lambda x: _pad(x, size), chunk))
        chunks.append(jax.tree.map(lambda y, count=count: np.asarray(y)[:count], outputs))
    if not chunks:  # N = 0: one padded call for the output shapes.
        outputs = fn(jax.tree.map(lambda x: _pad(np.asarray(x), 1), inputs))
        return jax.tree.map(lambda y: np.asarray(y)[:0], outputs)
    return jax.tree.map(lambda *parts: np.concatenate(parts), *chunks)


def _pad(x: np.ndarray, size: int) -> np.ndarray:
    """x [n, ...] with zero rows appended up to [size, ...]."""
    if len(x) >= size:
        return x
    return np.concatenate([x, np.zeros((size - len(x), *x.shape[1:]), x.dtype)])
