"""The labelled subset: chosen once, from its own seed, on global train-split indices.

The choice depends only on (labels of the train split, count, selection, seed), so every host
computes the same subset, and a rerun of the same config gets the same one. It is written to the
work dir (`labeled_subset.json`: indices and the count per class) and, on resume, read back from
there rather than recomputed, so a run keeps its labels even if this code changes.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

import numpy as np
from absl import logging

from ssinfogan_jax import fileio

SUBSET_FILE = "labeled_subset.json"
SELECTIONS = ("stratified", "random")


@dataclasses.dataclass(frozen=True)
class SubsetSpec:
    """How the labelled subset is chosen (config.data's num_labeled, labeled_fraction,
    labeled_selection, labeled_seed), and which label stratified selection balances."""

    num_labeled: int = -1  # -1: `fraction` of the examples.
    fraction: float = 1.0
    selection: str = "stratified"
    seed: int = 0
    strata_label: str | None = None  # None: no categorical label, so the choice is random.

    def count(self, num_train: int) -> int:
        """The subset's size out of `num_train` examples."""
        return resolve_num_labeled(self.num_labeled, self.fraction, num_train)


def choose(spec: SubsetSpec, labels: Mapping[str, np.ndarray], num_labeled: int) -> np.ndarray:
    """Sorted int64 train indices of a subset of `num_labeled` that carries every label,
    stratified by spec.strata_label's classes (random without one)."""
    num_train = len(next(iter(labels.values()))) if labels else 0
    strata = labels[spec.strata_label] if spec.strata_label else None
    selection = spec.selection if strata is not None else "random"
    if strata is None:
        strata = np.zeros(num_train, np.int64)
    return select_labeled(strata, num_labeled, selection, spec.seed)


def choose_per_label(spec: SubsetSpec, labels: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """{label: sorted int64 train indices that keep that label}, for data whose examples may
    lack labels (-1 or NaN).

    Per label, of the examples that carry it: all of them when num_labeled is -1 and the
    fraction is 1; else num_labeled (at most all), or that fraction, chosen by the selection
    (stratified by the label's classes; random for a continuous label) with the seed and the
    label's position.
    """
    out = {}
    for i, (name, values) in enumerate(labels.items()):
        categorical = np.issubdtype(values.dtype, np.integer)
        filled = np.flatnonzero(values >= 0 if categorical else ~np.isnan(values))
        count = min(spec.count(len(filled)), len(filled))
        if count == len(filled):
            out[name] = filled.astype(np.int64)
            continue
        strata = values[filled] if categorical else np.zeros(len(filled), np.int64)
        selection = spec.selection if categorical else "random"
        chosen = select_labeled(strata, count, selection, [spec.seed, i])
        out[name] = np.sort(filled[chosen]).astype(np.int64)
    return out


def union(per_label: Mapping[str, np.ndarray]) -> np.ndarray:
    """Sorted int64 indices that keep at least one label."""
    return np.unique(np.concatenate([np.zeros(0, np.int64), *per_label.values()]))


def resolve_num_labeled(num_labeled: int, labeled_fraction: float, num_train: int) -> int:
    """num_labeled, or round(labeled_fraction * num_train) when num_labeled == -1."""
    if num_labeled == -1:
        return round(labeled_fraction * num_train)
    return int(num_labeled)


def select_labeled(
    strata: np.ndarray | None, num_labeled: int, selection: str, seed: int
) -> np.ndarray:
    """Sorted int64 global indices of the labelled subset.

    Args:
      strata: int [N] class of each train example (the first supervised label), or None when
        the data set has no categorical label (then selection falls back to 'random').
      num_labeled: subset size, 0 <= num_labeled <= N.
      selection: 'random': the reference (one seeded permutation of the whole train set, the
        last `num_labeled` of it; not class-balanced). 'stratified': num_labeled // K per class
        (K classes), the remainder one each to the classes first in a seeded class order, each
        class's examples drawn by a seeded permutation. A class with too few examples gives all
        it has and the shortfall goes to the others, so the total is always `num_labeled`.
      seed: config.data.labeled_seed (independent of config.seed).
    """
    if selection not in SELECTIONS:
        raise ValueError(f"labeled_selection must be one of {SELECTIONS}, got {selection!r}")
    n = len(strata) if strata is not None else None
    rng = np.random.default_rng(seed)
    if selection == "random" or strata is None:
        if n is None:
            raise ValueError("random selection needs the train split size")
        perm = rng.permutation(n)
        return np.sort(perm[n - num_labeled :]).astype(np.int64)
    classes = np.unique(strata)
    by_class = [rng.permutation(np.flatnonzero(strata == c)) for c in classes]
    class_order = rng.permutation(len(classes))
    quota = np.zeros(len(classes), np.int64)
    remaining = num_labeled
    # Water-filling: equal shares, capped by class size; leftovers to the seeded class order.
    while remaining > 0:
        open_ = [k for k in class_order if quota[k] < len(by_class[k])]
        if not open_:
            raise ValueError(f"num_labeled {num_labeled} exceeds the train split size")
        share = remaining // len(open_)
        for k in open_:
            take = min(share if share else 1, len(by_class[k]) - quota[k], remaining)
            quota[k] += take
            remaining -= take
            if remaining == 0:
                break
    chosen = [members[:q] for members, q in zip(by_class, quota, strict=True)]
    return np.sort(np.concatenate(chosen)).astype(np.int64) if chosen else np.zeros(0, np.int64)


def class_counts(labels: dict[str, np.ndarray], indices: np.ndarray) -> dict[str, dict]:
    """For each categorical label, {class: count} over the subset (for logging and the file)."""
    counts = {}
    for name, values in labels.items():
        if np.issubdtype(values.dtype, np.integer):
            classes, n = np.unique(values[indices], return_counts=True)
            counts[name] = {str(int(c)): int(k) for c, k in zip(classes, n, strict=True)}
    return counts


def save(workdir: str, indices: np.ndarray, counts: dict, description: dict) -> str:
    """Writes the subset file into `workdir` (local or gs://; host 0 only); returns its path."""
    path = os.path.join(workdir, SUBSET_FILE)
    payload = dict(description, num_labeled=len(indices), count_per_class=counts)
    payload["indices"] = [int(i) for i in indices]
    fileio.write_json(path, payload)
    return path


def save_json(workdir: str, name: str, payload: dict) -> str:
    """Writes <workdir>/<name> (local or gs://; host 0 only); returns its path."""
    path = os.path.join(workdir, name)
    fileio.write_json(path, payload)
    return path


def load(workdir: str) -> tuple[np.ndarray, dict] | None:
    """(indices, the whole record) from a previous run's subset file, or None."""
    path = os.path.join(workdir, SUBSET_FILE)
    if not fileio.exists(path):
        return None
    payload = fileio.read_json(path)
    logging.info("Read the labelled subset (%d examples) from %s.", payload["num_labeled"], path)
    return np.asarray(payload["indices"], np.int64), payload
