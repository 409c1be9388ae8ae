"""What an ensemble judge costs and what it changes (issue 36 part 2), on digit_scenes
`:celeba`'s judge (6 heads: digit, the 4 binary attributes, rotation regressed):

    python -m benchmarks.experiments.judge_ensemble --data_dir=<tfds dir with digit_scenes> \
        --judge_dir=/tmp/judges [--steps 3000] [--members 3] [--samples_per_value 1024] \
        [--val_rows 10000] [--out result.json]

1. Trains the single judge (`config.eval.judge_ensemble = 1`), then the ensemble of
   `--members` (judge 0 reused from the cache, the others trained): the wall time of each, and
   each member's `train_seconds` (training plus validation on the whole train split).
2. Times one `Evaluator.evaluate` with the single judge and with the ensemble, side by side, at
   `--samples_per_value` (after one warm-up evaluation; G is untrained: only the time counts).
3. On `--val_rows` rows of the real train split (which no judge trained on): each member's and
   the ensemble's accuracy per categorical head (correlation for rotation), how often two
   members' classes differ, how often a member's differs from the ensemble's, and for rotation
   the RMS difference in the code's units (1 is 30 degrees).

Without a trained generator at hand, 3 stands in for the members' disagreement on samples.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import jax
import numpy as np

from configs import digit_scenes as digit_scenes_config
from ssinfogan_jax import evaluation, experiment, train
from ssinfogan_jax.evaluation import classifier as classifier_lib
from ssinfogan_jax.evaluation import evaluator as evaluator_lib


def _config(args, ensemble: int, samples_per_value: int = 128):
    config = digit_scenes_config.get_config("celeba")
    config.data.data_dir = args.data_dir
    config.eval.judge_dir = args.judge_dir
    config.eval.judge_steps = args.steps
    config.eval.judge_ensemble = ensemble
    config.eval.samples_per_value = samples_per_value
    return config


def _timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def _correlation(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.corrcoef(x.astype(np.float64), y.astype(np.float64))[0, 1])


def _rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(a.astype(np.float64) - b))))


def agreement(members, images, labels, heads) -> dict:
    """Per head: the members' and the ensemble's scores on real labelled rows, and how much the
    members disagree with each other and with the ensemble."""
    outputs = [m.predict_heads(images) for m in members]
    result = {}
    for name, classes in heads.items():
        each = [o[name] for o in outputs]
        mean = classifier_lib.mean_outputs(each, categorical=bool(classes))
        target = np.asarray(labels[name])
        known = target >= 0 if classes else ~np.isnan(target)
        row = {"rows": int(known.sum())}
        if classes:
            predicted = [e.argmax(-1) for e in each]
            ensemble = mean.argmax(-1)
            row["member_accuracy"] = [float(np.mean(p[known] == target[known])) for p in predicted]
            row["ensemble_accuracy"] = float(np.mean(ensemble[known] == target[known]))
            row["pairwise_disagreement"] = [
                float(np.mean(a != b)) for a, b in itertools.combinations(predicted, 2)
            ]
            row["member_vs_ensemble_disagreement"] = [
                float(np.mean(p != ensemble)) for p in predicted
            ]
        else:
            row["member_correlation"] = [_correlation(e[known], target[known]) for e in each]
            row["ensemble_correlation"] = _correlation(mean[known], target[known])
            row["pairwise_rms"] = [_rms(a, b) for a, b in itertools.combinations(each, 2)]
            row["member_vs_ensemble_rms"] = [_rms(e, mean) for e in each]
        result[name] = row
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--judge_dir", required=True)
    parser.add_argument(
        "--steps", type=int, default=digit_scenes_config.get_config().eval.judge_steps
    )
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--samples_per_value", type=int, default=1024)
    parser.add_argument("--val_rows", type=int, default=10_000)
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)

    single_exp = experiment.from_config(_config(args, 1), check=False)
    (test_split, train_split), load_s = _timed(
        lambda: (single_exp.source.load_float("test"), single_exp.source.load_float("train"))
    )
    result = {"judge_steps": args.steps, "members": args.members, "load_splits_s": load_s}
    single, result["train_single_s"] = _timed(
        lambda: evaluation.judge_for(single_exp, test_split, train_split)
    )
    ensemble_exp = experiment.from_config(_config(args, args.members), check=False)
    ensemble, result["train_other_members_s"] = _timed(
        lambda: evaluation.judge_for(ensemble_exp, test_split, train_split)
    )
    result["member_train_seconds"] = [m.info.get("train_seconds") for m in ensemble.members]
    result["member_validation"] = [m.info.get("val_by_head") for m in ensemble.members]
    print(json.dumps(result, indent=1), flush=True)

    heads = evaluator_lib.judged_labels(single_exp.layout, single_exp.data.labels)
    images, labels = train_split
    rows = np.random.default_rng(0).permutation(len(images))[: args.val_rows]
    result["agreement"] = agreement(
        ensemble.members, images[rows], {k: v[rows] for k, v in labels.items()}, heads
    )
    print(json.dumps(result["agreement"], indent=1), flush=True)

    eval_exp = experiment.from_config(_config(args, 1, args.samples_per_value), check=False)
    state = train.create_train_state(jax.random.PRNGKey(0), eval_exp)
    evaluators = {
        name: evaluator_lib.Evaluator(eval_exp, *test_split, judge)
        for name, judge in (("single", single), ("ensemble", ensemble))
    }
    _, result["evaluate_warmup_s"] = _timed(lambda: evaluators["single"].evaluate(state))
    for name, ev in evaluators.items():
        _, result[f"evaluate_{name}_s"] = _timed(lambda ev=ev: ev.evaluate(state))
    print(json.dumps(result, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
