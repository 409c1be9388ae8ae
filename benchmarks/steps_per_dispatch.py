"""Steps/s of one step per call from host batches (the host loop) against k steps per call
with the train split on the device (`config.steps_per_dispatch`, ssinfogan_jax/on_device.py).

    python -m benchmarks.steps_per_dispatch [--k 100] [--rounds 3] [--steps 200]

Both paths run side by side in one process, rounds alternating, on the digits quick start
(batch 32) and MNIST (batch 128; prepared offline from --raw_dir into --data_dir): the host
path as the loop runs it (a jitted step fed by `TrainData.iterate`, batches built in a thread),
the device path as the loop runs it (`on_device.plan` per call, `lax.scan` over k steps).
Prints the median steps/s of each and their ratio, with the machine's state.
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
    multi = on_device.make_multi_step(step_fn)
    batches = data.iterate(0)
    position = {"host": 0, "device": 0}

    def host(n: int) -> None:
        state = state0
        for _ in range(n):
            state, metrics = host_step(state, next(batches))
        jax.block_until_ready(metrics)

    def device(n: int) -> None:
        state, start = state0, position["device"]
        for first in range(start, start + n, k):
            state, metrics = multi(state, resident, on_device.plan(data, first, k))
        position["device"] = start + n
        jax.block_until_ready(metrics)

    steps = max(k, steps // k * k)
    host(2)
    device(k)  # Compile both.
    rates = {"host": [], "device": []}
    for _ in range(rounds):
        for path, run in (("host", host), ("device", device)):
            start = time.perf_counter()
            run(steps)
            rates[path].append(steps / (time.perf_counter() - start))
    host_rate, device_rate = (statistics.median(rates[p]) for p in ("host", "device"))
    print(
        f"{name} batch {batch_size}: host loop {host_rate:.1f} steps/s, "
        f"{k} steps per call on the device {device_rate:.1f} steps/s "
        f"(x{device_rate / host_rate:.2f}; {steps} steps x {rounds} rounds, "
        f"train split {on_device.nbytes(data) / 2**20:.0f} MB)",
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
