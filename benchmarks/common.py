"""The one helper module of benchmarks/: everything that two or more of its scripts share.

- the repository's paths and real MNIST, prepared offline;
- the machine: its model, float32 GEMM roof, memory bandwidth and load, and background
  processes that stream memory (a reproducible "busy" state);
- timing: seconds per step, rounds after a warm-up, XLA's FLOPs and memory of a compiled step;
- the reference MNIST train step and a batch for it; the 32x32 nets' config overrides;
- the PyTorch twin of the MNIST step (same network and update);
- eval histories (`eval_history.jsonl`) as a run writes them.

Only numpy and the standard library are imported here at the top: JAX, the package, `configs`
and PyTorch are imported inside the functions that use them, so that a process that only
measures the machine or runs the twin (quickstart's parent, the PyTorch worker) loads neither
JAX nor TensorFlow, and a script that must stub TensorFlow first (experiments/gpu_digit_scenes)
can import this module before it does.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable

import numpy as np

# ------------------------------------------------------------------------------------------
# Paths and data.

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Real MNIST's IDX files, beside the repository (the scripts' `--raw_dir` default).
RAW_MNIST = os.path.join(os.path.dirname(REPO), "shared", "data", "mnist")
EVAL_HISTORY = "eval_history.jsonl"  # A run's evaluations, one JSON line each.


def prepared_mnist(data_dir: str, raw_dir: str = RAW_MNIST) -> str:
    """`data_dir`, with tfds MNIST prepared in it from `raw_dir` (offline) if it was not."""
    from ssinfogan_jax.data import builders

    if not builders.is_prepared("mnist", data_dir):
        builders.prepare("mnist", raw_dir, data_dir)
    return data_dir


def read_history(path: str) -> list[dict]:
    """The rows of an eval history, by step: a step evaluated twice (a resumed run) keeps its
    last row; a last line still being written is left out; no file gives []."""
    if not os.path.exists(path):
        return []
    latest = {}
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # A line being written.
                break
            latest[row["step"]] = row
    return [latest[step] for step in sorted(latest)]


# ------------------------------------------------------------------------------------------
# The machine.

STREAM_MB = 256  # Large against any cache: a copy of it is bound by memory bandwidth.


def machine() -> str:
    """The CPU's model name and core count, in words."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(
            line.split(":", 1)[1].strip() for line in out.splitlines() if "Model name" in line
        )
    except (OSError, subprocess.CalledProcessError, StopIteration):
        model = platform.processor() or "unknown CPU"
    return f"{model}, {os.cpu_count()} cores"


def _best_seconds(fn: Callable[[], object], trials: int, repeats: int) -> float:
    """Best over `trials` of the mean seconds of `repeats` calls of `fn`, after one call (a
    JAX result is waited for)."""
    fn()
    best = float("inf")
    for _ in range(trials):
        start = time.perf_counter()
        for _ in range(repeats):
            out = fn()
        if hasattr(out, "block_until_ready"):
            out.block_until_ready()
        best = min(best, (time.perf_counter() - start) / repeats)
    return best


def _square_operands(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, n), np.float32), rng.standard_normal((n, n), np.float32)


def gemm_roof(n: int = 2048, trials: int = 5) -> float:
    """GFLOP/s of an n x n x n float32 numpy matmul, best of `trials` single products."""
    a, b = _square_operands(n)
    return 2.0 * n**3 / _best_seconds(lambda: a @ b, trials, 1) / 1e9


def gemm_peak(n: int = 2048, trials: int = 5, repeats: int = 10) -> dict[str, float]:
    """GFLOP/s of an n x n x n float32 matmul through XLA (jnp.dot) and numpy, all threads:
    {'jax': ..., 'numpy': ..., 'peak': max}, each the best of `trials` means of `repeats`."""
    import jax
    import jax.numpy as jnp

    a, b = _square_operands(n)
    ja, jb = jnp.asarray(a), jnp.asarray(b)
    dot = jax.jit(jnp.dot)
    flops = 2.0 * n**3
    out = {
        "jax": flops / _best_seconds(lambda: dot(ja, jb), trials, repeats) / 1e9,
        "numpy": flops / _best_seconds(lambda: a @ b, trials, repeats) / 1e9,
    }
    return out | {"peak": max(out.values())}


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


def measure() -> dict[str, float]:
    """{'gemm_gflops', 'memory_gbs', 'load'}: the machine's state now, with numpy only. On a
    shared machine every other figure of a run should be read against it."""
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


# ------------------------------------------------------------------------------------------
# Timing.


def time_per_step(run: Callable[[int], None], n: int) -> float:
    """Seconds per step of `run(n)` (which waits for its device)."""
    start = time.perf_counter()
    run(n)
    return (time.perf_counter() - start) / n


def timed_rounds(run: Callable[[int], None], steps: int, rounds: int) -> list[float]:
    """Seconds per step of `rounds` timings of `steps` steps, after a warm-up of 2 (compile,
    allocate)."""
    run(2)
    return [time_per_step(run, steps) for _ in range(rounds)]


def flops_of(compiled) -> float:
    """FLOPs of one call of a compiled JAX function (XLA's cost analysis)."""
    cost = compiled.cost_analysis()
    if isinstance(cost, list):  # Older jax: one dict per computation.
        cost = cost[0]
    return float(cost["flops"])


def memory_of(compiled) -> float:
    """Bytes XLA plans for one step: arguments + outputs + temporaries - donated aliases."""
    m = compiled.memory_analysis()
    return float(
        m.argument_size_in_bytes
        + m.output_size_in_bytes
        + m.temp_size_in_bytes
        - m.alias_size_in_bytes
    )


# ------------------------------------------------------------------------------------------
# Our train step: the reference MNIST config, and the 32x32 nets.

# configs/digit_scenes.py's Q_ss reads a trunk of its own (configs/default.py: own_q_ss); these
# overrides give the paper's, on D's trunk.
SHARED_Q = {
    "model.q_ss_trunk": "shared",
    "loss.q_ss_max_shift": 0,
    "loss.q_ss_recolour": False,
    "optimizer.q_ss_learning_rate": 0.0,
}
# The InfoGAN paper's 32x32 net with D's batch norm and the shared trunk, which collapsed at
# 32x32 (README), for comparison.
PAPER_NET = {
    "model.arch": "infogan_32",
    "model.d_batch_norm": True,
    "optimizer.g_ema_decay": 0.0,
    **SHARED_Q,
}


def mnist_config(batch_size: int):
    """The reference MNIST config (configs/default.py) at `batch_size`."""
    from ssinfogan_jax import default_config as default

    config = default.get_config()
    config.batch_size = batch_size
    return config


def mnist_batch(batch_size: int, seed: int = 0) -> dict:
    """A labelled MNIST-shaped batch (the reference's early iterations are all labelled)."""
    import jax.numpy as jnp

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
    import jax

    from ssinfogan_jax import experiment, train

    config = mnist_config(batch_size)
    config.model.dtype = dtype
    config.model.conv_impl = conv_impl
    if grad_norms is not None:
        config.log_grad_norms = grad_norms
    exp = experiment.from_config(config)
    state = train.create_train_state(jax.random.PRNGKey(config.seed), exp)
    return train.make_train_step(exp, donate=donate), state, mnist_batch(batch_size)


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
        import jax

        state, metrics = self.state, None
        for _ in range(n):
            state, metrics = self.step(state, self.batch)
        jax.block_until_ready((state, metrics))
        self.state = state


# ------------------------------------------------------------------------------------------
# The PyTorch twin of the MNIST step (benchmarks/pytorch_twin.py says what it matches).

TWIN_CLASSES, TWIN_CONT, TWIN_NOISE = 10, 2, 62  # c_ss (one-hot), c_us, noise.
_LEAKY_SLOPE = 0.01


def _twin_networks(device):
    """(G, D) of the twin on `device`, initialised there as the reference does. D is a
    ModuleDict: trunk, d_head, q_ss, q_us (run by `TorchRunner.discriminate`)."""
    from torch import nn

    def bn(n: int, dims: int = 1):
        return (nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(n, eps=1e-5, momentum=0.1)

    g = nn.Sequential(
        nn.Linear(TWIN_CLASSES + TWIN_CONT + TWIN_NOISE, 1024),
        bn(1024),
        nn.ReLU(),
        nn.Linear(1024, 128 * 7 * 7),
        bn(128 * 7 * 7),
        nn.ReLU(),
        nn.Unflatten(1, (128, 7, 7)),
        nn.ConvTranspose2d(128, 64, 4, 2, 1),
        bn(64, dims=2),
        nn.ReLU(),
        nn.ConvTranspose2d(64, 1, 4, 2, 1),
        nn.Sigmoid(),
    )
    trunk = nn.Sequential(
        nn.Conv2d(1, 64, 4, 2, 1),
        nn.LeakyReLU(_LEAKY_SLOPE),
        nn.Conv2d(64, 128, 4, 2, 1),
        bn(128, dims=2),
        nn.LeakyReLU(_LEAKY_SLOPE),
        nn.Flatten(),
        nn.Linear(128 * 7 * 7, 1024),
        bn(1024),
        nn.LeakyReLU(_LEAKY_SLOPE),
    )
    d = nn.ModuleDict(
        {
            "trunk": trunk,
            "d_head": nn.Linear(1024, 1),
            "q_ss": nn.Linear(1024, TWIN_CLASSES),
            "q_us": nn.Sequential(
                nn.Linear(1024, 128), bn(128), nn.LeakyReLU(_LEAKY_SLOPE), nn.Linear(128, TWIN_CONT)
            ),
        }
    )

    def init(module) -> None:
        if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(module.weight, 0.0, 0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(module.weight, 1.0, 0.02)
            nn.init.zeros_(module.bias)

    g, d = g.to(device), d.to(device)
    g.apply(init)
    d.apply(init)
    return g, d


class TorchRunner:
    """The twin's train step; `runner(n)` runs n iterations. Set `images`, `labels` and
    `supervised` (False: an unlabelled batch, no Q_ss loss on the reals) between steps to
    feed it real data; by default it trains on one random labelled batch."""

    def __init__(self, batch_size: int, seed: int = 1, dtype: str = "float32", device: str = "cpu"):
        import torch

        torch.manual_seed(seed)
        self.batch_size = batch_size
        self.dtype = dtype
        self.device = torch.device(device)
        self.g, self.d = _twin_networks(self.device)
        self.g_opt = torch.optim.Adam(self.g.parameters(), lr=1e-3, betas=(0.5, 0.999), eps=1e-8)
        self.d_opt = torch.optim.Adam(self.d.parameters(), lr=1e-4, betas=(0.5, 0.999), eps=1e-8)
        self.supervised = True
        self.images = torch.rand(batch_size, 1, 28, 28, device=self.device)
        self.labels = torch.randint(0, TWIN_CLASSES, (batch_size,), device=self.device)
        self.num_params = tuple(sum(p.numel() for p in m.parameters()) for m in (self.g, self.d))

    def discriminate(self, x):
        """(real/fake logits [B], Q_ss logits [B, 10], Q_us [B, 2]) of images [B, 1, 28, 28]."""
        h = self.d["trunk"](x)
        return self.d["d_head"](h)[:, 0], self.d["q_ss"](h), self.d["q_us"](h)

    def step(self) -> dict:
        import torch

        autocast = torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.dtype == "bfloat16"
        )
        with autocast:
            return self._step()

    def _step(self) -> dict:
        import torch
        from torch.nn import functional as F

        b, device = self.batch_size, self.device
        c_ss = torch.randint(0, TWIN_CLASSES, (b,), device=device)
        c_us = torch.rand(b, TWIN_CONT, device=device) * 2 - 1
        noise = torch.randn(b, TWIN_NOISE, device=device)
        z = torch.cat([F.one_hot(c_ss, TWIN_CLASSES).float(), c_us, noise], 1)
        fake = self.g(z)  # One G forward, reused by both steps.

        # D/Q step: real and fake in separate passes (own batch statistics).
        self.d_opt.zero_grad()
        logit_r, q_ss_r, _ = self.discriminate(self.images)
        logit_f, _, q_us_f = self.discriminate(fake.detach())
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
        logit, q_ss, q_us = self.discriminate(fake)
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
        import torch

        for _ in range(n):
            self.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
