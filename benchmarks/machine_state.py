"""The machine's state while a benchmark runs: its GEMM roof and memory bandwidth, and an
optional background process that streams memory to make a "busy" state reproducible.

    python -m benchmarks.machine_state [--busy]

Both figures use numpy only (no JAX, no PyTorch), so any benchmark process can take them
next to its own timings. On a shared machine they say how much of the machine was there:
every other figure of a run should be read against them.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import statistics
import time

import numpy as np

STREAM_MB = 256  # Large against any cache: a copy of it is bound by memory bandwidth.


def memory_bandwidth(megabytes: int = STREAM_MB, trials: int = 5) -> float:
    """GB/s of a large float32 copy (bytes read + bytes written), median of `trials`."""
    src = np.ones(megabytes * 2**20 // 4, np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # Fault the pages in.
    times = []
    for _ in range(trials):
        start = time.perf_counter()
        np.copyto(dst, src)
        times.append(time.perf_counter() - start)
    return 2 * src.nbytes / statistics.median(times) / 1e9


def gemm_roof(n: int = 2048, trials: int = 5) -> float:
    """GFLOP/s of an n x n x n float32 numpy matmul, best of `trials` (benchmarks/gemm_peak.py
    also takes XLA's, in a process that has JAX)."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), np.float32) for _ in range(2))
    a @ b
    best = float("inf")
    for _ in range(trials):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best / 1e9


def measure() -> dict[str, float]:
    """{'gemm_gflops', 'memory_gbs', 'load'}: the state now."""
    return {
        "gemm_gflops": gemm_roof(),
        "memory_gbs": memory_bandwidth(),
        "load": os.getloadavg()[0],
    }


def describe(state: dict[str, float]) -> str:
    return (
        f"GEMM roof {state['gemm_gflops']:.0f} GFLOP/s, memory {state['memory_gbs']:.1f} GB/s, "
        f"load {state['load']:.1f}"
    )


def _stream(megabytes: int, stop) -> None:
    """Copies a large array back and forth until `stop` is set (a background process)."""
    a = np.ones(megabytes * 2**20 // 4, np.float32)
    b = np.empty_like(a)
    while not stop.is_set():
        np.copyto(b, a)
        np.copyto(a, b)


@contextlib.contextmanager
def memory_streamers(count: int = 1, megabytes: int = STREAM_MB):
    """Runs `count` background processes that stream memory (a reproducible "busy" state:
    memory bandwidth is the first thing that a busy machine loses). `count` 0 = none."""
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    procs = [ctx.Process(target=_stream, args=(megabytes, stop), daemon=True) for _ in range(count)]
    for proc in procs:
        proc.start()
    try:
        if procs:
            time.sleep(1.0)  # Let them allocate and start streaming.
        yield
    finally:
        stop.set()
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--busy", type=int, default=0, help="memory-streaming processes")
    args = parser.parse_args()
    with memory_streamers(args.busy):
        print(describe(measure()))


if __name__ == "__main__":
    main()
