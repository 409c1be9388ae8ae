"""Speed and start-up of the 32x32 train step (`infogan_32`, configs/digit_scenes.py).

    python -m benchmarks.train_step_32 [--preset svhn] [--batch_size 128] [--rounds 5]

Compile time, steps/s after warm-up (median of rounds; a labelled batch, as the first steps
of a run), XLA's memory plan for the step, and the machine's state (numpy GEMM roof, memory
bandwidth, load) before and after, as benchmarks/train_step.py does for MNIST.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import numpy as np

from benchmarks import machine_state
from benchmarks.train_step import flops_of, memory_of
from configs import digit_scenes
from ssinfogan_jax import experiment, train


def batch_of(exp, batch_size: int, seed: int = 0) -> dict:
    """A labelled batch of the experiment's shapes and labels."""
    rng = np.random.default_rng(seed)
    info = exp.dataset
    labels = {}
    for c in exp.layout.supervised_codes:
        if c.categorical:
            labels[c.label] = rng.integers(0, c.size, batch_size).astype(np.int32)
        else:
            labels[c.label] = rng.uniform(-1, 1, batch_size).astype(np.float32)
    return {
        "image": rng.uniform(-1, 1, (batch_size, *info.image_shape)).astype(np.float32),
        "label_mask": np.ones(batch_size, np.float32),
        "labels": labels,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="svhn")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5, help="iterations per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    config = digit_scenes.get_config(args.preset)
    config.batch_size = args.batch_size
    exp = experiment.from_config(config)
    print(f"before: {machine_state.measure()}", flush=True)
    state = train.create_train_state(jax.random.PRNGKey(0), exp)
    batch = jax.tree_util.tree_map(jax.numpy.asarray, batch_of(exp, args.batch_size))
    step = train.make_train_step(exp)
    start = time.perf_counter()
    compiled = step.lower(state, batch).compile()
    compile_s = time.perf_counter() - start
    state, metrics = compiled(state, batch)
    jax.block_until_ready(state)
    times = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        for _ in range(args.steps):
            state, metrics = compiled(state, batch)
        jax.block_until_ready((state, metrics))
        times.append((time.perf_counter() - start) / args.steps)
    print(f"after: {machine_state.measure()}")
    sec = statistics.median(times)
    print(f"s/step per round {[round(t, 3) for t in times]}")
    print("| preset | batch | steps/s | images/s | GFLOP/step | compile s | XLA memory MiB |")
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {args.preset} | {args.batch_size} | {1 / sec:.2f} | {args.batch_size / sec:.0f} "
        f"| {flops_of(compiled) / 1e9:.1f} | {compile_s:.1f} | {memory_of(compiled) / 2**20:.0f} |"
    )


if __name__ == "__main__":
    main()
