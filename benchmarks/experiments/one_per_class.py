"""MNIST with ten labels, one per class (issue 36 part 1): `configs/mnist.py:one_per_class` on
every training seed times labelled-subset seed, one run after another.

  python -m benchmarks.experiments.one_per_class --seeds=1,2,3 --labeled_seeds=1,2 \
      --root=/tmp/one_per_class

Each (labelled-subset seed, seed) trains in <root>/l<labeled_seed>_s<seed> (a finished run is
not repeated; an unfinished one resumes), with MNIST prepared once, offline, in <root>/data
(the judge is trained once there and cached). Each run's wall time and the machine's load
average before and after go to <run>/driver.json. `--override=x=y` adds `--config.x=y` to every
run (a recipe change under test; give it its own --root). Each run's ten labelled digits go
to <run>/labeled.png. Then, for each finished run, each kept checkpoint is judged again per
class (the evaluation's own samples: 1,024 per value, the same key, the same judge;
<run>/per_class.json), and a Markdown table is printed: direct conditional accuracy at each
evaluation, the weakest class at the last and what the judge read it as, and the worst run.
`--collect_only` skips training; `--typicality` only prints, for each labelled digit, how far
it lies from its class's test digits in the judge's features (an atypical one may mislead
Q_ss).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time

from absl import app, flags

from benchmarks import common

_SEEDS = flags.DEFINE_list("seeds", ["1", "2", "3"], "Training seeds.")
_LABELED_SEEDS = flags.DEFINE_list("labeled_seeds", ["1", "2"], "Labelled-subset seeds.")
_ROOT = flags.DEFINE_string("root", "/tmp/one_per_class", "Parent of the runs and the data.")
_COLLECT_ONLY = flags.DEFINE_bool("collect_only", False, "Only print what the runs wrote.")
_EXTRA = flags.DEFINE_multi_string("override", [], "Extra --config.x=y overrides for runs.")
_TYPICALITY = flags.DEFINE_bool(
    "typicality", False, "Only say how typical each subset's labelled digits are, and stop."
)

STEPS = (1_000, 2_000, 3_000)  # The preset's evaluations.
DRIVER_RECORD = "driver.json"
PER_CLASS = "per_class.json"


def run_dir(labeled_seed: int, seed: int) -> str:
    return os.path.join(_ROOT.value, f"l{labeled_seed}_s{seed}")


def load() -> float:
    return os.getloadavg()[0]


def train(labeled_seed: int, seed: int, data_dir: str) -> None:
    workdir = run_dir(labeled_seed, seed)
    history = common.read_history(os.path.join(workdir, common.EVAL_HISTORY))
    if history and history[-1]["step"] >= STEPS[-1]:
        print(f"{workdir}: already finished", flush=True)
        return
    command = [
        sys.executable,
        "-m",
        "ssinfogan_jax.main",
        "--config=configs/mnist.py:one_per_class",
        f"--workdir={workdir}",
        f"--config.data.data_dir={data_dir}",
        "--config.data.download=never",
        f"--config.data.labeled_seed={labeled_seed}",
        f"--config.seed={seed}",
        *[f"--config.{o}" for o in _EXTRA.value],
    ]
    print(" ".join(command), flush=True)
    record = {"command": command, "load_before": load(), "start": time.time()}
    subprocess.run(command, check=True, cwd=common.REPO)
    record.update(end=time.time(), load_after=load())
    record["wall_s"] = record["end"] - record["start"]
    with open(os.path.join(workdir, DRIVER_RECORD), "w") as f:
        json.dump(record, f, indent=1)


def run_config(labeled_seed: int, seed: int):
    """The config a run trained with: the preset and the driver's overrides."""
    from configs import mnist

    config = mnist.get_config("one_per_class")
    config.data.data_dir = os.path.join(_ROOT.value, "data")
    config.data.download = "never"
    config.data.labeled_seed, config.seed = labeled_seed, seed
    for override in _EXTRA.value:
        name, value = override.split("=", 1)
        *parents, leaf = name.split(".")
        node = config
        for parent in parents:
            node = node[parent]
        try:
            node[leaf] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            node[leaf] = value
    return config


def save_labelled(labeled_seed: int, seed: int) -> str:
    """<run>/labeled.png: the run's labelled digits in class order, 4x, each under its label."""
    import numpy as np

    from ssinfogan_jax import experiment
    from ssinfogan_jax.data import labeled_subset
    from ssinfogan_jax.evaluation import images

    workdir = run_dir(labeled_seed, seed)
    exp = experiment.from_config(run_config(labeled_seed, seed))
    train_images, train_labels = exp.source.load_float("train")
    indices = labeled_subset.choose(exp.subset, train_labels, exp.num_labeled)  # As the run's.
    chosen = indices[np.argsort(train_labels["label"][indices])]
    grid = images.make_grid(train_images[chosen], rows=1, value_range=exp.arch.image_range)
    names = [str(train_labels["label"][i]) for i in chosen]
    labelled = images.with_labels(grid, train_images.shape[1:3], cols=names)
    images.save_image(os.path.join(workdir, "labeled.png"), labelled.repeat(4, 0).repeat(4, 1))
    return os.path.join(workdir, "labeled.png")


def per_class(labeled_seed: int, seed: int) -> dict:
    """{step: {per_class, confusion, direct}} of each kept checkpoint of a finished run, judged
    as its evaluation judged it (cached in <run>/per_class.json), and <run>/labeled.png."""
    workdir = run_dir(labeled_seed, seed)
    path = os.path.join(workdir, PER_CLASS)
    if os.path.exists(path):
        return json.load(open(path))
    import functools

    import jax

    from ssinfogan_jax import checkpointing, evaluation, experiment, train
    from ssinfogan_jax.evaluation import metrics, sampling

    exp = experiment.from_config(run_config(labeled_seed, seed))
    template = train.create_train_state(jax.random.PRNGKey(exp.seed), exp)
    evaluator = evaluation.make_evaluator(exp)
    clf, code = evaluator.classifier, evaluator.code
    judge = functools.partial(clf.predict, head=code.label) if clf.heads else clf.predict
    generate = sampling.make_generate_fn(exp.models()[0], exp.layout)
    checkpointer = checkpointing.Checkpointer(workdir, len(STEPS), read_only=True)
    result = {}
    try:
        for step in checkpointer.all_steps():
            state, _ = checkpointer.restore(template, step=step)
            samples = metrics.conditional_samples(
                generate(train.generator_variables(state)),
                exp.layout,
                code.name,
                exp.eval.samples_per_value,
                jax.random.fold_in(evaluator.rng, 1),  # The evaluation's key for this code.
                256,
            )
            accuracy = metrics.classify_conditional(samples, judge)
            result[str(step)] = {
                "direct": accuracy.direct,
                "per_class": accuracy.per_value_direct.tolist(),
                "confusion": accuracy.confusion.tolist(),
            }
    finally:
        checkpointer.close()
    with open(path, "w") as f:
        json.dump(result, f)
    return result


def typicality(labeled_seed: int) -> list[str]:
    """One line per labelled digit of a subset: in the judge's features, the share of its
    class's test digits nearer their class centre than it is, and the nearest centres."""
    import numpy as np

    from ssinfogan_jax import evaluation, experiment
    from ssinfogan_jax.data import labeled_subset

    exp = experiment.from_config(run_config(labeled_seed, 1))
    train_images, train_labels = exp.source.load_float("train")
    evaluator = evaluation.make_evaluator(exp)
    judge, test_labels = evaluator.classifier, evaluator.test_labels["label"]
    indices = labeled_subset.choose(exp.subset, train_labels, exp.num_labeled)
    indices = indices[np.argsort(train_labels["label"][indices])]
    test_features = judge.features(evaluator.test_images)
    centres = np.stack([test_features[test_labels == k].mean(0) for k in range(10)])
    read = np.asarray(judge.predict(train_images[indices])).argmax(-1)
    lines = []
    features_of = judge.features(train_images[indices])
    for i, features, judged in zip(indices, features_of, read, strict=True):
        k = int(train_labels["label"][i])
        distances = np.linalg.norm(centres - features, axis=1)
        own = np.linalg.norm(test_features[test_labels == k] - centres[k], axis=1)
        nearest = np.argsort(distances)[:3].tolist()
        lines.append(
            f"subset {labeled_seed}, class {k} (train index {i}): the judge reads {judged}; "
            f"farther from its class centre than {np.mean(own < distances[k]):.0%} of its "
            f"test digits; nearest centres {nearest}"
        )
    return lines


def main(argv):
    del argv
    if _TYPICALITY.value:
        for labeled_seed in _LABELED_SEEDS.value:
            print("\n".join(typicality(int(labeled_seed))))
        return
    # Seed by seed, both subsets each: a queue cut short has still seen every subset.
    runs = [(int(lab), int(s)) for s in _SEEDS.value for lab in _LABELED_SEEDS.value]
    data_dir = os.path.join(_ROOT.value, "data")
    if not _COLLECT_ONLY.value:
        common.prepared_mnist(data_dir)
        for labeled_seed, seed in runs:
            train(labeled_seed, seed, data_dir)

    print(
        "| labelled seed | seed | "
        + " | ".join(f"acc @{s:,}" for s in STEPS)
        + " | weakest class @3,000 (read as) | wall | load before / after |"
    )
    print("|---|---|" + "---|" * (len(STEPS) + 3))
    worst = None
    for labeled_seed, seed in runs:
        workdir = run_dir(labeled_seed, seed)
        if not os.path.exists(os.path.join(workdir, "labeled.png")):
            os.makedirs(workdir, exist_ok=True)
            save_labelled(labeled_seed, seed)
        rows = {
            r["step"]: r for r in common.read_history(os.path.join(workdir, common.EVAL_HISTORY))
        }
        accs = [rows[s]["cond_acc_direct"] if s in rows else None for s in STEPS]
        path = os.path.join(workdir, DRIVER_RECORD)
        record = json.load(open(path)) if os.path.exists(path) else None
        weakest = "-"
        if accs[-1] is not None:
            last = per_class(labeled_seed, seed)[str(STEPS[-1])]
            k = min(range(len(last["per_class"])), key=lambda k: last["per_class"][k])
            confusion = list(last["confusion"][k])
            confusion[k] = -1
            read_as = max(range(len(confusion)), key=lambda c: confusion[c])
            weakest = f"{k}: {last['per_class'][k]:.3f} ({read_as})"
            if worst is None or accs[-1] < worst[0]:
                worst = (accs[-1], labeled_seed, seed)
        print(
            f"| {labeled_seed} | {seed} | "
            + " | ".join("-" if a is None else f"{a:.4f}" for a in accs)
            + f" | {weakest} | "
            + (
                f"{record['wall_s'] / 60:.0f} min | "
                f"{record['load_before']:.1f} / {record['load_after']:.1f} |"
                if record
                else "- | - |"
            )
        )
    if worst:
        print(f"worst at {STEPS[-1]:,}: {worst[0]:.4f} (labelled seed {worst[1]}, seed {worst[2]})")


if __name__ == "__main__":
    app.run(main)
