"""Which examples go into the batch of global step t: a pure function of (seed, t).

No iterator state exists, so a resumed run sees exactly the batches the uninterrupted run would
have seen, and every host agrees on every decision without talking to the others.

- The labelled-batch probability p(t) (reference section 8): starts at `start`, moves by `step`
  towards `final` every `every` steps, then stays at `final` (reference: 1.0, -0.1 per 100
  iterations, final = the true labelled fraction num_labeled / num_train).
- 'alternate' mode (the reference): step t's batch is all labelled when u_t < p(t), otherwise
  all unlabelled; u_t ~ U[0, 1) from (seed, t) alone, so the decision is the same on all hosts.
- 'mix' mode: every batch carries round(share * b) labelled examples, spread evenly through the
  batch (so each device's slice gets its share), the rest unlabelled.
- Each pool (this host's labelled and unlabelled examples) is read as an endless stream of
  seeded per-epoch permutations; the k-th draw of m examples from a pool is positions
  [k m, (k + 1) m) of that stream, where k counts the earlier steps that drew from the pool
  (a cumulative sum over the decisions, computed in cached blocks).

Two deliberate differences from the reference's torchnet iterators: each pass over a pool is
reshuffled (the reference replays one fixed order and never uses the trailing partial batch),
and a pool smaller than the batch fills the batch by continuing into its next permutation (the
reference uses a smaller batch then), so every batch has exactly `batch_size` examples.
"""

from __future__ import annotations

import dataclasses
import threading

import numpy as np

MODES = ("alternate", "mix")
_DECISION_TAG = 0xD0
_POOL_TAGS = {"labeled": 0x1A, "unlabeled": 0x0A}
_BLOCK = 4096  # Steps per cached block of decisions.


@dataclasses.dataclass(frozen=True)
class Schedule:
    """p(t) = start moved by `step` towards `final` every `every` steps, then `final`."""

    start: float = 1.0
    step: float = 0.1
    every: int = 100
    final: float = 0.01

    def __call__(self, steps) -> np.ndarray:
        """float64 P(labelled batch) for int steps (any shape)."""
        k = np.floor_divide(np.asarray(steps, np.int64), max(int(self.every), 1))
        if self.start >= self.final:
            return np.maximum(self.start - self.step * k, self.final)
        return np.minimum(self.start + self.step * k, self.final)


@dataclasses.dataclass(frozen=True)
class BatchSpec:
    """How training batches are drawn (config.batch_size, config.seed and config.data's
    batch_mode, mix_labeled_share, p_labeled_*, labeled_max_shift, prefetch).

    `p_final` -1 means the true labelled fraction, known once the subset is chosen.
    """

    batch_size: int  # Global: split over the processes.
    seed: int
    mode: str = "alternate"
    mix_share: float = 0.5
    p_start: float = 1.0
    p_step: float = 0.1
    p_every: int = 100
    p_final: float = -1.0
    labeled_max_shift: int = 0  # Labelled examples shifted by up to this many pixels.
    prefetch: int = 2  # Batches computed ahead in a thread (0: none).

    def schedule(self, labeled_fraction: float) -> Schedule:
        final = labeled_fraction if self.p_final == -1 else float(self.p_final)
        return Schedule(self.p_start, self.p_step, self.p_every, final)


class Pool:
    """An endless stream of seeded per-epoch permutations of `size` local positions."""

    def __init__(self, size: int, seed: int, tag: int):
        self.size, self._seed, self._tag = int(size), int(seed), int(tag)
        self._cache: dict[int, np.ndarray] = {}  # a few recent epochs
        self._lock = threading.Lock()

    def _epoch(self, epoch: int) -> np.ndarray:
        with self._lock:  # batch() may run in the prefetch thread and the caller's at once
            perm = self._cache.get(epoch)
            if perm is None:
                rng = np.random.default_rng([self._seed, self._tag, epoch])
                perm = rng.permutation(self.size)
                if len(self._cache) >= 8:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[epoch] = perm
        return perm

    def take(self, start: int, count: int) -> np.ndarray:
        """Positions [start, start + count) of the stream, int64 [count]."""
        if count == 0:
            return np.zeros(0, np.int64)
        if self.size == 0:
            raise ValueError("draw from an empty pool")
        first, last = start // self.size, (start + count - 1) // self.size
        stream = np.concatenate([self._epoch(e) for e in range(first, last + 1)])
        offset = start - first * self.size
        return stream[offset : offset + count].astype(np.int64)


class Sampler:
    """Per-host draws for any global step; identical across hosts in every decision."""

    def __init__(
        self,
        *,
        seed: int,
        schedule: Schedule,
        mode: str,
        mix_share: float,
        batch_size: int,
        num_labeled_local: int,
        num_unlabeled_local: int,
        has_labeled: bool,
        has_unlabeled: bool,
    ):
        """
        Args:
          seed: config.seed.
          batch_size: this host's share of the global batch.
          num_labeled_local, num_unlabeled_local: sizes of this host's shard of each pool.
          has_labeled, has_unlabeled: whether the *global* pools are non-empty (the same on
            every host, so decisions stay identical).
        """
        if mode not in MODES:
            raise ValueError(f"batch mode must be one of {MODES}, got {mode!r}")
        self.seed, self.schedule, self.mode, self.batch_size = seed, schedule, mode, batch_size
        self.has_labeled, self.has_unlabeled = has_labeled, has_unlabeled
        self.labeled = Pool(num_labeled_local, seed, _POOL_TAGS["labeled"])
        self.unlabeled = Pool(num_unlabeled_local, seed, _POOL_TAGS["unlabeled"])
        share = mix_share if has_labeled and has_unlabeled else float(has_labeled)
        self.mix_labeled = round(share * batch_size)
        self._lock = threading.Lock()
        self._blocks: list[np.ndarray] = []  # bool [_BLOCK] decisions per block
        self._before: list[int] = [0]  # labelled steps before each block

    def p_labeled(self, steps) -> np.ndarray:
        """P(labelled batch) at the given steps, after the empty-pool rules."""
        if not self.has_labeled:
            return np.zeros(np.shape(steps))
        if not self.has_unlabeled:
            return np.ones(np.shape(steps))
        return self.schedule(steps)

    def _block(self, j: int) -> np.ndarray:
        steps = np.arange(j * _BLOCK, (j + 1) * _BLOCK)
        u = np.random.default_rng([self.seed, _DECISION_TAG, j]).random(_BLOCK)
        return u < self.p_labeled(steps)

    def _decision_and_count(self, step: int) -> tuple[bool, int]:
        """(step draws labelled?, number of earlier steps that drew labelled)."""
        j, i = divmod(step, _BLOCK)
        with self._lock:
            while len(self._blocks) <= j:
                block = self._block(len(self._blocks))
                self._blocks.append(block)
                self._before.append(self._before[-1] + int(block.sum()))
            block, before = self._blocks[j], self._before[j]
        return bool(block[i]), before + int(block[:i].sum())

    def decisions(self, steps: np.ndarray) -> np.ndarray:
        """bool: whether each step's batch is labelled ('alternate' mode)."""
        return np.array([self._decision_and_count(int(s))[0] for s in steps], bool)

    def slots(self, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(labelled pool positions, unlabelled pool positions, bool [b] labelled slots)."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        b = self.batch_size
        if self.mode == "alternate":
            labeled, before = self._decision_and_count(step)
            if labeled:
                return self.labeled.take(before * b, b), np.zeros(0, np.int64), np.ones(b, bool)
            unl = self.unlabeled.take((step - before) * b, b)
            return np.zeros(0, np.int64), unl, np.zeros(b, bool)
        m = self.mix_labeled
        mask = np.zeros(b, bool)
        mask[(np.arange(m) * b) // max(m, 1)] = True  # m slots spread evenly over the batch
        lab = self.labeled.take(step * m, m)
        unl = self.unlabeled.take(step * (b - m), b - m)
        return lab, unl, mask
