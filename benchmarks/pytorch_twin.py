"""Our MNIST train step against a PyTorch eager twin, timed alternating in one process.

    pip install torch==2.13.0   # CPU build; the `benchmark` extra of setup.py
    python -m benchmarks.pytorch_twin [--batch_sizes 128,256] [--rounds 5] [--steps 5]

The twin is the same network (reference section 4: layers, init, BN eps/momentum, LeakyReLU
0.01) and the same update (sections 5-6): one G forward whose output serves both steps; the D
step with separate real and fake passes (BCE real/fake, 2 CE(Q_ss, y) on the labelled real
batch, 0.8 MSE(Q_us, c_us) on fakes) and one Adam step (lr 1e-4, betas 0.5/0.999); then the G
step through the updated D with the same codes (BCE(fake, 1) + 2 CE + 0.8 MSE) and one Adam
step (lr 1e-3). D's parameters are frozen during the G step, so PyTorch, like our step, only
back-propagates to the image there (the cheapest faithful twin). Layout NCHW, PyTorch's default.

Each round runs `steps` iterations of one framework, then of the other (order alternating),
after warm-up; the figures are the medians over rounds.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess

import torch
from torch import nn
from torch.nn import functional as F

from benchmarks import common

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

    def __init__(self, batch_size: int, seed: int = 1):
        torch.manual_seed(seed)
        self.batch_size = batch_size
        self.g, self.d = Generator(), Discriminator()
        self.g.apply(_init)
        self.d.apply(_init)
        self.g_opt = torch.optim.Adam(self.g.parameters(), lr=1e-3, betas=(0.5, 0.999), eps=1e-8)
        self.d_opt = torch.optim.Adam(self.d.parameters(), lr=1e-4, betas=(0.5, 0.999), eps=1e-8)
        self.images = torch.rand(batch_size, 1, 28, 28)
        self.labels = torch.randint(0, NUM_CLASSES, (batch_size,))
        self.num_params = tuple(sum(p.numel() for p in m.parameters()) for m in (self.g, self.d))

    def step(self) -> dict[str, torch.Tensor]:
        b = self.batch_size
        c_ss = torch.randint(0, NUM_CLASSES, (b,))
        c_us = torch.rand(b, NUM_CONT) * 2 - 1
        z = torch.cat([F.one_hot(c_ss, NUM_CLASSES).float(), c_us, torch.randn(b, NUM_NOISE)], 1)
        fake = self.g(z)  # One G forward, reused by both steps.

        # D/Q step: real and fake in separate passes (own batch statistics).
        self.d_opt.zero_grad()
        logit_r, q_ss_r, _ = self.d(self.images)
        logit_f, _, q_us_f = self.d(fake.detach())
        d_loss = (
            F.binary_cross_entropy_with_logits(logit_r, torch.ones_like(logit_r))
            + F.binary_cross_entropy_with_logits(logit_f, torch.zeros_like(logit_f))
            + 2.0 * F.cross_entropy(q_ss_r, self.labels)
            + 0.8 * F.mse_loss(q_us_f, c_us)
        )
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


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(
            line.split(":", 1)[1].strip() for line in out.splitlines() if "Model name" in line
        )
    except (OSError, subprocess.CalledProcessError, StopIteration):
        model = platform.processor() or "unknown CPU"
    return f"{model}, {os.cpu_count()} cores"


def compare(batch_size: int, steps: int, rounds: int) -> dict:
    """Median s/step of both, alternating which goes first each round."""
    runners = {"jax": common.JaxRunner(batch_size), "torch": TorchRunner(batch_size)}
    for run in runners.values():  # Warm-up: compile, allocate.
        run(2)
    times = {name: [] for name in runners}
    for r in range(rounds):
        order = list(runners) if r % 2 == 0 else list(runners)[::-1]
        for name in order:
            times[name].append(common.time_per_step(runners[name], steps))
    return {name: statistics.median(t) for name, t in times.items()} | {"all": times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch_sizes", default="128,256")
    parser.add_argument("--steps", type=int, default=5, help="iterations per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {machine()}; torch {torch.__version__} ({torch.get_num_threads()} threads)")
    print(f"load average before: {os.getloadavg()}")
    rows = []
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        res = compare(batch_size, args.steps, args.rounds)
        rows.append((batch_size, res))
        rounds = ", ".join(
            f"{1 / j:.2f}/{1 / t:.2f}"
            for j, t in zip(res["all"]["jax"], res["all"]["torch"], strict=True)
        )
        print(f"batch {batch_size}: rounds jax/torch steps/s: {rounds}", flush=True)
    print(f"load average after: {os.getloadavg()}")
    print()
    print("| batch | JAX steps/s | PyTorch steps/s | JAX images/s | PyTorch images/s | ratio |")
    print("|---|---|---|---|---|---|")
    for batch_size, res in rows:
        j, t = 1 / res["jax"], 1 / res["torch"]
        print(
            f"| {batch_size} | {j:.2f} | {t:.2f} | {j * batch_size:.0f} | {t * batch_size:.0f} "
            f"| {j / t:.2f}x |"
        )


if __name__ == "__main__":
    main()
