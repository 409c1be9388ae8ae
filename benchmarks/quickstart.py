"""The README's quick start, timed as a newcomer meets it: wall time and final accuracy.

    python -m benchmarks.quickstart [--seeds 1,2,3] [--warm] [--extra=--config.x=y ...]

Runs `python -m ssinfogan_jax.main --config=configs/digits.py --workdir=W` (the README's
command; `--config.seed=S` added for seeds other than the config's) as a subprocess, one seed
at a time, each with a fresh work dir and a fresh home directory, so that the independent
classifier's cache (~/tensorflow_datasets/ssinfogan_classifiers) and the XLA compilation
cache (~/.cache/ssinfogan_jax/xla) start empty, as on a new machine. `--warm` shares one home
between the seeds instead (the second run on a machine: judge and compiled code cached).

For each run it prints the wall time from starting the process to its exit, the final
`cond_acc_direct` it printed, the longest stretch without a line of output (progress shown
all the way?) and the machine's state (common.measure) measured just before and
just after: on a shared machine the wall time is only meaningful next to it.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from benchmarks import common

# --verbose: the judge's own log lines, which time its training (the default output says only
# that it trains first).
COMMAND = [sys.executable, "-m", "ssinfogan_jax.main", "--config=configs/digits.py", "--verbose"]
# The end summary's headline, in percent.
METRIC = re.compile(r"^direct conditional accuracy: ([0-9.]+)%", re.M)


def run_once(seed: int | None, home: str, extra: list[str], log_path: str) -> dict:
    """Runs the quick start once; returns wall time, accuracy, longest silence, phases."""
    workdir = tempfile.mkdtemp(prefix="ssinfogan_quickstart_")
    env = {k: v for k, v in os.environ.items() if k not in ("TFDS_DATA_DIR", "XDG_CACHE_HOME")}
    env["HOME"] = home
    command = [*COMMAND, f"--workdir={workdir}"]
    if seed is not None:
        command.append(f"--config.seed={seed}")
    command += extra
    lines: list[tuple[float, str]] = []
    start = time.perf_counter()
    proc = subprocess.Popen(
        command,
        cwd=common.REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def read():
        with open(log_path, "w") as log:
            for line in proc.stdout:
                lines.append((time.perf_counter() - start, line.rstrip("\n")))
                log.write(f"{lines[-1][0]:7.1f}s {lines[-1][1]}\n")
                log.flush()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    code = proc.wait()
    wall = time.perf_counter() - start
    reader.join()
    shutil.rmtree(workdir, ignore_errors=True)
    text = "\n".join(line for _, line in lines)
    if code != 0:
        raise RuntimeError(f"exit code {code}; output in {log_path}:\n{text[-3000:]}")
    found = METRIC.findall(text)
    times = [0.0] + [t for t, _ in lines] + [wall]
    silence = max(b - a for a, b in itertools.pairwise(times))

    def first(pattern: str) -> float | None:
        return next((t for t, line in lines if pattern in line), None)

    return {
        "wall": wall,
        "cond_acc_direct": float(found[-1]) / 100 if found else float("nan"),
        "silence": silence,
        "judge_start": first("Training the judge"),
        "judge_done": first("Judge on the train split"),
        "train_start": first("Training from step"),
    }


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="", help="comma-separated; '' = the config's seed")
    parser.add_argument("--warm", action="store_true", help="share one home (caches) between runs")
    parser.add_argument("--extra", action="append", default=[], help="an extra flag for main")
    parser.add_argument("--log_dir", default="", help="where each run's output goes")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()] or [None]
    log_dir = args.log_dir or tempfile.mkdtemp(prefix="ssinfogan_quickstart_logs_")
    os.makedirs(log_dir, exist_ok=True)
    shared_home = tempfile.mkdtemp(prefix="ssinfogan_home_") if args.warm else None
    print(f"command: {' '.join(COMMAND[1:])} --workdir=<fresh> {' '.join(args.extra)}")
    print(f"caches: {'shared between runs (warm after the first)' if args.warm else 'empty'}")
    print(f"logs: {log_dir}")
    print(
        "| seed | wall (s) | cond_acc_direct | judge trained in (s) | first step at (s) "
        "| longest silence (s) | machine before | machine after |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for seed in seeds:
        home = shared_home or tempfile.mkdtemp(prefix="ssinfogan_home_")
        before = common.describe(common.measure())
        log_path = os.path.join(log_dir, f"seed{seed}.log")
        r = run_once(seed, home, args.extra, log_path)
        after = common.describe(common.measure())
        judge = "cached"
        if r["judge_start"] is not None and r["judge_done"] is not None:
            judge = _fmt(r["judge_done"] - r["judge_start"])
        print(
            f"| {seed if seed is not None else 'config'} | {r['wall']:.1f} "
            f"| {r['cond_acc_direct']:.4f} | {judge} | {_fmt(r['train_start'])} "
            f"| {r['silence']:.1f} | {before} | {after} |",
            flush=True,
        )
        if shared_home is None:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
