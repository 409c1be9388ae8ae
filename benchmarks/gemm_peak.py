"""Measured float32 matrix-multiply peak of this machine, through XLA (jnp.dot) and numpy, and
its state: numpy's GEMM roof, memory bandwidth and load (what other scripts print beside
their figures).

    python -m benchmarks.gemm_peak [--busy N]

The best of several trials of square products, all threads; this is the roof that the train
step's achieved FLOP/s is compared to (benchmarks/train_step.py). `--busy N` measures while N
background processes stream memory (the "busy" state of benchmarks/pytorch_twin.py).
"""

from __future__ import annotations

import argparse

from benchmarks import common


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--busy", type=int, default=0, help="memory-streaming processes")
    args = parser.parse_args()
    with common.memory_streamers(args.busy):
        for n in (1024, 2048):
            peak = common.gemm_peak(n)
            print(f"n={n}: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peak.items()))
        print(f"state: {common.describe(common.measure())}")


if __name__ == "__main__":
    main()
