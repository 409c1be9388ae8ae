"""The paper's Fig. 3 on real MNIST as one program, against each run trained alone (issue 35).

  python -m benchmarks.experiments.fig3_sweep --root=/tmp/fig3 --part=sweep   # resumable
  python -m benchmarks.experiments.fig3_sweep --root=/tmp/fig3 --part=twins   # resumable
  python -m benchmarks.experiments.fig3_sweep --root=/tmp/fig3 --part=report

`sweep` trains `configs/mnist.py:sweep` (0, 20, 100 and 600 labels on seeds 1-3, 5,000 steps
each) through `python -m ssinfogan_jax.main` in <root>/sweep; `twins` trains each of its runs
alone, the same command with `--config.runs=` and the run's overrides, in <root>/twins/<run>.
MNIST is prepared offline in <root>/data once (the judge is trained there once and shared).
Both parts resume where they stopped: a SIGTERM to this driver goes to the training process,
which saves its step and exits 75, and the driver exits 75 too. Each process it starts is one
segment in <root>/wall.jsonl (its part, run, start, seconds, exit code, steps before and after,
load average), so a sweep spread over several sittings still adds up to its wall time.

`report` prints and writes <root>/fig3_report.json: the wall time of each part (the sum of its
segments), every run's conditional accuracy at each evaluation in the program and alone (direct;
under the best map of values to digits for 0 labels), the largest difference between the two,
and per label count the mean and range over seeds at a few steps and the first step at >= 0.9.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from absl import app, flags

from benchmarks import common

_ROOT = flags.DEFINE_string("root", "/tmp/fig3", "Parent of the data, the sweep and the twins.")
_PART = flags.DEFINE_enum("part", "report", ["sweep", "twins", "report"], "What to do.")
_RAW = flags.DEFINE_string("raw_dir", common.RAW_MNIST, "MNIST's IDX files (prepared offline).")

CONFIG = "configs/mnist.py:sweep"
WALL = "wall.jsonl"
REPORT_STEPS = (600, 1_000, 2_000, 5_000)


def _preset():
    from ssinfogan_jax import default_config

    return default_config.shipped_config("mnist").get_config("sweep")


def _runs() -> dict[str, dict[str, str]]:
    """{run name: its overrides} of the preset, in its order."""
    from ssinfogan_jax import sweep

    return {sweep.run_name(o): o for o in sweep.parse_runs(_preset().runs)}


def _num_train_steps() -> int:
    return _preset().num_train_steps


def _latest_step(workdir: str) -> int:
    folder = os.path.join(workdir, "checkpoints")
    steps = [int(d) for d in os.listdir(folder) if d.isdigit()] if os.path.isdir(folder) else []
    return max(steps, default=0)


def _train(part: str, run: str, workdir: str, flags_: list[str], step_dirs: list[str]) -> int:
    """One segment: `main` on `workdir` until it exits; a SIGTERM here is passed on."""
    root = _ROOT.value
    command = [sys.executable, "-m", "ssinfogan_jax.main", f"--config={CONFIG}"]
    command += [f"--workdir={workdir}", f"--config.data.data_dir={root}/data", *flags_]
    before = {d: _latest_step(d) for d in step_dirs}
    began, load = time.time(), os.getloadavg()[0]
    with open(os.path.join(root, f"{part}.log"), "a") as log:
        proc = subprocess.Popen(command, cwd=common.REPO, stdout=log, stderr=log)
        previous = signal.signal(signal.SIGTERM, lambda *_: proc.send_signal(signal.SIGTERM))
        try:
            code = proc.wait()
        finally:
            signal.signal(signal.SIGTERM, previous)
    row = {
        "part": part,
        "run": run,
        "began": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(began)),
        "seconds": round(time.time() - began, 1),
        "exit": code,
        "steps": [[before[d], _latest_step(d)] for d in step_dirs],
        "load": [round(load, 2), round(os.getloadavg()[0], 2)],
    }
    with open(os.path.join(root, WALL), "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)
    return code


def _finished(workdir: str) -> bool:
    return _latest_step(workdir) >= _num_train_steps()


def train_sweep() -> int:
    workdir = os.path.join(_ROOT.value, "sweep")
    runs = [os.path.join(workdir, name) for name in _runs()]
    if all(_finished(r) for r in runs):
        print(f"{workdir}: finished", flush=True)
        return 0
    return _train("sweep", "", workdir, [], runs)


def train_twins() -> int:
    for name, overrides in _runs().items():
        workdir = os.path.join(_ROOT.value, "twins", name)
        if _finished(workdir):
            continue
        flags_ = ["--config.runs="]
        flags_ += [f"--config.{field}={value}" for field, value in overrides.items()]
        code = _train("twins", name, workdir, flags_, [workdir])
        if code:
            return code
    return 0


def _curve(workdir: str, labelled: bool) -> dict[int, float]:
    from ssinfogan_jax import sweep

    metric = sweep.curve_metric(labelled)
    rows = common.read_history(os.path.join(workdir, common.EVAL_HISTORY))
    return {row["step"]: row[metric] for row in rows if metric in row}


def report() -> dict:
    root = _ROOT.value
    segments = []
    if os.path.exists(os.path.join(root, WALL)):
        with open(os.path.join(root, WALL)) as f:
            segments = [json.loads(line) for line in f if line.strip()]
    wall = {
        part: {
            "seconds": sum(s["seconds"] for s in segments if s["part"] == part),
            "segments": sum(s["part"] == part for s in segments),
        }
        for part in ("sweep", "twins")
    }
    runs, by_count = {}, {}
    for name, overrides in _runs().items():
        count = int(overrides["data.num_labeled"])
        grouped = _curve(os.path.join(root, "sweep", name), count > 0)
        alone = _curve(os.path.join(root, "twins", name), count > 0)
        shared = sorted(set(grouped) & set(alone))
        runs[name] = {
            "in_program": grouped,
            "alone": alone,
            "max_difference": max((abs(grouped[s] - alone[s]) for s in shared), default=None),
            "steps_compared": len(shared),
        }
        by_count.setdefault(count, []).append(grouped)
    summary = {}
    for count, curves in sorted(by_count.items()):
        row = {}
        for step in REPORT_STEPS:
            values = [c[step] for c in curves if step in c]
            if values:
                row[str(step)] = [sum(values) / len(values), min(values), max(values)]
        firsts = [min((s for s, v in c.items() if v >= 0.9), default=None) for c in curves]
        row["first_step_at_0.9"] = firsts
        summary[count] = row
    result = {
        "machine": common.machine(),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "wall": wall,
        "by_label_count": summary,
        "runs": runs,
    }
    for part, w in wall.items():
        hours = w["seconds"] / 3600
        print(f"{part}: {hours:.2f} h ({w['seconds']:.0f} s) in {w['segments']} segment(s)")
    print("| labels | " + " | ".join(f"step {s}" for s in REPORT_STEPS) + " | first >= 0.9 |")
    print("|---" * (len(REPORT_STEPS) + 2) + "|")
    for count, row in summary.items():
        cells = [
            f"{row[str(s)][0]:.3f} ({row[str(s)][1]:.3f}-{row[str(s)][2]:.3f})"
            if str(s) in row
            else "-"
            for s in REPORT_STEPS
        ]
        print(f"| {count} | " + " | ".join(cells) + f" | {row['first_step_at_0.9']} |")
    for name, r in runs.items():
        compared, diff = r["steps_compared"], r["max_difference"]
        print(f"  {name}: {compared} evaluations in both, largest difference {diff}")
    with open(os.path.join(root, "fig3_report.json"), "w") as f:
        json.dump(result, f, indent=1)
    return result


def main(argv) -> None:
    del argv
    os.makedirs(_ROOT.value, exist_ok=True)
    if _PART.value == "report":
        report()
        return
    common.prepared_mnist(os.path.join(_ROOT.value, "data"), _RAW.value)
    code = train_sweep() if _PART.value == "sweep" else train_twins()
    sys.exit(code)


if __name__ == "__main__":
    app.run(main)
