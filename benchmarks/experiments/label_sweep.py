"""Labelled-fraction sweep on real MNIST: conditional accuracy against step for several label
counts, like the paper's Figure 3a.

  python -m benchmarks.experiments.label_sweep --labels=0,20,100,600,6000 --seeds=1 \
      --root=/tmp/sweep --out=benchmarks/experiments/results/label_sweep

Each (label count, seed) trains `configs/mnist.py` (`configs/mnist.py:infogan` for 0 labels)
in its own work dir under --root (a run that already finished is not repeated; an unfinished
one resumes), evaluating every --eval_every steps. Then writes <out>.csv (every evaluation of
every run), <out>.png (the independent classifier's conditional accuracy against step: direct
for labelled runs, mapped for the 0-label InfoGAN baseline) and prints a Markdown table for
the README. `--collect_only` skips training and only aggregates what is there.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys

from absl import app, flags

from benchmarks import common

_LABELS = flags.DEFINE_list("labels", ["0", "20", "100", "600", "6000"], "Label counts.")
_SEEDS = flags.DEFINE_list("seeds", ["1"], "Training seeds.")
_ROOT = flags.DEFINE_string("root", "/tmp/ssinfogan_sweep", "Parent of the runs' work dirs.")
_OUT = flags.DEFINE_string(
    "out", "benchmarks/experiments/results/label_sweep", "Output path prefix."
)
_STEPS = flags.DEFINE_integer("steps", 5_000, "Training iterations per run.")
_EVAL_EVERY = flags.DEFINE_integer("eval_every", 250, "Evaluate every this many steps.")
_COLLECT_ONLY = flags.DEFINE_bool("collect_only", False, "Only aggregate existing runs.")
_EXTRA = flags.DEFINE_multi_string("override", [], "Extra --config.x=y overrides for runs.")


def run_dir(labels: int, seed: int) -> str:
    return os.path.join(_ROOT.value, f"mnist_l{labels}_s{seed}")


def read_history(workdir: str) -> list[dict]:
    return common.read_history(os.path.join(workdir, common.EVAL_HISTORY))


def train(labels: int, seed: int) -> None:
    workdir = run_dir(labels, seed)
    history = read_history(workdir)
    if history and history[-1]["step"] >= _STEPS.value:
        print(f"{workdir}: already finished")
        return
    command = [
        sys.executable,
        "-m",
        "ssinfogan_jax.main",
        # The unsupervised baseline has its own preset (InfoGAN plus the consistency loss).
        "--config=configs/mnist.py" + (":infogan" if labels == 0 else ""),
        f"--workdir={workdir}",
        f"--config.data.num_labeled={labels}",
        f"--config.seed={seed}",
        f"--config.num_train_steps={_STEPS.value}",
        f"--config.eval_every_steps={_EVAL_EVERY.value}",
        *[f"--config.{o}" for o in _EXTRA.value],
    ]
    print(" ".join(command), flush=True)
    subprocess.run(command, check=True)


def score(row: dict, labels: int) -> float:
    """The accuracy that matters: direct with labels, mapped without (InfoGAN)."""
    return row["cond_acc_mapped"] if labels == 0 else row["cond_acc_direct"]


def formatted_score(row: dict | None, labels: int) -> str:
    return f"{score(row, labels):.4f}" if row else "-"


def first_step_at(history: list[dict], labels: int, threshold: float) -> int | None:
    return next((r["step"] for r in history if score(r, labels) >= threshold), None)


def at_step(history: list[dict], step: int) -> dict | None:
    return next((r for r in history if r["step"] == step), None)


def main(argv):
    del argv
    runs = [(int(n), int(s)) for n in _LABELS.value for s in _SEEDS.value]
    if not _COLLECT_ONLY.value:
        for labels, seed in runs:
            train(labels, seed)

    os.makedirs(os.path.dirname(_OUT.value) or ".", exist_ok=True)
    histories = {run: read_history(run_dir(*run)) for run in runs}
    fields = [
        "labels",
        "seed",
        "step",
        "cond_acc_direct",
        "cond_acc_mapped",
        "q_ss_test_acc",
        "frechet_distance",
        "mi_lower_bound",
    ]
    with open(f"{_OUT.value}.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(fields)
        for (labels, seed), history in histories.items():
            for row in history:
                writer.writerow([labels, seed] + [row.get(k, "") for k in fields[2:]])

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for (labels, seed), history in histories.items():
        if history:
            kind = "mapped, InfoGAN" if labels == 0 else "direct"
            for ax in axes:
                ax.plot(
                    [r["step"] for r in history],
                    [score(r, labels) for r in history],
                    marker=".",
                    label=f"{labels} labels, seed {seed} ({kind})",
                )
    for ax, low in zip(axes, (0.0, 0.8), strict=True):
        ax.set_xlabel("training iteration")
        ax.set_ylim(low, 1)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("conditional accuracy (independent classifier)")
    axes[0].legend(fontsize=8)
    axes[0].set_title("ss-InfoGAN on MNIST: c_ss control against labelled examples")
    axes[1].set_title("the same, from 0.8")
    fig.tight_layout()
    fig.savefig(f"{_OUT.value}.png", dpi=120)

    print(
        "| labels | seed | acc @1,000 | acc @2,000 | acc @5,000 | last (step) | best (step) | "
        "first step >= 90% | first step >= 95% | Q_ss test acc | Frechet (classifier features) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for (labels, seed), history in histories.items():
        if not history:
            continue
        last = history[-1]
        best = max(history, key=lambda r: score(r, labels))
        print(
            f"| {labels} | {seed} | "
            + " | ".join(formatted_score(at_step(history, s), labels) for s in (1000, 2000, 5000))
            + f" | {formatted_score(last, labels)} ({last['step']:,}) | "
            f"{formatted_score(best, labels)} ({best['step']:,}) | "
            f"{first_step_at(history, labels, 0.9) or '-'} | "
            f"{first_step_at(history, labels, 0.95) or '-'} | "
            f"{last.get('q_ss_test_acc', float('nan')):.4f} | "
            f"{last.get('frechet_distance', float('nan')):.2f} |"
        )
    print(f"wrote {_OUT.value}.csv and {_OUT.value}.png")


if __name__ == "__main__":
    app.run(main)
