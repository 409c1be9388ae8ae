"""Our MNIST train step against a PyTorch eager twin, timed alternating in one process.

    pip install torch==2.13.0   # CPU build; the `benchmark` extra of setup.py
    python -m benchmarks.pytorch_twin [--batch_sizes 128,256] [--rounds 5] [--steps 5]
        [--states quiet,busy] [--busy 1] [--dtype float32|bfloat16] [--device cpu|cuda]

The twin is the same network (reference section 4: layers, init, BN eps/momentum, LeakyReLU
0.01) and the same update (sections 5-6): one G forward whose output serves both steps; the D
step with separate real and fake passes (BCE real/fake, 2 CE(Q_ss, y) on the labelled real
batch, 0.8 MSE(Q_us, c_us) on fakes) and one Adam step (lr 1e-4, betas 0.5/0.999); then the G
step through the updated D with the same codes (BCE(fake, 1) + 2 CE + 0.8 MSE) and one Adam
step (lr 1e-3). D's parameters are frozen during the G step, so PyTorch, like our step, only
back-propagates to the image there (the cheapest faithful twin). Layout NCHW, PyTorch's default.
Ours runs without its gradient-norm metrics (`config.log_grad_norms=False`): the twin computes
none.

Each round runs `steps` iterations of one framework, then of the other (order alternating),
after warm-up; the figures are the medians over rounds. Each framework runs in its own worker
process (only one runs at a time), so that neither is slowed by the other's thread pools or
runtime libraries (in one process, PyTorch ran up to 2x slower next to JAX + TensorFlow);
`--same_process` runs both in this process instead.

The machine's state is measured next to every ratio, before and after each batch size
(benchmarks/machine_state.py: the float32 GEMM roof of numpy and a large copy's memory
bandwidth). `--states quiet,busy` measures each batch size in each state: `quiet` = as the
machine is found (on a shared machine, say what else ran), `busy` = the same while `--busy`
background processes stream memory (a reproducible stand-in for a busy machine: memory
bandwidth is the first thing a busy machine loses; on 2 cores a streamer also takes a core's
share of time). `--dtype bfloat16` runs ours with bfloat16 matmuls (models' `dtype`) and the
twin under `torch.autocast("cpu", dtype=torch.bfloat16)`: the same precision on both sides.
`--device cuda` runs the twin on the GPU (ours then runs on JAX's default device, with the
convolutions `conv_impl='auto'` picks there); timings wait for the device to finish.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time

import torch
from torch import nn
from torch.nn import functional as F

from benchmarks import machine_state
from benchmarks.machine import machine

LEAKY_SLOPE = 0.01
NUM_CLASSES, NUM_CONT, NUM_NOISE = 10, 2, 62


def _init(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def _bn1d(n: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(n, eps=1e-5, momentum=0.1)


def _bn2d(n: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(n, eps=1e-5, momentum=0.1)


class Generator(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(NUM_CLASSES + NUM_CONT + NUM_NOISE, 1024),
            _bn1d(1024),
            nn.ReLU(),
            nn.Linear(1024, 128 * 7 * 7),
            _bn1d(128 * 7 * 7),
            nn.ReLU(),
            nn.Unflatten(1, (128, 7, 7)),
            nn.ConvTranspose2d(128, 64, 4, 2, 1),
            _bn2d(64),
            nn.ReLU(),
            nn.ConvTranspose2d(64, 1, 4, 2, 1),
            nn.Sigmoid(),
        )

    def forward(self, z):
        return self.net(z)


class Discriminator(nn.Module):
    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(1, 64, 4, 2, 1),
            nn.LeakyReLU(LEAKY_SLOPE),
            nn.Conv2d(64, 128, 4, 2, 1),
            _bn2d(128),
            nn.LeakyReLU(LEAKY_SLOPE),
            nn.Flatten(),
            nn.Linear(128 * 7 * 7, 1024),
            _bn1d(1024),
            nn.LeakyReLU(LEAKY_SLOPE),
        )
        self.d_head = nn.Linear(1024, 1)
        self.q_ss = nn.Linear(1024, NUM_CLASSES)
        self.q_us = nn.Sequential(
            nn.Linear(1024, 128), _bn1d(128), nn.LeakyReLU(LEAKY_SLOPE), nn.Linear(128, NUM_CONT)
        )

    def forward(self, x):
        h = self.trunk(x)
        return self.d_head(h)[:, 0], self.q_ss(h), self.q_us(h)


class TorchRunner:
    """The twin's train step; `runner(n)` runs n iterations."""

    def __init__(self, batch_size: int, seed: int = 1, dtype: str = "float32", device: str = "cpu"):
        torch.manual_seed(seed)
        self.batch_size = batch_size
        self.dtype = dtype
        self.device = torch.device(device)
        self.g, self.d = Generator().to(self.device), Discriminator().to(self.device)
        self.g.apply(_init)
        self.d.apply(_init)
        self.g_opt = torch.optim.Adam(self.g.parameters(), lr=1e-3, betas=(0.5, 0.999), eps=1e-8)
        self.d_opt = torch.optim.Adam(self.d.parameters(), lr=1e-4, betas=(0.5, 0.999), eps=1e-8)
        self.supervised = True  # False: an unlabelled batch, no Q_ss loss on the reals.
        self.images = torch.rand(batch_size, 1, 28, 28, device=self.device)
        self.labels = torch.randint(0, NUM_CLASSES, (batch_size,), device=self.device)
        self.num_params = tuple(sum(p.numel() for p in m.parameters()) for m in (self.g, self.d))

    def _autocast(self):
        return torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.dtype == "bfloat16"
        )

    def step(self) -> dict[str, torch.Tensor]:
        with self._autocast():
            return self._step()

    def _step(self) -> dict[str, torch.Tensor]:
        b, device = self.batch_size, self.device
        c_ss = torch.randint(0, NUM_CLASSES, (b,), device=device)
        c_us = torch.rand(b, NUM_CONT, device=device) * 2 - 1
        noise = torch.randn(b, NUM_NOISE, device=device)
        z = torch.cat([F.one_hot(c_ss, NUM_CLASSES).float(), c_us, noise], 1)
        fake = self.g(z)  # One G forward, reused by both steps.

        # D/Q step: real and fake in separate passes (own batch statistics).
        self.d_opt.zero_grad()
        logit_r, q_ss_r, _ = self.d(self.images)
        logit_f, _, q_us_f = self.d(fake.detach())
        d_loss = (
            F.binary_cross_entropy_with_logits(logit_r, torch.ones_like(logit_r))
            + F.binary_cross_entropy_with_logits(logit_f, torch.zeros_like(logit_f))
            + 0.8 * F.mse_loss(q_us_f, c_us)
        )
        if self.supervised:
            d_loss = d_loss + 2.0 * F.cross_entropy(q_ss_r, self.labels)
        d_loss.backward()
        self.d_opt.step()

        # G step through the updated D; D's parameters get no gradient.
        self.d.requires_grad_(False)
        self.g_opt.zero_grad()
        logit, q_ss, q_us = self.d(fake)
        g_loss = (
            F.binary_cross_entropy_with_logits(logit, torch.ones_like(logit))
            + 2.0 * F.cross_entropy(q_ss, c_ss)
            + 0.8 * F.mse_loss(q_us, c_us)
        )
        g_loss.backward()
        self.g_opt.step()
        self.d.requires_grad_(True)
        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}

    def __call__(self, n: int) -> None:
        for _ in range(n):
            self.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def _seconds_per_step(run, steps: int) -> float:
    start = time.perf_counter()
    run(steps)
    return (time.perf_counter() - start) / steps


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
        from benchmarks import common  # JAX only in the JAX worker.

        # The twin computes no gradient norms: neither does ours here (config.log_grad_norms).
        return common.JaxRunner(batch_size, dtype=dtype, grad_norms=False)
    return TorchRunner(batch_size, dtype=dtype, device=device)


def _worker(
    framework: str, batch_size: int, torch_threads: int, dtype: str, device: str, conn
) -> None:
    """One framework in its own process: warm up, then time `steps` per request."""
    run = _make_runner(framework, batch_size, torch_threads, dtype, device)
    run(2)  # Warm-up: compile, allocate.
    conn.send("ready")
    while (steps := conn.recv()) is not None:
        conn.send(_seconds_per_step(run, steps))


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
        timers = {f: (lambda run=runners[f]: _seconds_per_step(run, steps)) for f in frameworks}
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
    print(f"machine: {machine()}; torch {torch.__version__} ({threads} threads); {args.dtype}")
    rows = []
    for state in args.states.split(","):
        if state not in ("quiet", "busy"):
            parser.error(f"--states: unknown state {state!r}")
        with machine_state.memory_streamers(args.busy if state == "busy" else 0):
            for batch_size in (int(b) for b in args.batch_sizes.split(",")):
                before = machine_state.measure()
                res = compare(
                    batch_size,
                    args.steps,
                    args.rounds,
                    args.same_process,
                    args.torch_threads,
                    args.dtype,
                    args.device,
                )
                after = machine_state.measure()
                rows.append((state, batch_size, res, before, after))
                rounds = ", ".join(
                    f"{1 / j:.2f}/{1 / t:.2f}"
                    for j, t in zip(res["all"]["jax"], res["all"]["torch"], strict=True)
                )
                print(
                    f"{state}, batch {batch_size}: rounds jax/torch steps/s: {rounds}; "
                    f"before: {machine_state.describe(before)}; "
                    f"after: {machine_state.describe(after)}",
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
