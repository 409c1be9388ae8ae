"""Time to accuracy on MNIST with 100 labels: ours against the PyTorch twin, same judge.

    python -m benchmarks.time_to_accuracy [--max_steps 5000] [--eval_every 250]
        [--frameworks jax,torch] [--thresholds 0.95,0.98]
    python -m benchmarks.time_to_accuracy --max_steps 20 --eval_every 10 --judge_steps 50
        # a smoke check (minutes): both runs start, evaluate and are timed

The figure a user feels: wall time from the training process's start until the independent
judge first sees >= 95% (and >= 98%) direct conditional accuracy (code value k drawn as digit
k), for
- ours: `python -m ssinfogan_jax.main --config=configs/mnist.py --config.data.num_labeled=100`
  as a subprocess; its `<workdir>/eval_history.jsonl` is read as it is written;
- the PyTorch twin (common.TorchRunner, the network and update that benchmarks/pytorch_twin.py
  times) running the reference recipe (configs/default.py: labelled batches with probability
  1 - 0.1 per 100 steps down to the true fraction, no shifts, Q_ss on reals only), 100 labels
  stratified (10 per class), evaluated the same way: 128 samples per code value from G in eval
  mode, judged by the same classifier, at the same cadence.

The judge is the independent classifier of ssinfogan_jax/evaluation/classifier.py, found as
`evaluation.judge_for` finds it (<data_dir>/ssinfogan_classifiers/...); it is trained
and cached before either timed run starts, so neither pays for it. Both load MNIST through
the project's input pipeline (prepared from `--raw_dir` into `--data_dir` if needed, also
before the timed runs). Each run is one process, one at a time; the clock starts just before
the process is started and a threshold's time is when this process first reads its line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from benchmarks import common
from ssinfogan_jax import exit_codes

LABELS = 100


def _config(args):
    from configs import mnist

    config = mnist.get_config()
    config.data.num_labeled = args.labels
    config.data.data_dir = args.data_dir
    config.data.raw_dir = args.raw_dir
    config.eval.judge_steps = args.judge_steps
    return config


def prepare(args) -> str:
    """Prepares the data set and the cached judge (untimed); returns the judge's path."""
    from ssinfogan_jax import evaluation, experiment

    config = _config(args)
    common.prepared_mnist(args.data_dir, args.raw_dir)
    exp = experiment.from_config(config)
    classifier = evaluation.judge_for(exp)
    print(f"judge: validation accuracy {classifier.val_accuracy}", flush=True)
    return evaluation.judge.cache_path(exp, {"label": 10})


def _jax_command(args, workdir: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "ssinfogan_jax.main",
        "--config=configs/mnist.py",
        f"--workdir={workdir}",
        f"--config.data.num_labeled={args.labels}",
        f"--config.data.data_dir={args.data_dir}",
        f"--config.data.raw_dir={args.raw_dir}",
        f"--config.eval.judge_steps={args.judge_steps}",
        f"--config.seed={args.seed}",
        f"--config.num_train_steps={args.max_steps}",
        f"--config.eval_every_steps={args.eval_every}",
    ]


def _torch_command(args, workdir: str, judge: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "benchmarks.time_to_accuracy",
        "--twin_worker",
        f"--workdir={workdir}",
        f"--judge={judge}",
        f"--labels={args.labels}",
        f"--data_dir={args.data_dir}",
        f"--raw_dir={args.raw_dir}",
        f"--judge_steps={args.judge_steps}",
        f"--seed={args.seed}",
        f"--max_steps={args.max_steps}",
        f"--eval_every={args.eval_every}",
    ]


def timed_run(command: list[str], workdir: str, thresholds: list[float], log: str) -> dict:
    """Runs `command`, watching <workdir>/eval_history.jsonl; stops it once every threshold
    is reached. Returns {threshold: (seconds, step) or None, 'history': rows, 'wall_s'}."""
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, common.EVAL_HISTORY)
    if os.path.exists(path):
        os.remove(path)
    reached: dict[float, tuple[float, int] | None] = dict.fromkeys(thresholds)
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(command, cwd=common.REPO, stdout=out, stderr=subprocess.STDOUT)
        try:
            rows = _watch(proc, path, thresholds, reached, start)
        finally:  # Also on a timeout or Ctrl-C of this process: never leave the run behind.
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
    # PREEMPTED: our main saved and exited on the SIGTERM that ended it (every threshold met).
    if proc.returncode not in (0, -15, exit_codes.PREEMPTED):
        raise RuntimeError(f"{command[:3]} exited with {proc.returncode}; see {log}")
    return {**reached, "history": rows, "wall_s": time.perf_counter() - start}


def _watch(proc, path: str, thresholds: list[float], reached: dict, start: float) -> list[dict]:
    """Polls the history until the run ends or every threshold is reached (fills `reached`)."""
    seen, rows = 0, []
    while True:
        done = proc.poll() is not None
        rows = common.read_history(path)
        now = time.perf_counter() - start
        for row in rows[seen:]:
            acc = row.get("cond_acc_direct")
            print(f"  {now:7.1f} s  step {row['step']}: cond_acc_direct {acc}", flush=True)
            for t in thresholds:
                if reached[t] is None and acc is not None and acc >= t:
                    reached[t] = (now, int(row["step"]))
        seen = len(rows)
        if done or all(v is not None for v in reached.values()):
            return rows
        time.sleep(0.2)


# ----------------------------------------------------------------------------------------------
# The PyTorch twin's training run (its own process).


def twin_worker(args) -> None:
    import numpy as np
    import torch
    from torch.nn import functional as F

    from ssinfogan_jax import evaluation, experiment

    config = _config(args)
    images, labels = experiment.data_source(config).load_float("train")  # [N, 28, 28, 1] in [0, 1].
    labels = labels["label"]
    images = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    judge = evaluation.load(args.judge)
    rng = np.random.default_rng(config.data.labeled_seed)
    per_class = args.labels // common.TWIN_CLASSES
    labeled = np.concatenate(
        [rng.choice(np.flatnonzero(labels == k), per_class, replace=False) for k in range(10)]
    )
    labels = torch.from_numpy(labels.astype(np.int64))
    true_fraction = len(labeled) / len(images)

    runner = common.TorchRunner(config.batch_size, seed=args.seed)
    g = runner.g
    batch_rng = np.random.default_rng(args.seed)
    eval_gen = torch.Generator().manual_seed(0)
    path = os.path.join(args.workdir, common.EVAL_HISTORY)
    b = config.batch_size
    for step in range(1, args.max_steps + 1):
        # Reference schedule (section 8): p = 1.0 - 0.1 per 100 steps, down to the true fraction.
        p = max(true_fraction, 1.0 - 0.1 * ((step - 1) // 100))
        is_labeled = batch_rng.random() < p
        if is_labeled:
            index = batch_rng.choice(labeled, b, replace=True)
        else:
            index = batch_rng.choice(len(images), b, replace=False)
        index = torch.from_numpy(index)
        runner.images, runner.labels = images[index], labels[index]
        runner.supervised = is_labeled
        runner.step()
        if step % args.eval_every == 0 or step == args.max_steps:
            g.eval()
            with torch.no_grad():
                correct = []
                for k in range(common.TWIN_CLASSES):
                    n = config.eval.samples_per_value
                    c_us = torch.rand(n, common.TWIN_CONT, generator=eval_gen) * 2 - 1
                    noise = torch.randn(n, common.TWIN_NOISE, generator=eval_gen)
                    one_hot = F.one_hot(torch.full((n,), k), common.TWIN_CLASSES).float()
                    fake = g(torch.cat([one_hot, c_us, noise], 1)).permute(0, 2, 3, 1).numpy()
                    correct.append(np.mean(judge.predict_classes(fake) == k))
            g.train()
            with open(path, "a") as f:
                f.write(json.dumps({"step": step, "cond_acc_direct": float(np.mean(correct))}))
                f.write("\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frameworks", default="jax,torch")
    parser.add_argument("--thresholds", default="0.95,0.98")
    parser.add_argument("--max_steps", type=int, default=5_000)
    parser.add_argument("--eval_every", type=int, default=250)
    parser.add_argument("--labels", type=int, default=LABELS)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--judge_steps", type=int, default=2_000, help="the judge's")
    parser.add_argument("--root", default="/tmp/ssinfogan_time_to_accuracy")
    parser.add_argument("--data_dir", default=os.path.expanduser("~/tensorflow_datasets"))
    parser.add_argument("--raw_dir", default=common.RAW_MNIST)
    parser.add_argument("--twin_worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--judge", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.twin_worker:
        twin_worker(args)
        return

    thresholds = [float(t) for t in args.thresholds.split(",")]
    judge = prepare(args)
    results = {}
    for framework in args.frameworks.split(","):
        workdir = os.path.join(args.root, f"{framework}_l{args.labels}_s{args.seed}")
        if framework == "jax":
            command = _jax_command(args, workdir)
        elif framework == "torch":
            command = _torch_command(args, workdir, judge)
        else:
            parser.error(f"--frameworks: unknown {framework!r}")
        state = common.measure()
        print(f"{framework}: {' '.join(command)}\n  {common.describe(state)}", flush=True)
        results[framework] = timed_run(command, workdir, thresholds, workdir + ".log")
        results[framework]["state"] = state

    print()
    heads = " | ".join(f"time to {t:.0%} (step)" for t in thresholds)
    print(f"| run | {heads} | last evaluation | wall s | GEMM roof GFLOP/s | memory GB/s |")
    print("|---" * (5 + len(thresholds)) + "|")
    names = {"jax": "ours, configs/mnist.py", "torch": "PyTorch twin, reference recipe"}
    for framework, res in results.items():
        cells = " | ".join(
            f"{res[t][0]:.0f} s ({res[t][1]})" if res[t] else "not reached" for t in thresholds
        )
        last = res["history"][-1] if res["history"] else {}
        last_text = f"{last.get('cond_acc_direct', float('nan')):.3f} at {last.get('step', '-')}"
        state = res["state"]
        print(
            f"| {names[framework]} | {cells} | {last_text} | {res['wall_s']:.0f} "
            f"| {state['gemm_gflops']:.0f} | {state['memory_gbs']:.1f} |"
        )


if __name__ == "__main__":
    main()
