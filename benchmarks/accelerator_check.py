"""One script for a GPU machine: the devices, the GPU path's tests, steps/s of both
convolution implementations and of the PyTorch twin, and the whole-run path of issue 35 (the
data on the device, k steps per call, N runs per program) against the twin as one process and
as N processes, in tables and one JSON file. Sized for one device call of at most 10 minutes.

    pip install -c constraints.txt -e '.[test]' "jax[cuda12]" torch   # CUDA builds
    python -m benchmarks.accelerator_check --json $OUT/accelerator_check.json
    python -m benchmarks.accelerator_check --quick     # on a CPU: every part, tiny (~2 min)

Parts (`--parts`, default all), each in its own process (so that JAX and PyTorch never share
a GPU's memory; JAX is told not to preallocate):
1. devices: JAX's backend and devices, PyTorch's CUDA device, nvidia-smi's line.
2. tests: tests/test_layers.py, test_models.py, test_train_step.py and test_parallel.py
   (layers against Flax, `conv_impl` 'flax' against 'cpu_fast', the train step's routing,
   data parallelism) on JAX's default backend. `--quick`: a few of the conv_impl tests.
3. ours: the MNIST train step (common.JaxRunner) at each batch size, for
   `conv_impl` 'flax' (Flax's nn.Conv / nn.ConvTranspose, the default off CPU) and 'cpu_fast'
   (layers.py, the default on CPU), in float32 and bfloat16 matmuls; median of 3 timings
   of `--steps` steps after a warm-up (compile).
4. torch: the PyTorch twin (common.TorchRunner: same network and update) on CUDA, float32
   and bfloat16 autocast, same batch sizes; on a machine without CUDA it runs on the CPU
   (a smoke check of the code, not a figure to compare).
5. device: the MNIST step at `--device_batch` (float32, conv_impl 'auto') on MNIST-shaped
   uint8 data (60,000 random images: speed does not depend on the pixels, and no data set is
   needed): one run as the loop runs it at k = 1 (a jitted step fed by the host pipeline),
   the same with the train split on the device and k = `--k` steps per call
   (`on_device.multi_step`), and `--runs` (8, 32) runs as one program (`sweep.make_group_step`,
   k steps per call, each run's plan made on the host as sweep.py makes it).
6. torch_procs: the twin (float32, same batch) as 1 and as each of `--torch_procs` processes
   at once on the same GPU (each warms up, then all start timing together); images/s summed.

The first table gives steps/s and each row's ratio to PyTorch at the same batch size and
precision; the second images/s of the whole-run path against the twin as one process (one
run) and as N processes (N runs per program), the issue's goals being 2x and 5x.
"""

from __future__ import annotations

import argparse
import importlib.util
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
PARTS = ("tests", "ours", "torch", "device", "torch_procs")

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


def _synthetic_mnist(n: int, seed: int = 0) -> tuple:
    """MNIST-shaped uint8 images [n, 28, 28, 1] and labels (random: speed ignores pixels)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8)
    return images, {"label": rng.integers(0, 10, n).astype(np.int32)}


def _rate(run, steps: int, rounds: int) -> float:
    """Median steps/s of `rounds` timings of run(steps), after run(steps) once (compile)."""
    run(steps)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run(steps)
        times.append(time.perf_counter() - start)
    return steps / statistics.median(times)


def part_device(batch_size: int, k: int, steps: int, rounds: int, runs: list[int], n: int):
    """Images/s of one run at k = 1 (host loop) and k (on the device), and of N runs as one
    program; one JSON line each."""
    import jax
    import numpy as np

    from ssinfogan_jax import experiment, input_pipeline, on_device, parallel, sweep, train

    config = common.mnist_config(batch_size)
    config.data.num_labeled = min(600, n // 4)
    arrays = {"train": _synthetic_mnist(n), "test": _synthetic_mnist(max(n // 6, 64), 1)}
    exp = experiment.from_config(config, data=arrays)
    data = input_pipeline.create_train_data(exp, None)
    step_fn, donate = train.bind_train_step(exp), train.default_donation()
    steps = max(k, steps // k * k)
    device = jax.devices()[0].device_kind

    def emit(path: str, count: int, rate: float) -> None:
        row = dict(framework="jax", device=device, path=path, runs=count, batch=batch_size)
        row |= dict(steps_per_s=rate, images_per_s=rate * count * batch_size)
        print(json.dumps(row), flush=True)

    dp = parallel.DataParallel.create(step_fn, "jit", donate=donate)  # What the loop runs.
    batches, box = data.iterate(0), {}
    box["state"] = dp.replicate(train.create_train_state(jax.random.PRNGKey(0), exp))

    def host(count: int) -> None:
        for _ in range(count):
            box["state"], metrics = dp.train_step(box["state"], dp.shard(next(batches)))
        jax.block_until_ready(metrics)

    emit("host loop, k=1", 1, _rate(host, steps, rounds))

    resident = on_device.put(data)
    one = on_device.make_multi_step(step_fn, donate=donate)
    box["step"] = 0

    def device_path(count: int) -> None:
        for _ in range(0, count, k):
            plan = on_device.plan(data, box["step"], k)
            box["state"], metrics = one(box["state"], resident, plan)
            box["step"] += k
        jax.block_until_ready(metrics)

    emit(f"on the device, k={k}", 1, _rate(device_path, steps, rounds))
    box.clear()  # Free the single run's state.
    stack = lambda trees: jax.tree.map(lambda *xs: np.stack(xs), *trees)
    known = {name: np.asarray(v) for name, v in data.known.items()}
    group_step = sweep.make_group_step(step_fn)  # Vmapped; on a CPU (--quick) in turns.
    for count in runs:
        states = [train.create_train_state(jax.random.PRNGKey(i), exp) for i in range(count)]
        state, knowns = sweep.group_state(states, [known] * count, None)
        box.update(state=state, step=0)

        def grouped(total: int, count: int = count, knowns=knowns) -> None:
            for _ in range(0, total, k):
                plans = stack([on_device.plan(data, box["step"], k) for _ in range(count)])
                box["state"], metrics = group_step(box["state"], resident, knowns, plans)
                box["step"] += k
            jax.block_until_ready(metrics)

        emit(f"{count} runs per program, k={k}", count, _rate(grouped, steps, rounds))
        box.clear()


def part_torch_proc(batch_size: int, steps: int, rounds: int, ready: str, go: str) -> None:
    """One of N twin processes: warm up, say so (`ready`), wait for `go`, time."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    runner = common.TorchRunner(batch_size, device=device)
    runner(2)
    with open(ready, "w") as f:
        f.write("ready")
    while not os.path.exists(go):
        time.sleep(0.05)
    rate = 1.0 / statistics.median(common.timed_rounds(runner, steps, rounds))
    print(json.dumps(dict(device=device, batch=batch_size, steps_per_s=rate)), flush=True)


def torch_processes(count: int, args, timeout: float) -> dict | None:
    """The twin as `count` processes at once: summed images/s (None if one failed)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        go = os.path.join(tmp, "go")
        procs = []
        for i in range(count):
            command = [sys.executable, "-m", "benchmarks.accelerator_check", "--part=torch_proc"]
            command += [f"--device_batch={args.device_batch}", f"--steps={args.device_steps}"]
            command += [f"--rounds={args.rounds}", f"--ready={tmp}/ready{i}", f"--go={go}"]
            procs.append(
                subprocess.Popen(
                    command,
                    cwd=common.REPO,
                    env=os.environ | ENV,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not all(
            os.path.exists(f"{tmp}/ready{i}") or procs[i].poll() is not None for i in range(count)
        ):
            time.sleep(0.1)
        with open(go, "w") as f:
            f.write("go")
        rates = []
        for proc in procs:
            try:
                out, err = proc.communicate(timeout=max(deadline - time.monotonic(), 1))
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
            rows = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
            if proc.returncode != 0 or not rows:
                print(f"torch process: exit code {proc.returncode}\n{err[-2000:]}")
                return None
            rates.append(rows[-1])
    total = sum(r["steps_per_s"] for r in rates)
    return dict(
        framework="torch",
        device=rates[0]["device"],
        path=f"{count} process{'es' if count > 1 else ''}",
        runs=count,
        batch=args.device_batch,
        steps_per_s=total / count,
        images_per_s=total * args.device_batch,
    )


def _timings(part: str, args, timeout: float) -> list[dict]:
    command = [sys.executable, "-m", "benchmarks.accelerator_check", f"--part={part}"]
    command += [f"--batch_sizes={args.batch_sizes}", f"--steps={args.steps}"]
    command += [f"--rounds={args.rounds}", f"--device_batch={args.device_batch}"]
    command += [f"--k={args.k}", f"--runs={args.runs}", f"--device_steps={args.device_steps}"]
    command += [f"--train_size={args.train_size}"]
    out = _run(command, timeout)
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0:
        print(f"{part}: exit code {out.returncode}\n{out.stderr[-3000:]}")
    return rows


def _whole_run_table(rows: list[dict]) -> list[str]:
    """The whole-run path against the twin: one run against one process, N runs per program
    against N processes."""
    torch_rows = {r["runs"]: r["images_per_s"] for r in rows if r["framework"] == "torch"}
    lines = ["| framework | device | path | runs | batch | images/s | per run | vs PyTorch |"]
    lines.append("|---|---|---|---|---|---|---|---|")
    for r in rows:
        twin = torch_rows.get(r["runs"]) or torch_rows.get(max(torch_rows, default=0))
        ratio = f"{r['images_per_s'] / twin:.2f}x" if twin and r["framework"] == "jax" else "-"
        if r["framework"] == "jax" and r["runs"] not in torch_rows and twin:
            ratio += f" (vs {max(torch_rows)} processes)"
        lines.append(
            f"| {r['framework']} | {r['device']} | {r['path']} | {r['runs']} | {r['batch']} "
            f"| {r['images_per_s']:.0f} | {r['images_per_s'] / r['runs']:.0f} | {ratio} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch_sizes", default="128,256,1024")
    parser.add_argument("--steps", type=int, default=50, help="steps per timing")
    parser.add_argument("--rounds", type=int, default=3, help="timings per row (median)")
    parser.add_argument("--device_batch", type=int, default=128, help="the whole-run parts'")
    parser.add_argument("--k", type=int, default=100, help="steps per call on the device")
    parser.add_argument("--runs", default="8,32", help="runs per program")
    parser.add_argument("--device_steps", type=int, default=200, help="steps per timing")
    parser.add_argument("--torch_procs", default="8", help="twin processes at once (and 1)")
    parser.add_argument("--train_size", type=int, default=60_000, help="synthetic images")
    parser.add_argument("--parts", default=",".join(PARTS), help="which parts to run")
    parser.add_argument("--json", default="", help="write every row and the output here")
    parser.add_argument("--quick", "--smoke", action="store_true", help="tiny (a CPU check)")
    parser.add_argument("--skip_tests", action="store_true")
    parser.add_argument("--part", default="", help=argparse.SUPPRESS)  # A child's part.
    parser.add_argument("--ready", default="", help=argparse.SUPPRESS)
    parser.add_argument("--go", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.batch_sizes, args.steps, args.rounds = "16", 2, 1
        args.device_batch, args.k, args.runs, args.device_steps = 16, 2, "2,3", 4
        args.torch_procs, args.train_size = "2", 256
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    if args.part == "jax":
        return part_jax(batch_sizes, args.steps, args.rounds)
    if args.part == "torch":
        return part_torch(batch_sizes, args.steps, args.rounds)
    if args.part == "device":
        runs = [int(n) for n in args.runs.split(",")]
        return part_device(
            args.device_batch, args.k, args.device_steps, args.rounds, runs, args.train_size
        )
    if args.part == "torch_proc":
        return part_torch_proc(
            args.device_batch, args.device_steps, args.rounds, args.ready, args.go
        )
    parts = set(args.parts.split(","))
    if args.skip_tests:
        parts.discard("tests")
    if importlib.util.find_spec("torch") is None and parts & {"torch", "torch_procs"}:
        print("PyTorch is not installed: the twin's parts are skipped (pip install torch).")
        parts -= {"torch", "torch_procs"}
    report: dict = {"argv": sys.argv[1:], "started": time.strftime("%Y-%m-%d %H:%M:%S UTC")}

    start = time.perf_counter()
    print("== devices")
    report["devices"] = _run([sys.executable, "-c", DEVICES], 300).stdout.strip()
    print(report["devices"])
    if shutil.which("nvidia-smi"):
        query = ["--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
        report["nvidia_smi"] = _run(["nvidia-smi", *query], 60).stdout.strip()
        print("nvidia-smi:", report["nvidia_smi"])
    else:
        print("nvidia-smi: not found (no NVIDIA GPU here: GPU-only figures are a smoke check)")

    if "tests" in parts:
        tests = SMOKE_TESTS if args.quick else TESTS
        print(f"\n== tests: {' '.join(tests)}")
        out = _run([sys.executable, "-m", "pytest", *tests, "-x", "-q", "-p", "no:warnings"], 1800)
        print("\n".join(out.stdout.strip().splitlines()[-15:]))
        report["tests"] = "passed" if out.returncode == 0 else f"failed ({out.returncode})"
        if out.returncode != 0:
            print(f"tests: FAILED (exit code {out.returncode})\n{out.stderr[-2000:]}")
        else:
            print("tests: all passed")

    rows = []
    if "ours" in parts or "torch" in parts:
        print(
            f"\n== timings: batch {args.batch_sizes}, median of {args.rounds} x {args.steps} steps"
        )
        rows = _timings("jax", args, 1800) if "ours" in parts else []
        rows += _timings("torch", args, 1800) if "torch" in parts else []
        torch_rate = {(r["dtype"], r["batch"]): r["steps_per_s"] for r in rows if r["impl"] == "-"}
        print(
            "| framework | device | conv_impl | dtype | batch | steps/s | images/s | vs PyTorch |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for r in sorted(rows, key=lambda r: (r["batch"], r["dtype"], r["framework"], r["impl"])):
            rate = r["steps_per_s"]
            twin = torch_rate.get((r["dtype"], r["batch"]))
            ratio = f"{rate / twin:.2f}x" if twin and r["framework"] == "jax" else "-"
            print(
                f"| {r['framework']} | {r['device']} | {r['impl']} | {r['dtype']} | {r['batch']} "
                f"| {rate:.2f} | {rate * r['batch']:.0f} | {ratio} |"
            )
    report["steps"] = rows

    whole = []
    if "device" in parts or "torch_procs" in parts:
        print(
            f"\n== the whole run on the device: batch {args.device_batch}, k = {args.k}, "
            f"runs {args.runs}, median of {args.rounds} x {args.device_steps} steps"
        )
        whole = _timings("device", args, 1200) if "device" in parts else []
        if "torch_procs" in parts:
            for count in sorted({1, *(int(n) for n in args.torch_procs.split(","))}):
                if row := torch_processes(count, args, 600):
                    whole.append(row)
        print("\n".join(_whole_run_table(whole)))
    report["whole_run"] = whole
    report["seconds"] = time.perf_counter() - start
    print(f"\ntotal: {report['seconds']:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
