"""Speed of our MNIST train step, against the machine's measured matmul peak.

    python -m benchmarks.train_step [--batch_sizes 64,128,256] [--rounds 5] [--steps 5]

For each batch size: compile time, FLOPs per step (XLA's cost analysis of the compiled
step), steps/s and images/s after warm-up (median of rounds), the achieved FLOP/s as a
fraction of the float32 GEMM peak measured in the same run (common.gemm_peak), and
XLA's memory plan for the step (arguments + outputs + temporaries - donated aliases).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax

from benchmarks import common


def compiled_step(batch_size: int):
    """(runner, compiled executable, compile seconds)."""
    runner = common.JaxRunner(batch_size)
    start = time.perf_counter()
    compiled = runner.step.lower(runner.state, runner.batch).compile()
    return runner, compiled, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch_sizes", default="64,128,256")
    parser.add_argument("--steps", type=int, default=5, help="iterations per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {common.machine()}; jax {jax.__version__}; load average {os.getloadavg()}")
    rows = []
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        runner, compiled, compile_s = compiled_step(batch_size)
        runner.step = compiled  # Same executable as the jitted step; no dispatch lookup.
        times = common.timed_rounds(runner, args.steps, args.rounds)
        peak = common.gemm_peak()["peak"] * 1e9  # Measured between the same runs.
        rows.append((batch_size, statistics.median(times), compiled, compile_s, peak))
        print(f"batch {batch_size}: s/step per round {[round(t, 3) for t in times]}", flush=True)
    print(f"load average after: {os.getloadavg()}")
    print()
    print(
        "| batch | steps/s | images/s | GFLOP/step | achieved GFLOP/s | GEMM peak GFLOP/s "
        "| % of peak | compile s | XLA memory MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for batch_size, sec, compiled, compile_s, peak in rows:
        flops = common.flops_of(compiled)
        print(
            f"| {batch_size} | {1 / sec:.2f} | {batch_size / sec:.0f} | {flops / 1e9:.1f} "
            f"| {flops / sec / 1e9:.0f} | {peak / 1e9:.0f} | {100 * flops / sec / peak:.0f}% "
            f"| {compile_s:.1f} | {common.memory_of(compiled) / 2**20:.0f} |"
        )


if __name__ == "__main__":
    main()
