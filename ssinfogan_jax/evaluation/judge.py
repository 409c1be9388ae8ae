"""The judge (the independent classifier) of a run, and the evaluator that uses it.

    judge = judge_for(exp)              # loaded from its cache, or trained and cached
    evaluator = make_evaluator(exp)     # evaluator.evaluate(state) -> {metric: value}
    evaluators = make_evaluators(exps)  # a group's: one test split and judge per data set

The judge is trained on the data's *test* split and validated on its *train* split (the
paper's protocol), so it never saw what G learned from. It is cached under
`exp.judge.cache_dir`, keyed by what shapes it: the data (`source.judge_key`, and the version
of a set rendered here), its heads, steps, seed and options; never by the run's seed, so every
run of a data set is judged by the same judge.

A cached judge records a fingerprint of the images and labels it was trained on (the test
split's labelled rows, hashed), and is used only for the same data: a set rebuilt from other
files under the same name and version gets a judge of its own (the key plus
`_data<fingerprint>`). A judge cached before fingerprints is used where the test split has as
many rows with the same per-channel mean and standard deviation as it recorded.

With `exp.judge.ensemble` = M > 1 the judge is the mean of M judges' probabilities
(`classifier.Ensemble`), judge i trained from seed `exp.judge.seed + i` and cached as a single
judge of that seed would be: judge 0 is the single judge, and its cache entry serves both.
"""

from __future__ import annotations

import hashlib
import os

import jax
import numpy as np
from absl import logging

from ssinfogan_jax import fileio
from ssinfogan_jax.evaluation import classifier as classifier_lib
from ssinfogan_jax.evaluation import evaluator as evaluator_lib
from ssinfogan_jax.evaluation import metrics

Split = tuple[np.ndarray, dict[str, np.ndarray]]  # (float32 images, labels)


def cache_path(exp, heads: dict[str, int], fingerprint: str = "", seed: int | None = None) -> str:
    """The judge's folder for `exp` with `heads` ({label: classes, 0 = continuous}); with
    `fingerprint`, that of data rebuilt since the first judge of the key was cached; with
    `seed`, that of the judge trained from it (default `exp.judge.seed`: the single judge, the
    first member of an ensemble)."""
    spec = exp.judge
    seed = spec.seed if seed is None else seed
    key = f"{exp.source.judge_key}_{'+'.join(sorted(heads))}_steps{spec.steps}_seed{seed}"
    if exp.data.version:  # A set rendered here: its judge is its version's.
        key += f"_v{exp.data.version}"
    if spec.batch_size != 128:  # Not the default: a judge of its own (older caches keep their key).
        key += f"_batch{spec.batch_size}"
    if spec.max_shift >= 0:  # Set, not automatic: a judge of its own.
        key += f"_shift{spec.max_shift:g}"
    if fingerprint:
        key += f"_data{fingerprint[:12]}"
    return os.path.join(spec.cache_dir, key)


def fingerprint(split: Split, heads) -> str:
    """sha256 of what a judge with `heads` trains on: the split's images and heads' labels."""
    images, labels = split
    digest = hashlib.sha256(np.ascontiguousarray(images, np.float32).data)
    for name in sorted(heads):
        digest.update(name.encode() + np.ascontiguousarray(labels[name]).tobytes())
    return digest.hexdigest()


def _same_data(record: dict, digest: str, images: np.ndarray) -> bool:
    """Whether the judge of `record` (its classifier.json) was trained on the data of `digest`
    (`images`: the float32 images hashed into it)."""
    info = record.get("info") or {}
    if info.get("data_fingerprint"):
        return info["data_fingerprint"] == digest
    # Cached before fingerprints: the same rows and per-channel statistics, as train_classifier
    # computed them (float64), mean the same images.
    mean = images.mean(axis=(0, 1, 2), dtype=np.float64)
    std = images.std(axis=(0, 1, 2), dtype=np.float64) + 1e-8
    spec = record.get("spec") or {}
    return (
        info.get("num_train") == len(images)
        and np.allclose(spec.get("mean", ()), mean, rtol=0, atol=1e-9)
        and np.allclose(spec.get("std", ()), std, rtol=0, atol=1e-9)
    )


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

    With `judge.ensemble` = M > 1, a `classifier.Ensemble` of M judges, judge i trained from
    seed `judge.seed + i` and cached under its own key (judge 0 is the single judge, its cache
    entry shared); with M = 1, the single judge itself.
    """
    heads = evaluator_lib.judged_labels(exp.layout, exp.data.labels)
    if not heads:
        return None
    test_split = test_split or exp.source.load_float("test")
    test_split = _labeled_only(test_split, heads)
    digest = fingerprint(test_split, heads)
    loaded_train = []  # The train split, loaded once if a member has to be trained.

    def train_split_once() -> Split:
        if not loaded_train:
            loaded_train.append(_labeled_only(train_split or exp.source.load_float("train"), heads))
        return loaded_train[0]

    members = [
        _member(exp, heads, exp.judge.seed + i, test_split, digest, train_split_once)
        for i in range(exp.judge.ensemble)
    ]
    return members[0] if len(members) == 1 else classifier_lib.Ensemble(members)


def _member(
    exp, heads: dict[str, int], seed: int, test_split: Split, digest: str, train_split
) -> classifier_lib.Classifier:
    """The judge of `heads` trained from `seed`: from its cache, or trained on `test_split`
    (labelled rows only; `digest` its fingerprint) and validated on `train_split()`, then
    cached."""
    spec = exp.judge
    test_images, test_labels = test_split
    path = cache_path(exp, heads, seed=seed)
    for candidate in (path, cache_path(exp, heads, digest, seed)):
        info_file = os.path.join(candidate, classifier_lib.INFO_FILE)
        if not fileio.exists(info_file):
            continue
        if not _same_data(fileio.read_json(info_file), digest, test_images):
            logging.warning(
                "The judge in %s was trained on other data under the same name (a set rebuilt "
                "from other files?): not used.",
                candidate,
            )
            path = cache_path(exp, heads, digest, seed)
            continue
        judge = classifier_lib.load(candidate)
        val = judge.info.get("val_by_head") or {"": judge.val_accuracy}
        logging.info(
            "Judge (independent classifier) from %s (validation: %s).",
            candidate,
            ", ".join(f"{head} {acc:.3f}".strip() for head, acc in val.items() if acc is not None)
            or "not measured",
        )
        return judge
    logging.info(
        "Training the judge (independent classifier) for %s on the test split (%d steps of "
        "batch %d, seed %d; cached in %s).",
        ", ".join(heads),
        spec.steps,
        spec.batch_size,
        seed,
        path,
    )
    train_images, train_labels = train_split()
    categorical_only = all(heads.values())
    max_shift = spec.max_shift if spec.max_shift >= 0 else (2.0 if categorical_only else 0.0)
    options = dict(
        seed=seed,
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
    judge.info["data_fingerprint"] = digest
    if jax.process_index() == 0:
        judge.save(path)
    return judge


def make_evaluator(exp) -> evaluator_lib.Evaluator:
    """The evaluator of `exp`: the real test split and the judge (trained if not cached)."""
    return make_evaluators([exp])[0]


def make_evaluators(exps: list) -> list[evaluator_lib.Evaluator]:
    """The evaluator of each of `exps` (the runs of a group): runs of the same data, layout
    and judge share one test split and one judge, loaded (and announced) once."""
    made: dict[tuple, tuple] = {}
    evaluators = []
    for exp in exps:
        # repr: DataSpec holds dicts (unhashable); equal specs print the same.
        key = (exp.source.judge_key, repr(exp.data), exp.layout, exp.judge)
        if key not in made:
            test_split = exp.source.load_float("test")
            judge = None
            if evaluator_lib.judged_labels(exp.layout, exp.data.labels):
                judge = judge_for(exp, test_split)
            made[key] = (test_split, judge)
        test_split, judge = made[key]
        evaluators.append(evaluator_lib.Evaluator(exp, *test_split, judge))
    return evaluators
