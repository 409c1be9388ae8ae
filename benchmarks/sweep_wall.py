"""Wall time of N MNIST runs trained as one program against the same N one after the other.

    python -m benchmarks.sweep_wall [--runs "seed=1;seed=2;seed=3;seed=4"] [--steps 200]
        [--config configs/mnist.py] [--data_dir DIR] [--raw_dir DIR]

Both sides run as a user runs them, through `python -m ssinfogan_jax.main` (process start,
compile, training, the final evaluation, checkpoints): once with `--config.runs=...` (sweep.py:
the runs that share a program vmapped together), then each run's own command, one after the
other. The independent classifier is trained once beforehand (a 1-step run) and shared, and
every run evaluates once, at its end; MNIST is prepared offline from --raw_dir. Prints the wall
time of each side, their ratio, and each run's final direct conditional accuracy beside its
single-run twin's (the same run: equal to float rounding, see benchmarks/README.md), and the
peak resident memory of the program against that of the largest run alone.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from benchmarks import common


def _main(config: str, workdir: str, flags: list[str], log: str) -> tuple[float, float]:
    """Runs `main`; returns its wall time (s) and its peak resident memory (GB)."""
    command = [sys.executable, "-m", "ssinfogan_jax.main", f"--config={config}"]
    command += [f"--workdir={workdir}", *flags]
    start = time.perf_counter()
    with open(log, "a") as out:
        proc = subprocess.Popen(command, cwd=common.REPO, stdout=out, stderr=out)
        _, status, usage = os.wait4(proc.pid, 0)  # This child's own peak, not all children's.
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed ({status}); see {log}")
    return time.perf_counter() - start, usage.ru_maxrss / 2**20  # Linux: KiB.


def _accuracy(workdir: str, metric: str = "cond_acc_direct") -> float | None:
    rows = common.read_history(os.path.join(workdir, common.EVAL_HISTORY))
    return rows[-1].get(metric) if rows else None


def main() -> None:
    from ssinfogan_jax import sweep

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", default="seed=1;seed=2;seed=3;seed=4")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--config", default="configs/mnist.py")
    parser.add_argument("--data_dir", default="")
    parser.add_argument("--raw_dir", default=common.RAW_MNIST)
    parser.add_argument("--keep", default="", help="a folder to keep the work dirs in")
    args = parser.parse_args()
    print(f"{common.machine()}; {time.strftime('%Y-%m-%d %H:%M')} UTC")
    print(common.describe(common.measure()), flush=True)
    root = args.keep or tempfile.mkdtemp()
    data_dir = common.prepared_mnist(args.data_dir or os.path.join(root, "data"), args.raw_dir)
    log = os.path.join(root, "log.txt")
    flags = [
        f"--config.data.data_dir={data_dir}",
        f"--config.eval.judge_dir={os.path.join(root, 'judges')}",
        f"--config.compilation_cache_dir={os.path.join(root, 'xla')}",
        f"--config.num_train_steps={args.steps}",
        f"--config.log_every_steps={args.steps}",  # One log line and one checkpoint, at the end.
        f"--config.checkpoint_every_steps={args.steps}",
        "--config.eval_every_steps=0",
        "--config.images_every_steps=0",
        "--config.steps_per_dispatch=1",
    ]
    warm = [*flags, *(f"--config.{f}=1" for f in ("num_train_steps", "log_every_steps"))]
    warm.append("--config.checkpoint_every_steps=1")
    print(f"judge and caches: {_main(args.config, f'{root}/warm', warm, log)[0]:.0f} s", flush=True)
    names = sweep.run_name
    runs = sweep.parse_runs(args.runs)
    group_flags = [*flags, f"--config.runs={args.runs}"]
    group_s, group_gb = _main(args.config, f"{root}/group", group_flags, log)
    print(f"{len(runs)} runs as one program: {group_s:.0f} s, peak {group_gb:.2f} GB", flush=True)
    alone_s, alone_gb = 0.0, 0.0
    for overrides in runs:
        run_flags = [f"--config.{field}={value}" for field, value in overrides.items()]
        seconds, gb = _main(args.config, f"{root}/alone/{names(overrides)}", flags + run_flags, log)
        alone_s, alone_gb = alone_s + seconds, max(alone_gb, gb)
    print(f"the same {len(runs)} one after the other: {alone_s:.0f} s, peak {alone_gb:.2f} GB")
    result = {
        "runs": args.runs,
        "steps": args.steps,
        "group_s": group_s,
        "one_after_the_other_s": alone_s,
        "ratio": alone_s / group_s,
        "peak_gb": {"program": group_gb, "largest_run_alone": alone_gb},
        "accuracy": {
            names(o): [
                _accuracy(f"{root}/group/{names(o)}"),
                _accuracy(f"{root}/alone/{names(o)}"),
            ]
            for o in runs
        },
    }
    print(
        f"{args.steps} steps per run: {len(runs)} runs as one program {group_s:.0f} s, one "
        f"after the other {alone_s:.0f} s (x{alone_s / group_s:.2f} for the program)"
    )
    print(
        f"peak memory: the program {group_gb:.2f} GB, one run alone {alone_gb:.2f} GB "
        f"({(group_gb - alone_gb) / max(len(runs) - 1, 1):.2f} GB per further run)"
    )
    for name, (grouped, alone) in result["accuracy"].items():
        print(f"  {name}: cond_acc_direct in the program {grouped}, alone {alone}")
    print(common.describe(common.measure()))
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
