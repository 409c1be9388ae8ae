"""How fast the device path and runs per program go on XLA:CPU, per option, side by side.

    python -m benchmarks.sweep_cpu [--set digits] [--batch 32] [--runs 4] [--steps 40]
    python -m benchmarks.sweep_cpu --k 100 --steps 100 --options host,one_per_call,scan

One process, rounds alternating, on one set (digits batch 32 or MNIST batch 128; MNIST is
prepared offline from --raw_dir). Steps/s of all runs together (run-steps/s) of:
- host: one jitted step per call fed by host batches (`TrainData.iterate`), one run;
- one_per_call: the loop's CPU path at `steps_per_dispatch = k`: the train split on the
  device, k steps per host iteration, one call each (no loop in the program);
- scan: the same, k steps in one call, `lax.scan` (accelerators' way; a `while` loop in XLA);
- group_in_turn: N runs taking turns at the one-step program in one process (XLA:CPU's way,
  `sweep.vmaps_runs`);
- group_one_per_call, group_scan: N runs vmapped as one program (`sweep.make_group_step`),
  one step or k steps per call.
Prints one line per option with its compile time, and the machine's state.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import jax
import numpy as np

from benchmarks import common


def _setup(name: str, batch_size: int, data_dir: str):
    from ssinfogan_jax import default_config, experiment, input_pipeline

    config = default_config.shipped_config(name).get_config()
    config.batch_size = batch_size
    config.data.data_dir = data_dir
    exp = experiment.from_config(config)
    return exp, input_pipeline.create_train_data(exp, None)


def main() -> None:
    from ssinfogan_jax import on_device, sweep, train

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", default="digits", choices=("digits", "mnist"))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--steps", type=int, default=40, help="steps per timing (a multiple of k)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--options", default="host,one_per_call,scan,group_in_turn,group_one_per_call,group_scan"
    )
    parser.add_argument("--raw_dir", default=common.RAW_MNIST)
    args = parser.parse_args()
    print(f"{common.machine()}; jax {jax.__version__}; {time.strftime('%Y-%m-%d %H:%M')} UTC")
    print(common.describe(common.measure()), flush=True)
    k, n = args.k, args.runs
    with tempfile.TemporaryDirectory() as tmp:
        if args.set == "mnist":
            common.prepared_mnist(tmp, args.raw_dir)
        exp, data = _setup(args.set, args.batch, tmp)
    step_fn = train.bind_train_step(exp)
    state0 = train.create_train_state(jax.random.PRNGKey(0), exp)
    resident = on_device.put(data)
    known = {name: np.asarray(v) for name, v in data.known.items()}
    stack = lambda tree: jax.tree.map(lambda x: np.stack([np.asarray(x)] * n), tree)
    host_step, batches = jax.jit(step_fn), data.iterate(0)

    def host(steps: int) -> None:
        state = state0
        for _ in range(steps):
            state, metrics = host_step(state, next(batches))
        jax.block_until_ready(metrics)

    def device(k: int, loop: bool):
        # k steps per host iteration: one scan (a while loop in XLA), or one call per step.
        multi = on_device.make_multi_step(step_fn, loop=loop)

        def run(steps: int) -> None:
            state = state0
            for first in range(0, steps, k):
                state, metrics = multi(state, resident, on_device.plan(data, first, k))
            jax.block_until_ready(metrics)

        return run

    def group(k: int, vmap: bool = True):
        multi = sweep.make_group_step(step_fn, loop=k > 1, vmap=vmap)
        start, knowns = sweep.group_state([state0] * n, [known] * n, None, vmap=vmap)

        def run(steps: int) -> None:
            state = start
            for first in range(0, steps, k):
                plans = stack(on_device.plan(data, first, k))
                state, metrics = multi(state, resident, knowns, plans)
            jax.block_until_ready(metrics)

        return run

    options = {
        "host": (host, 1),
        "one_per_call": (device(k, loop=False), 1),
        "scan": (device(k, loop=True), 1),
        "group_in_turn": (group(1, vmap=False), n),
        "group_one_per_call": (group(1), n),
        "group_scan": (group(k), n),
    }
    chosen = {name: options[name] for name in args.options.split(",")}
    steps = max(k, args.steps // k * k)
    compile_s = {}
    for name, (run, _) in chosen.items():
        start = time.perf_counter()
        run(k)  # Compile.
        compile_s[name] = time.perf_counter() - start
    rates = {name: [] for name in chosen}
    for _ in range(args.rounds):
        for name, (run, runs) in chosen.items():
            start = time.perf_counter()
            run(steps)
            rates[name].append(runs * steps / (time.perf_counter() - start))
    print(f"{args.set} batch {args.batch}, k = {k}, {steps} steps x {args.rounds} rounds:")
    base = statistics.median(rates[next(iter(chosen))])
    for name, (_, runs) in chosen.items():
        rate = statistics.median(rates[name])
        print(
            f"  {name:15s} runs {runs}: {rate:6.2f} run-steps/s (x{rate / base:.2f}), "
            f"first call {compile_s[name]:.0f} s",
            flush=True,
        )
    print(common.describe(common.measure()))


if __name__ == "__main__":
    main()
