"""One script for a GPU machine: the devices, the GPU path's tests, and steps/s of both
convolution implementations and of the PyTorch twin, in one table. A few minutes.

    pip install -c constraints.txt -e '.[test]' "jax[cuda12]" torch   # CUDA builds
    python -m benchmarks.accelerator_check [--batch_sizes 128,256,1024] [--steps 50]
    python -m benchmarks.accelerator_check --smoke     # on a CPU: every part, tiny

Parts, each in its own process (so that JAX and PyTorch never share a GPU's memory; JAX is
told not to preallocate):
1. devices: JAX's backend and devices, PyTorch's CUDA device, nvidia-smi's line.
2. tests: tests/test_layers.py, test_models.py, test_train_step.py and test_parallel.py
   (layers against Flax, `conv_impl` 'flax' against 'cpu_fast', the train step's routing,
   data parallelism) on JAX's default backend. `--smoke`: a few of the conv_impl tests.
3. ours: the MNIST train step (common.JaxRunner) at each batch size, for
   `conv_impl` 'flax' (Flax's nn.Conv / nn.ConvTranspose, the default off CPU) and 'cpu_fast'
   (layers.py, the default on CPU), in float32 and bfloat16 matmuls; median of 3 timings
   of `--steps` steps after a warm-up (compile).
4. the PyTorch twin (common.TorchRunner: same network and update) on CUDA, float32
   and bfloat16 autocast, same batch sizes; on a machine without CUDA it runs on the CPU
   (a smoke check of the code, not a figure to compare).

The table gives steps/s and each row's ratio to PyTorch at the same batch size and precision.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

from benchmarks import common

TESTS = ["tests/test_layers.py", "tests/test_models.py", "tests/test_train_step.py"]
TESTS += ["tests/test_parallel.py"]
# The conv_impl tests: 'auto' per backend; 'flax' against 'cpu_fast' on one model, bfloat16.
SMOKE_K = "conv_impl_auto or auto_conv_impl or (conv_impls_share and mnist and bfloat16)"
SMOKE_TESTS = ["tests/test_layers.py", "tests/test_models.py", "-k", SMOKE_K]
IMPLS = ("flax", "cpu_fast")
DTYPES = ("float32", "bfloat16")
ENV = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false", "TF_CPP_MIN_LOG_LEVEL": "2"}

DEVICES = r"""
import jax
print(f"JAX {jax.__version__}: backend {jax.default_backend()}, devices {jax.devices()}")
try:
    import torch
    cuda = torch.cuda.is_available()
    name = torch.cuda.get_device_name(0) if cuda else "no CUDA device"
    print(f"PyTorch {torch.__version__}: {name}")
except ImportError:
    print("PyTorch: not installed (pip install torch)")
"""


def _run(command: list[str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        command,
        cwd=common.REPO,
        env=os.environ | ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _steps_per_s(run, steps: int, rounds: int) -> float:
    """Median steps/s of `rounds` timings of `steps` steps (run(n) waits for the device)."""
    return 1.0 / statistics.median(common.timed_rounds(run, steps, rounds))


def part_jax(batch_sizes: list[int], steps: int, rounds: int) -> None:
    import jax

    for batch_size in batch_sizes:
        for impl in IMPLS:
            for dtype in DTYPES:
                rate = _steps_per_s(common.JaxRunner(batch_size, dtype, impl), steps, rounds)
                row = dict(framework="jax", device=jax.default_backend(), impl=impl)
                row |= dict(dtype=dtype, batch=batch_size, steps_per_s=rate)
                print(json.dumps(row), flush=True)


def part_torch(batch_sizes: list[int], steps: int, rounds: int) -> None:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    for batch_size in batch_sizes:
        for dtype in DTYPES:
            runner = common.TorchRunner(batch_size, dtype=dtype, device=device)
            rate = _steps_per_s(runner, steps, rounds)
            row = dict(framework="torch", device=device, impl="-", dtype=dtype)
            row |= dict(batch=batch_size, steps_per_s=rate)
            print(json.dumps(row), flush=True)


def _timings(part: str, args, timeout: float) -> list[dict]:
    command = [sys.executable, "-m", "benchmarks.accelerator_check", f"--part={part}"]
    command += [f"--batch_sizes={args.batch_sizes}", f"--steps={args.steps}"]
    command += [f"--rounds={args.rounds}"]
    out = _run(command, timeout)
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0:
        print(f"{part}: exit code {out.returncode}\n{out.stderr[-3000:]}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch_sizes", default="128,256,1024")
    parser.add_argument("--steps", type=int, default=50, help="steps per timing")
    parser.add_argument("--rounds", type=int, default=3, help="timings per row (median)")
    parser.add_argument("--smoke", action="store_true", help="tiny everything (a CPU check)")
    parser.add_argument("--skip_tests", action="store_true")
    parser.add_argument("--part", default="", help=argparse.SUPPRESS)  # A child's part.
    args = parser.parse_args()
    if args.smoke:
        args.batch_sizes, args.steps, args.rounds = "16", 2, 1
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    if args.part == "jax":
        return part_jax(batch_sizes, args.steps, args.rounds)
    if args.part == "torch":
        return part_torch(batch_sizes, args.steps, args.rounds)

    start = time.perf_counter()
    print("== devices")
    print(_run([sys.executable, "-c", DEVICES], 300).stdout.strip())
    if shutil.which("nvidia-smi"):
        query = ["--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
        print("nvidia-smi:", _run(["nvidia-smi", *query], 60).stdout.strip())
    else:
        print("nvidia-smi: not found (no NVIDIA GPU here: GPU-only figures are a smoke check)")

    if not args.skip_tests:
        tests = SMOKE_TESTS if args.smoke else TESTS
        print(f"\n== tests: {' '.join(tests)}")
        out = _run([sys.executable, "-m", "pytest", *tests, "-x", "-q", "-p", "no:warnings"], 1800)
        print("\n".join(out.stdout.strip().splitlines()[-15:]))
        if out.returncode != 0:
            print(f"tests: FAILED (exit code {out.returncode})\n{out.stderr[-2000:]}")
        else:
            print("tests: all passed")

    print(f"\n== timings: batch {args.batch_sizes}, median of {args.rounds} x {args.steps} steps")
    rows = _timings("jax", args, 1800) + _timings("torch", args, 1800)
    torch_rate = {(r["dtype"], r["batch"]): r["steps_per_s"] for r in rows if r["impl"] == "-"}
    print("| framework | device | conv_impl | dtype | batch | steps/s | images/s | vs PyTorch |")
    print("|---|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r["batch"], r["dtype"], r["framework"], r["impl"])):
        rate = r["steps_per_s"]
        twin = torch_rate.get((r["dtype"], r["batch"]))
        ratio = f"{rate / twin:.2f}x" if twin and r["framework"] == "jax" else "-"
        print(
            f"| {r['framework']} | {r['device']} | {r['impl']} | {r['dtype']} | {r['batch']} "
            f"| {rate:.2f} | {rate * r['batch']:.0f} | {ratio} |"
        )
    print(f"\ntotal: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
