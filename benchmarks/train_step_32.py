"""Speed and start-up of the 32x32 train step (configs/digit_scenes.py), per net, and of the
64x64 one (configs/celeba.py:64) beside CelebA's 32x32.

    python -m benchmarks.train_step_32 [--preset svhn] [--batch_size 128] [--rounds 5]
        [--nets dcgan_32,infogan_32]
    python -m benchmarks.train_step_32 --nets celeba_32,celeba_64 [--batch_size 32]

Compile time, steps/s after warm-up (median of rounds; a labelled batch, as the first steps
of a run), XLA's memory plan for the step, and the machine's state (numpy GEMM roof, memory
bandwidth, load) before and after, as benchmarks/train_step.py does for MNIST. Several nets
are timed in alternating rounds, so that their ratio holds while the machine's speed moves:
`dcgan_32` (the 32x32 configs' net: D's trunk without batch norm, Q_ss on a trunk of its
own), `dcgan_32_shared_q` (Q_ss on D's trunk) and `infogan_32` (the InfoGAN paper's net, with
D's batch norm and the shared trunk). `celeba_32` and `celeba_64` are configs/celeba.py's run
with `dcgan_32` and with `dcgan_64` (`:64`): the same latents, losses and Q_ss trunk.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import numpy as np

from benchmarks import common
from configs import celeba, digit_scenes
from ssinfogan_jax import experiment, train

# name: config overrides of configs/digit_scenes.py at --preset (whose Q_ss has a trunk of its
# own).
NETS = {
    "dcgan_32": {"model.arch": "dcgan_32", "model.d_batch_norm": False},
    "dcgan_32_shared_q": {"model.arch": "dcgan_32", "model.d_batch_norm": False, **common.SHARED_Q},
    "infogan_32": common.PAPER_NET,
}
# name: the argument of configs/celeba.py it times.
CELEBA_NETS = {"celeba_32": "", "celeba_64": "64"}


def config_of(name: str, preset: str):
    """(config, what it is) of a net of NETS or CELEBA_NETS."""
    if name in CELEBA_NETS:
        arg = CELEBA_NETS[name]
        return celeba.get_config(arg), f"celeba{':' if arg else ''}{arg}"
    config = digit_scenes.get_config(preset)
    config.update_from_flattened_dict(NETS[name])
    return config, f"digit_scenes:{preset}"


def batch_of(exp, batch_size: int, seed: int = 0) -> dict:
    """A fully labelled batch of the experiment's shapes and labels."""
    rng = np.random.default_rng(seed)
    info = exp.data
    labels = {}
    for c in exp.layout.supervised_codes:
        if c.categorical:
            labels[c.label] = rng.integers(0, c.size, batch_size).astype(np.int32)
        else:
            labels[c.label] = rng.uniform(-1, 1, batch_size).astype(np.float32)
    return {
        "image": rng.uniform(-1, 1, (batch_size, *info.image_shape)).astype(np.float32),
        "label_masks": {k: np.ones(batch_size, np.float32) for k in labels},
        "labels": labels,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="svhn")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5, help="iterations per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--nets", default="dcgan_32,infogan_32", help=f"of {sorted([*NETS, *CELEBA_NETS])}"
    )
    args = parser.parse_args()
    print(f"before: {common.measure()}", flush=True)
    runs = {}
    for name in args.nets.split(","):
        config, what = config_of(name, args.preset)
        config.batch_size = args.batch_size
        exp = experiment.from_config(config)
        state = train.create_train_state(jax.random.PRNGKey(0), exp)
        batch = jax.tree_util.tree_map(jax.numpy.asarray, batch_of(exp, args.batch_size))
        start = time.perf_counter()
        compiled = train.make_train_step(exp).lower(state, batch).compile()
        compile_s = time.perf_counter() - start
        state, _ = compiled(state, batch)
        jax.block_until_ready(state)
        runs[name] = dict(
            compiled=compiled, state=state, batch=batch, compile_s=compile_s, t=[], config=what
        )
    for _ in range(args.rounds):
        for run in runs.values():
            state = run["state"]
            start = time.perf_counter()
            for _ in range(args.steps):
                state, metrics = run["compiled"](state, run["batch"])
            jax.block_until_ready((state, metrics))
            run["t"].append((time.perf_counter() - start) / args.steps)
            run["state"] = state
    print(f"after: {common.measure()}")
    print("| net | config | batch | steps/s | images/s | GFLOP/step | compile s | XLA memory MiB |")
    print("|---|---|---|---|---|---|---|---|")
    for name, run in runs.items():
        sec, compiled = statistics.median(run["t"]), run["compiled"]
        print(
            f"| {name} | {run['config']} | {args.batch_size} | {1 / sec:.2f} "
            f"| {args.batch_size / sec:.0f} | {common.flops_of(compiled) / 1e9:.1f} "
            f"| {run['compile_s']:.1f} | {common.memory_of(compiled) / 2**20:.0f} |"
        )
        print(f"  {name}: s/step per round {[round(t, 3) for t in run['t']]}")


if __name__ == "__main__":
    main()
