"""Steps/s of one step per call from host batches (the host loop) against k steps per call
with the train split on the device (`config.steps_per_dispatch`, ssinfogan_jax/on_device.py).

    python -m benchmarks.steps_per_dispatch [--k 100] [--rounds 3] [--steps 200]

The paths run side by side in one process, rounds alternating, on the digits quick start
(batch 32) and MNIST (batch 128; prepared offline from --raw_dir into --data_dir): the host
path as the loop runs it (a jitted step fed by `TrainData.iterate`, batches built in a thread),
the device path as the loop runs it (`on_device.plan` per k steps; `lax.scan` over them on an
accelerator, one call per step on XLA:CPU, `on_device.loops_in_program`), and on a CPU also
the scan. Prints the median steps/s of each and their ratio to the host loop, with the
machine's state.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import jax

from benchmarks import common


def _setup(name: str, batch_size: int, data_dir: str):
    from ssinfogan_jax import default_config, experiment, input_pipeline, on_device, train

    config = default_config.shipped_config(name).get_config()
    config.batch_size = batch_size
    config.data.data_dir = data_dir
    exp = experiment.from_config(config)
    data = input_pipeline.create_train_data(exp, None)
    step_fn = train.bind_train_step(exp)
    state = train.create_train_state(jax.random.PRNGKey(0), exp)
    return exp, data, step_fn, state, on_device


def measure(name: str, batch_size: int, data_dir: str, k: int, steps: int, rounds: int):
    _, data, step_fn, state0, on_device = _setup(name, batch_size, data_dir)
    host_step = jax.jit(step_fn)
    resident = on_device.put(data)
    batches = data.iterate(0)
    paths = {"host": None, "device": on_device.make_multi_step(step_fn)}
    if not on_device.loops_in_program():  # XLA:CPU: the device path's default makes no loop.
        paths["scan"] = on_device.make_multi_step(step_fn, loop=True)

    def host(n: int) -> None:
        state = state0
        for _ in range(n):
            state, metrics = host_step(state, next(batches))
        jax.block_until_ready(metrics)

    def on_device_path(multi):
        def run(n: int) -> None:
            state = state0
            for first in range(0, n, k):
                state, metrics = multi(state, resident, on_device.plan(data, first, k))
            jax.block_until_ready(metrics)

        return run

    runs = {p: host if m is None else on_device_path(m) for p, m in paths.items()}
    steps = max(k, steps // k * k)
    for run in runs.values():
        run(k)  # Compile.
    rates = {path: [] for path in runs}
    for _ in range(rounds):
        for path, run in runs.items():
            start = time.perf_counter()
            run(steps)
            rates[path].append(steps / (time.perf_counter() - start))
    median = {path: statistics.median(r) for path, r in rates.items()}
    device = "one call per step" if "scan" in median else "one lax.scan per call"
    line = (
        f"{name} batch {batch_size}: host loop {median['host']:.1f} steps/s, data on the "
        f"device, k={k} ({device}) {median['device']:.1f} steps/s "
        f"(x{median['device'] / median['host']:.2f})"
    )
    if "scan" in median:
        line += f", lax.scan per call {median['scan']:.1f} (x{median['scan'] / median['host']:.2f})"
    print(
        f"{line}; {steps} steps x {rounds} rounds, train split "
        f"{on_device.nbytes(data) / 2**20:.0f} MB",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data_dir", default="")
    parser.add_argument("--raw_dir", default=common.RAW_MNIST)
    args = parser.parse_args()
    print(f"{common.machine()}; {jax.devices()[0].device_kind}; jax {jax.__version__}")
    print(common.describe(common.measure()), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = common.prepared_mnist(args.data_dir or tmp, args.raw_dir)
        measure("digits", 32, data_dir, args.k, args.steps, args.rounds)
        measure("mnist", 128, data_dir, args.k, args.steps, args.rounds)


if __name__ == "__main__":
    main()
