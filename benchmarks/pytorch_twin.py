"""Our MNIST train step against a PyTorch eager twin, timed alternating in one process.

    pip install torch==2.13.0   # CPU build; the `benchmark` extra of setup.py
    python -m benchmarks.pytorch_twin [--batch_sizes 128,256] [--rounds 5] [--steps 5]
        [--states quiet,busy] [--busy 1] [--dtype float32|bfloat16] [--device cpu|cuda]

The twin (common.TorchRunner) is the same network (reference section 4: layers, init, BN
eps/momentum, LeakyReLU 0.01) and the same update (sections 5-6): one G forward whose output
serves both steps; the D step with separate real and fake passes (BCE real/fake, 2 CE(Q_ss, y)
on the labelled real batch, 0.8 MSE(Q_us, c_us) on fakes) and one Adam step (lr 1e-4, betas
0.5/0.999); then the G step through the updated D with the same codes (BCE(fake, 1) + 2 CE + 0.8
MSE) and one Adam step (lr 1e-3). D's parameters are frozen during the G step, so PyTorch, like
our step, only back-propagates to the image there (the cheapest faithful twin). Layout NCHW,
PyTorch's default. Ours runs without its gradient-norm metrics (`config.log_grad_norms=False`):
the twin computes none.

Each round runs `steps` iterations of one framework, then of the other (order alternating),
after warm-up; the figures are the medians over rounds. Each framework runs in its own worker
process (only one runs at a time), so that neither is slowed by the other's thread pools or
runtime libraries (in one process, PyTorch ran up to 2x slower next to JAX + TensorFlow);
`--same_process` runs both in this process instead.

The machine's state is measured next to every ratio, before and after each batch size
(common.measure: the float32 GEMM roof of numpy and a large copy's memory bandwidth). `--states
quiet,busy` measures each batch size in each state: `quiet` = as the machine is found (on a
shared machine, say what else ran), `busy` = the same while `--busy` background processes stream
memory (a reproducible stand-in for a busy machine: memory bandwidth is the first thing a busy
machine loses; on 2 cores a streamer also takes a core's share of time). `--dtype bfloat16` runs
ours with bfloat16 matmuls (models' `dtype`) and the twin under `torch.autocast("cpu",
dtype=torch.bfloat16)`: the same precision on both sides. `--device cuda` runs the twin on the
GPU (ours then runs on JAX's default device, with the convolutions `conv_impl='auto'` picks
there); timings wait for the device to finish."""

from __future__ import annotations

import argparse
import multiprocessing
import statistics

import torch

from benchmarks import common


def _make_runner(
    framework: str,
    batch_size: int,
    torch_threads: int = 0,
    dtype: str = "float32",
    device: str = "cpu",
):
    if torch_threads:
        torch.set_num_threads(torch_threads)
    if framework == "jax":
        # JAX is imported (by common.JaxRunner) only in the JAX worker. The twin computes no
        # gradient norms: neither does ours here (config.log_grad_norms).
        return common.JaxRunner(batch_size, dtype=dtype, grad_norms=False)
    return common.TorchRunner(batch_size, dtype=dtype, device=device)


def _worker(
    framework: str, batch_size: int, torch_threads: int, dtype: str, device: str, conn
) -> None:
    """One framework in its own process: warm up, then time `steps` per request."""
    run = _make_runner(framework, batch_size, torch_threads, dtype, device)
    run(2)  # Warm-up: compile, allocate.
    conn.send("ready")
    while (steps := conn.recv()) is not None:
        conn.send(common.time_per_step(run, steps))


def compare(
    batch_size: int,
    steps: int,
    rounds: int,
    same_process: bool = False,
    torch_threads: int = 0,
    dtype: str = "float32",
    device: str = "cpu",
) -> dict:
    """Median s/step of both, in alternating rounds (which goes first alternates too).

    By default each framework lives in its own worker process and only one of them runs at a
    time, so neither pays for the other's thread pools or runtime libraries; with
    `same_process` both run in this process. `torch_threads` > 0 sets PyTorch's thread count
    (default: PyTorch's own, one per core). `device`: the twin's ('cpu' or 'cuda').
    """
    frameworks = ("jax", "torch")
    if same_process:
        runners = {f: _make_runner(f, batch_size, torch_threads, dtype, device) for f in frameworks}
        for run in runners.values():
            run(2)
        timers = {f: (lambda run=runners[f]: common.time_per_step(run, steps)) for f in frameworks}
    else:
        ctx = multiprocessing.get_context("spawn")
        conns, procs = {}, []
        for f in frameworks:
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=_worker,
                args=(f, batch_size, torch_threads if f == "torch" else 0, dtype, device, child),
                daemon=True,
            )
            proc.start()
            conns[f], procs = parent, [*procs, proc]
        for conn in conns.values():
            assert conn.recv() == "ready"

        def remote(conn):
            conn.send(steps)
            return conn.recv()

        timers = {f: (lambda conn=conns[f]: remote(conn)) for f in frameworks}
    times = {f: [] for f in frameworks}
    for r in range(rounds):
        for f in frameworks if r % 2 == 0 else frameworks[::-1]:
            times[f].append(timers[f]())
    if not same_process:
        for conn in conns.values():
            conn.send(None)
        for proc in procs:
            proc.join()
    return {f: statistics.median(t) for f, t in times.items()} | {"all": times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch_sizes", default="128,256")
    parser.add_argument("--steps", type=int, default=5, help="iterations per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--same_process", action="store_true", help="both frameworks in this one process"
    )
    parser.add_argument("--torch_threads", type=int, default=0, help="0: PyTorch's default")
    parser.add_argument("--states", default="quiet", help="comma-separated: quiet, busy")
    parser.add_argument("--busy", type=int, default=1, help="memory streamers in state busy")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--device", default="cpu", help="the twin's: cpu or cuda")
    args = parser.parse_args()
    threads = args.torch_threads or torch.get_num_threads()
    print(
        f"machine: {common.machine()}; torch {torch.__version__} ({threads} threads); {args.dtype}"
    )
    rows = []
    for state in args.states.split(","):
        if state not in ("quiet", "busy"):
            parser.error(f"--states: unknown state {state!r}")
        with common.memory_streamers(args.busy if state == "busy" else 0):
            for batch_size in (int(b) for b in args.batch_sizes.split(",")):
                before = common.measure()
                res = compare(
                    batch_size,
                    args.steps,
                    args.rounds,
                    args.same_process,
                    args.torch_threads,
                    args.dtype,
                    args.device,
                )
                after = common.measure()
                rows.append((state, batch_size, res, before, after))
                rounds = ", ".join(
                    f"{1 / j:.2f}/{1 / t:.2f}"
                    for j, t in zip(res["all"]["jax"], res["all"]["torch"], strict=True)
                )
                print(
                    f"{state}, batch {batch_size}: rounds jax/torch steps/s: {rounds}; "
                    f"before: {common.describe(before)}; "
                    f"after: {common.describe(after)}",
                    flush=True,
                )
    print()
    print(
        "| state | batch | JAX steps/s | PyTorch steps/s | JAX images/s | PyTorch images/s "
        "| ratio | GEMM roof GFLOP/s | memory GB/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for state, batch_size, res, before, after in rows:
        j, t = 1 / res["jax"], 1 / res["torch"]
        gemm = f"{before['gemm_gflops']:.0f}-{after['gemm_gflops']:.0f}"
        memory = f"{before['memory_gbs']:.1f}-{after['memory_gbs']:.1f}"
        print(
            f"| {state} | {batch_size} | {j:.2f} | {t:.2f} | {j * batch_size:.0f} "
            f"| {t * batch_size:.0f} | {j / t:.2f}x | {gemm} | {memory} |"
        )


if __name__ == "__main__":
    main()
