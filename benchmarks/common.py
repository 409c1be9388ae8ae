"""Shared pieces of the benchmarks: the MNIST train step, its inputs and a timer."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from configs import default
from ssinfogan_jax import train
from ssinfogan_jax.data import builders

# Real MNIST's IDX files, beside the repository (the `--raw_dir` default).
RAW_MNIST = os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist")
)


def prepared_mnist(data_dir: str, raw_dir: str = RAW_MNIST) -> str:
    """`data_dir`, with tfds MNIST prepared in it from `raw_dir` (offline) if it was not."""
    if not builders.is_prepared("mnist", data_dir):
        builders.prepare("mnist", raw_dir, data_dir)
    return data_dir


def mnist_config(batch_size: int):
    config = default.get_config()
    config.batch_size = batch_size
    return config


def mnist_batch(batch_size: int, seed: int = 0) -> dict:
    """A labelled MNIST-shaped batch (the reference's early iterations are all labelled)."""
    rng = np.random.default_rng(seed)
    return {
        "image": jnp.asarray(rng.random((batch_size, 28, 28, 1), np.float32)),
        "label_masks": {"label": jnp.ones((batch_size,), jnp.float32)},
        "labels": {"label": jnp.asarray(rng.integers(0, 10, batch_size), jnp.int32)},
    }


def jax_step(
    batch_size: int,
    donate: bool | None = None,
    dtype: str = "float32",
    conv_impl: str = "auto",
    grad_norms: bool | None = None,
):
    """(jitted step, state, batch) for the reference MNIST config, its matmuls in `dtype`, its
    convolutions by `conv_impl`, with or without the gradient-norm metrics (`grad_norms`; None:
    the config's default).

    The state (float32 parameters) is the same for both dtypes and all conv_impls; only the
    modules bound into the step differ (`config.model.dtype`, `config.model.conv_impl`).
    """
    config = mnist_config(batch_size)
    config.model.dtype = dtype
    config.model.conv_impl = conv_impl
    if grad_norms is not None:
        config.log_grad_norms = grad_norms
    state = train.create_train_state(jax.random.PRNGKey(config.seed), config)
    return train.make_train_step(config, donate=donate), state, mnist_batch(batch_size)


class JaxRunner:
    """Runs `n` train steps per call, threading the state through."""

    def __init__(
        self,
        batch_size: int,
        dtype: str = "float32",
        conv_impl: str = "auto",
        grad_norms: bool | None = None,
    ):
        self.step, self.state, self.batch = jax_step(
            batch_size, dtype=dtype, conv_impl=conv_impl, grad_norms=grad_norms
        )

    def __call__(self, n: int) -> None:
        state, metrics = self.state, None
        for _ in range(n):
            state, metrics = self.step(state, self.batch)
        jax.block_until_ready((state, metrics))
        self.state = state


def time_per_step(run: Callable[[int], None], n: int) -> float:
    start = time.perf_counter()
    run(n)
    return (time.perf_counter() - start) / n


def alternate(runners: dict[str, Callable[[int], None]], n: int, rounds: int) -> dict:
    """Median seconds/step of each runner, timed in alternating rounds after one warm-up."""
    for run in runners.values():
        run(2)
    times = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            times[name].append(time_per_step(run, n))
    return {name: statistics.median(t) for name, t in times.items()} | {"_all": times}
