"""How well the labelled subset alone teaches a classifier: the ceiling of a Q_ss taught by it.

    python -m benchmarks.experiments.labelled_only_classifier [--preset celeba] [--steps 1000]
        [--max_shift 2] [--seed 0]

Trains a CNN of the independent judge's kind (`evaluation.classifier`, a head per label of
`configs/digit_scenes.py:<preset>`'s supervised codes; a continuous label on the code's range,
as the loop feeds it to Q_ss) on the labelled subset that a run of that config draws (the same
size, selection and `data.labeled_seed`), and reports its accuracy (a regression head: its
correlation) on the whole test split. Q_ss learns from nothing else until G's codes mean
something, so this says how far those labels alone can carry it.

Measured (2026-11-30, digit_scenes 2.0.0, 600 labelled scenes, shift 2 px, 1,000 steps, the
2-core CPU shared with training runs): `--preset svhn` digit 0.771 (483 s); `--preset celeba`
dark_background 1.000, warm_foreground 0.993, thick_stroke 0.869, neighbours 0.946, rotation
0.838 correlation (651 s).
"""

from __future__ import annotations

import argparse
import json
import time

from configs import digit_scenes
from ssinfogan_jax import experiment
from ssinfogan_jax.data import labeled_subset
from ssinfogan_jax.evaluation import classifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="celeba", help="configs/digit_scenes.py's argument")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--max_shift", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    config = digit_scenes.get_config(args.preset)
    exp = experiment.from_config(config)
    train_x, train_y = exp.source.load_float("train")
    test_x, test_y = exp.source.load_float("test")
    # As the loop draws it: stratified by the first supervised categorical label.
    first = next(c for c in exp.layout.supervised_codes if c.categorical)
    strata = train_y[first.label]
    data = config.data
    indices = labeled_subset.select_labeled(
        strata, exp.num_labeled, data.labeled_selection, data.labeled_seed
    )
    heads = {c.label: c.size if c.categorical else 0 for c in exp.layout.supervised_codes}

    def targets(labels, chosen=slice(None)):
        return {name: labels[name][chosen] for name in heads}

    start = time.time()
    _, val = classifier.train_classifier(
        train_x[indices],
        targets(train_y, indices),
        test_x,
        targets(test_y),
        num_classes=heads,
        seed=args.seed,
        num_steps=args.steps,
        max_shift=args.max_shift,
        max_rotation=0.0,
        max_scale=0.0,
    )
    print(f"{len(indices)} labelled train examples, {args.steps} steps, shift {args.max_shift}:")
    result = {name: round(float(v), 4) for name, v in val.items()}
    print(json.dumps({**result, "seconds": round(time.time() - start)}))


if __name__ == "__main__":
    main()
