"""The judge (the independent classifier) of a run, and the evaluator that uses it.

    judge = judge_for(exp)              # loaded from its cache, or trained and cached
    evaluator = make_evaluator(exp)     # evaluator.evaluate(state) -> {metric: value}

The judge is trained on the data's *test* split and validated on its *train* split (the
paper's protocol), so it never saw what G learned from. It is cached under
`exp.judge.cache_dir`, keyed by what shapes it: the data (`source.judge_key`, and the version
of a set rendered here), its heads, steps, seed and options; never by the run's seed, so every
run of a data set is judged by the same judge.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from absl import logging

from ssinfogan_jax import fileio
from ssinfogan_jax.evaluation import classifier as classifier_lib
from ssinfogan_jax.evaluation import evaluator as evaluator_lib
from ssinfogan_jax.evaluation import metrics

Split = tuple[np.ndarray, dict[str, np.ndarray]]  # (float32 images, labels)


def cache_path(exp, heads: dict[str, int]) -> str:
    """The judge's folder for `exp` with `heads` ({label: classes, 0 = continuous})."""
    spec = exp.judge
    key = f"{exp.source.judge_key}_{'+'.join(sorted(heads))}_steps{spec.steps}_seed{spec.seed}"
    if exp.data.version:  # A set rendered here: its judge is its version's.
        key += f"_v{exp.data.version}"
    if spec.batch_size != 128:  # Not the default: a judge of its own (older caches keep their key).
        key += f"_batch{spec.batch_size}"
    if spec.max_shift >= 0:  # Set, not automatic: a judge of its own.
        key += f"_shift{spec.max_shift:g}"
    return os.path.join(spec.cache_dir, key)


def _labeled_only(split: Split, names) -> Split:
    """The examples of (images, labels) that carry at least one label in `names` (each head
    then trains on the rows labelled for it: classifier.train_classifier)."""
    images, labels = split
    keep = np.zeros(len(images), bool)
    for name in names:
        keep |= metrics.is_labeled(labels[name])
    if keep.all():
        return split
    return images[keep], {name: values[keep] for name, values in labels.items()}


def judge_for(
    exp, test_split: Split | None = None, train_split: Split | None = None
) -> classifier_lib.Classifier | None:
    """The judge of `exp`: loaded from its cache, or trained on the test split and validated
    on the train split, then cached (process 0); None when no code is supervised.

    One head per label of the c_ss codes and per other label of the data set
    (`evaluator.judged_labels`); a single label keeps the single-head network. A continuous
    label turns random rotation and scaling off, and the random shift too unless
    `judge.max_shift` keeps it: it may be geometric (an angle, a size, a position), which a
    random affine map would falsify. The splits (float32, as `source.load_float` gives) are
    loaded when not given.
    """
    heads = evaluator_lib.judged_labels(exp.layout, exp.data.labels)
    if not heads:
        return None
    spec = exp.judge
    path = cache_path(exp, heads)
    if fileio.exists(os.path.join(path, classifier_lib.INFO_FILE)):
        judge = classifier_lib.load(path)
        logging.info(
            "Judge (independent classifier) from %s (validation %s).",
            path,
            judge.info.get("val_by_head") or judge.val_accuracy,
        )
        return judge
    logging.info(
        "Training the judge (independent classifier) for %s on the test split (%d steps of "
        "batch %d; cached in %s).",
        ", ".join(heads),
        spec.steps,
        spec.batch_size,
        path,
    )
    test_split = test_split or exp.source.load_float("test")
    train_split = train_split or exp.source.load_float("train")
    (test_images, test_labels) = _labeled_only(test_split, heads)
    (train_images, train_labels) = _labeled_only(train_split, heads)
    categorical_only = all(heads.values())
    max_shift = spec.max_shift if spec.max_shift >= 0 else (2.0 if categorical_only else 0.0)
    options = dict(
        seed=spec.seed,
        num_steps=spec.steps,
        batch_size=spec.batch_size,
        log_every=max(spec.steps // 10, 1),
        max_shift=max_shift,
    )
    if not categorical_only:
        options.update(max_rotation=0.0, max_scale=0.0)
    if len(heads) == 1 and categorical_only:
        ((label, classes),) = heads.items()
        judge, val = classifier_lib.train_classifier(
            test_images,
            test_labels[label],
            train_images,
            train_labels[label],
            num_classes=classes,
            **options,
        )
    else:
        judge, val = classifier_lib.train_classifier(
            test_images,
            {k: test_labels[k] for k in heads},
            train_images,
            {k: train_labels[k] for k in heads},
            num_classes=heads,
            **options,
        )
    logging.info("Judge on the train split (accuracy or correlation): %s.", val)
    if jax.process_index() == 0:
        judge.save(path)
    return judge


def make_evaluator(exp) -> evaluator_lib.Evaluator:
    """The evaluator of `exp`: the real test split and the judge (trained if not cached)."""
    test_split = exp.source.load_float("test")
    judge = None
    if evaluator_lib.judged_labels(exp.layout, exp.data.labels):
        judge = judge_for(exp, test_split)
    return evaluator_lib.Evaluator(exp, *test_split, judge)
