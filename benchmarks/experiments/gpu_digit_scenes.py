"""The digit_scenes experiments (the README's 32x32 table) in one go on a GPU machine.

    python -m benchmarks.experiments.gpu_digit_scenes --raw_dir=<MNIST IDX folder> --out=<folder>
        [--seconds 420] [--runs svhn_l1pct_s1,...] [--smoke]

Accelerator machines set up for JAX alone often lack TensorFlow, which our loop needs only to
read tfds sets and to write TensorBoard events. This script renders digit_scenes in numpy
(`digit_scenes.render` with the tfds build's seed: the same bytes as the tfds set), passes those
arrays to `loop.train_and_evaluate(..., data=...)` (the public route for your own arrays), logs
metrics without TensorBoard where TensorFlow is absent, and otherwise runs the loop unchanged:
checkpoints, the judge, evaluation, sample grids.

1. Renders both splits once (every core) into <out>/data.
2. Trains the independent judge once (cached; every run reuses it).
3. Times the train step alone at batch 128 (steps/s, compile seconds).
4. Starts every run of --runs (default: all of RUNS but the opt-in SEARCH_RUNS, the paper's
   net and the Q_ss settings' sweep) as its own process, all on the one device, and sends SIGTERM
   to those still going at the deadline (the loop saves and stops, as on a preempted VM).
5. Packs each run's eval_history.jsonl, config.json, labelled subset, last sample grids and log
   tail into <out>/results.tar.gz.

`--report DIR` reads the <run>_eval_history.jsonl files in DIR (e.g. results/digit_scenes/*)
and prints the README's table (the last step, the best and the mean of the last four
evaluations) and plots direct accuracy against steps for the label sweep (DIR/label_sweep.png).

`--smoke` runs every phase tiny (a few hundred examples, a few steps) to check the script.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
import types

import numpy as np

from benchmarks import common

_INSTANCE_NOISE = {"instance_noise.stddev": 0.1, "instance_noise.decay": 0.9995}  # cifar10's
# name -> (configs/digit_scenes.py argument, overrides).
RUNS = {
    "svhn_l1pct_s1": ("svhn", {"seed": 1}),
    "svhn_l1pct_s2": ("svhn", {"seed": 2}),
    "celeba_l1pct_s1": ("celeba", {"seed": 1}),
    "celeba_l1pct_s2": ("celeba", {"seed": 2}),
    "svhn_l0_s1": ("svhn,infogan", {"seed": 1}),
    "svhn_l0_s2": ("svhn,infogan", {"seed": 2}),
    "svhn_l0.1pct_s1": ("svhn", {"seed": 1, "data.labeled_fraction": 0.001}),
    "svhn_l0.1pct_s2": ("svhn", {"seed": 2, "data.labeled_fraction": 0.001}),
    "svhn_l10pct_s1": ("svhn", {"seed": 1, "data.labeled_fraction": 0.1}),
    "svhn_l10pct_s2": ("svhn", {"seed": 2, "data.labeled_fraction": 0.1}),
    "svhn_l1pct_noise_s1": ("svhn", {"seed": 1, **_INSTANCE_NOISE}),
    "svhn_l1pct_noise_s2": ("svhn", {"seed": 2, **_INSTANCE_NOISE}),
}
# For comparison: the InfoGAN paper's net, with the recipe search of 2026-11-29 on it
# (histories in results/digit_scenes/infogan_32_h200), and Q_ss on D's trunk.
_LR = {"optimizer.g_learning_rate": 2e-4, "optimizer.d_learning_rate": 2e-4}
RUNS |= {
    "svhn_l1pct_infogan32_s1": ("svhn", {"seed": 1, **common.PAPER_NET}),
    "svhn_l1pct_infogan32_lr2e-4_s1": ("svhn", {"seed": 1, **common.PAPER_NET, **_LR}),
    "svhn_l1pct_sharedq_s1": ("svhn", {"seed": 1, **common.SHARED_Q}),
    "celeba_l1pct_sharedq_s1": ("celeba", {"seed": 1, **common.SHARED_Q}),
}
# Q_ss's settings against the configs' (on the CPU: `:celeba` at D's rate 1e-4 0.914 / 0.946
# mean binary at step 1,000 on seeds 1 / 2, against 0.956 / 0.964 at 3e-4; at 1e-3 it broke
# down at 1,000; `:svhn` without recolouring 0.88 / 0.73 at steps 1,000 / 1,500, seed 1,
# against 0.92 / 0.86).
RUNS |= {
    f"celeba_l1pct_qlr{name}_s{seed}": (
        "celeba",
        {"seed": seed, "optimizer.q_ss_learning_rate": rate},
    )
    for name, rate in (("1e-4", 1e-4), ("1e-3", 1e-3))
    for seed in (1, 2)
}
RUNS |= {
    f"svhn_l1pct_norecolour_s{seed}": ("svhn", {"seed": seed, "loss.q_ss_recolour": False})
    for seed in (1, 2)
}
SEARCH_RUNS = [name for name in RUNS if re.search("infogan32|_qlr|norecolour", name)]
DEFAULT_RUNS = [name for name in RUNS if name not in SEARCH_RUNS]


# ----------------------------------------------------------------------------------------------
# Running the loop without TensorFlow.


class _NoSummaries:
    """clu's TensorBoard writer, absent: scalars still go to the log and eval_history.jsonl."""

    def __init__(self, *args, **kwargs):
        pass

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def _without_tensorboard() -> None:
    """clu's metric writers import TensorFlow for TensorBoard, which accelerator machines set up
    for JAX alone often lack: stand in for it (our package reads arrays without TensorFlow)."""
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        summary_writer = types.ModuleType("clu.metric_writers.summary_writer")
        summary_writer.SummaryWriter = _NoSummaries
        sys.modules["clu.metric_writers.summary_writer"] = summary_writer


def scenes(data_dir: str, continuous_range: float):
    """The rendered splits as the loop's data (an ArraySource: the same bytes as the tfds set,
    in its order)."""
    from ssinfogan_jax.data import digit_scenes, sources

    splits = {}
    for split in ("train", "test"):
        with np.load(os.path.join(data_dir, f"{split}.npz")) as f:
            splits[split] = (f["image"], {name: f[name] for name in digit_scenes.LABELS})
    return sources.ArraySource(
        splits,
        name="digit_scenes",
        num_classes={k: v for k, v in digit_scenes.LABELS.items() if v},
        label_ranges={"rotation": digit_scenes.ROTATION_RANGE},
        continuous_range=continuous_range,
    )


def _data(args, config):
    return scenes(os.path.join(args.out, "data"), float(config.latents.continuous_range))


# ----------------------------------------------------------------------------------------------
# Phases.


def _render_chunk(args):
    from ssinfogan_jax.data import builders, digit_scenes

    raw_dir, split, start, stop, limit = args
    glyphs = builders.read_idx(raw_dir, f"{split}_images")[:limit]
    labels = builders.read_idx(raw_dir, f"{split}_labels")[:limit]
    return digit_scenes.render(
        glyphs, labels, digit_scenes.BUILD_SEED, split, indices=np.arange(start, stop)
    )


def render(raw_dir: str, data_dir: str, limit: int | None) -> None:
    from ssinfogan_jax.data import builders

    os.makedirs(data_dir, exist_ok=True)
    with concurrent.futures.ProcessPoolExecutor(max(os.cpu_count() or 1, 1)) as pool:
        for split in ("train", "test"):
            n = len(builders.read_idx(raw_dir, f"{split}_labels")[:limit])
            bounds = np.linspace(0, n, 33, dtype=int)
            jobs = [(raw_dir, split, a, b, limit) for a, b in itertools.pairwise(bounds) if b > a]
            parts = list(pool.map(_render_chunk, jobs))
            merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
            np.savez(os.path.join(data_dir, f"{split}.npz"), **merged)
            print(f"rendered {split}: {n} scenes", flush=True)


def make_config(run: str, args):
    from configs import digit_scenes as scenes_config

    arg, overrides = RUNS[run]
    config = scenes_config.get_config(arg + (",runlocal" if args.smoke else ""))
    config.update_from_flattened_dict(overrides)
    if args.smoke and config.data.num_labeled != 0:  # 400 rendered examples, not 60,000.
        config.data.num_labeled = 40
    config.eval.judge_dir = os.path.join(args.out, "judges")
    config.compilation_cache_dir = os.path.join(args.out, "xla_cache")
    if args.steps:
        config.num_train_steps = args.steps
    if not args.smoke:
        config.eval_every_steps = 500
        config.checkpoint_every_steps = 2_500
        config.images_every_steps = 0  # Grids at the end only.
    return config


def judge(args) -> None:
    """Trains (and caches) the judge that every run loads."""
    from ssinfogan_jax import evaluation, experiment

    start = time.perf_counter()
    config = make_config("svhn_l1pct_s1", args)
    exp = experiment.from_config(config, data=_data(args, config))
    judge = evaluation.judge_for(exp)
    print(f"judge ready in {time.perf_counter() - start:.0f} s: {judge.info}", flush=True)


def step_speed(args) -> None:
    """Steps/s of the train step alone (one device, batch 128) and its compile time."""
    import jax

    from ssinfogan_jax import experiment, input_pipeline, train

    config = make_config("svhn_l1pct_s1", args)
    config.batch_size = 128
    exp = experiment.from_config(config, data=_data(args, config))
    state = train.create_train_state(jax.random.PRNGKey(0), exp)
    step = jax.jit(train.bind_train_step(exp), donate_argnums=0)
    batch = input_pipeline.create_train_data(exp, None).batch(0)
    try:
        start = time.perf_counter()
        state, metrics = step(state, batch)
        jax.block_until_ready(metrics)
        compile_s = time.perf_counter() - start
        n = 20 if args.smoke else 300
        start = time.perf_counter()
        for _ in range(n):
            state, metrics = step(state, batch)
        jax.block_until_ready(metrics)
        rate = n / (time.perf_counter() - start)
        print(
            f"train step, batch 128, {jax.devices()[0].device_kind}: {rate:.1f} steps/s, "
            f"first call (compile) {compile_s:.1f} s",
            flush=True,
        )
    except Exception as e:  # The runs matter more than this figure.
        print(f"train step timing failed: {type(e).__name__}: {e}", flush=True)


def worker(run: str, args) -> None:
    """One run, then its sample grids (PNG) from the best checkpoint."""
    from ssinfogan_jax import exit_codes, loop

    config, workdir = make_config(run, args), os.path.join(args.out, "runs", run)
    data = _data(args, config)
    try:
        metrics = loop.train_and_evaluate(config, workdir, data=data)
        print("final:", json.dumps({k: float(v) for k, v in metrics.items()}), flush=True)
    except exit_codes.Preempted as e:
        print(f"stopped at the deadline: {e}", flush=True)
    print("samples:", loop.sample(config, workdir, data=data), flush=True)


def _child(args, *extra) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "benchmarks.experiments.gpu_digit_scenes",
        "--raw_dir",
        args.raw_dir,
    ]
    command += ["--out", args.out, "--steps", str(args.steps), *(["--smoke"] if args.smoke else [])]
    return [*command, *extra]


def runs(args, names: list[str], deadline: float) -> None:
    os.makedirs(os.path.join(args.out, "runs"), exist_ok=True)
    procs = {}
    for name in names:
        log = open(os.path.join(args.out, "runs", f"{name}.log"), "w")
        procs[name] = subprocess.Popen(
            _child(args, "--worker", name), stdout=log, stderr=subprocess.STDOUT, cwd=common.REPO
        )
    while any(p.poll() is None for p in procs.values()) and time.time() < deadline:
        time.sleep(5)
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for name, p in procs.items():
        try:
            code = p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            code = "killed"
        print(f"run {name}: exit {code}", flush=True)


def pack(args, names: list[str]) -> None:
    keep = re.compile(r"(eval_history\.jsonl|config\.json|labeled_subset\.json|.*\.png|.*\.log)$")
    with tarfile.open(os.path.join(args.out, "results.tar.gz"), "w:gz") as tar:
        for root, _, files in os.walk(os.path.join(args.out, "runs")):
            for f in files:
                if keep.match(f) and "checkpoints" not in root:
                    path = os.path.join(root, f)
                    tar.add(path, arcname=os.path.relpath(path, args.out))
        for f in ("phases.log",):
            if os.path.exists(os.path.join(args.out, f)):
                tar.add(os.path.join(args.out, f), arcname=f)


def report(folder: str) -> None:
    import glob

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    histories = {}
    for path in sorted(glob.glob(os.path.join(folder, "*_eval_history.jsonl"))):
        rows = common.read_history(path)
        histories[os.path.basename(path).removesuffix("_eval_history.jsonl")] = rows
    print("| run | steps | best direct (step) | last 4: direct | mapped | Q_ss test | Frechet |")
    print("|---|---|---|---|---|---|---|")
    for run, rows in histories.items():
        best = max(rows, key=lambda r: r["cond_acc_direct_mean"])
        last = {k: np.mean([r[k] for r in rows[-4:]]) for k in rows[-1] if k != "step"}
        print(
            f"| `{run}` | {rows[-1]['step']} | {best['cond_acc_direct_mean']:.3f} "
            f"({best['step']}) | {last['cond_acc_direct_mean']:.3f} | "
            f"{last['cond_acc_mapped']:.3f} | {last.get('q_ss_test_acc', float('nan')):.3f} | "
            f"{last['frechet_distance']:.0f} |"
        )
        per_code = {
            k.split("/")[1]: v
            for k, v in last.items()
            if k.startswith(("cond_acc_direct/", "cond_corr/"))
        }
        if len(per_code) > 2:
            print(
                "|  | per code, last 4: "
                + ", ".join(f"{k} {v:.3f}" for k, v in per_code.items())
                + " |"
            )
    fig, ax = plt.subplots(figsize=(6, 3.6))
    sweep = [("0", "l0"), ("0.1%", "l0.1pct"), ("1%", "l1pct"), ("10%", "l10pct")]
    for colour, (label, tag) in enumerate(sweep):
        for seed, style in ((1, ".-"), (2, "x--")):
            if rows := histories.get(f"svhn_{tag}_s{seed}"):
                ax.plot(
                    [r["step"] for r in rows],
                    [r["cond_acc_direct"] for r in rows],
                    style,
                    color=f"C{colour}",
                    label=f"{label}, seed {seed}",
                )
    ax.set(xlabel="step", ylabel="direct conditional accuracy", ylim=(0, 1))
    ax.set_title(f"digit_scenes :svhn, {os.path.basename(os.path.abspath(folder))}", fontsize=9)
    ax.legend(title="labels", fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(folder, "label_sweep.png"), dpi=100)
    print(f"wrote {os.path.join(folder, 'label_sweep.png')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--raw_dir")
    parser.add_argument("--out")
    parser.add_argument("--report", default="", help="a folder of eval histories to summarise")
    parser.add_argument("--seconds", type=float, default=420, help="wall-clock budget in all")
    parser.add_argument(
        "--steps", type=int, default=0, help="train steps per run (0: 10,000; --smoke: 6)"
    )
    parser.add_argument("--runs", default=",".join(DEFAULT_RUNS))
    parser.add_argument("--no_speed", action="store_true", help="skip timing the step alone")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--worker", default="")
    parser.add_argument("--phase", default="")
    args = parser.parse_args()
    if args.report:
        return report(args.report)
    if not (args.raw_dir and args.out):
        parser.error("--raw_dir and --out are required")
    args.out = os.path.abspath(args.out)
    if not args.steps and not args.smoke:
        args.steps = 10_000
    data_dir = os.path.join(args.out, "data")
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    _without_tensorboard()
    if args.worker or args.phase:
        if args.worker:
            worker(args.worker, args)
        else:
            {"judge": judge, "speed": step_speed}[args.phase](args)
        return

    deadline = time.time() + args.seconds
    names = args.runs.split(",")
    if unknown := [n for n in names if n not in RUNS]:
        parser.error(f"--runs: unknown {unknown}; known: {', '.join(RUNS)}")
    render(args.raw_dir, data_dir, 400 if args.smoke else None)
    for phase in ("judge",) if args.no_speed else ("judge", "speed"):
        subprocess.run(_child(args, "--phase", phase), cwd=common.REPO, check=phase == "judge")
    runs(args, names, deadline - 75)
    pack(args, names)
    print(f"packed {os.path.join(args.out, 'results.tar.gz')}", flush=True)


if __name__ == "__main__":
    main()
