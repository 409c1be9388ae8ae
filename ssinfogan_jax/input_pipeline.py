"""Training batches for ss-InfoGAN: the labelled subset and the batch schedule, over a source.

    data = create_train_data(exp, workdir, process_index=..., process_count=...)
    for batch in data.iterate(start_step): ...

It takes the run's `Experiment`: its data source (data/sources.py: tfds, a folder, arrays),
the data spec, the labelled subset's spec and the batch spec; it never reads the config.

Design (why it looks like this):
- The preprocessed train split (this host's contiguous block of it, as tfds's even_splits
  would give) is held in memory as uint8 and turned into float32 per batch: MNIST is 47 MB,
  CelebA at 32x32 ~500 MB. Then `batch(step)` is random access and a pure function of
  (experiment, step): resuming needs no iterator state and gives the same batches
  (data/sampler.py).
- The labelled subset is defined on global train-split indices (the stored order), chosen
  from the subset's seed alone, so it is the same on every host and every run; each host
  draws only from its own block of each pool, so hosts see disjoint examples. Where examples
  may lack labels (a folder, arrays with -1 or NaN), it is chosen per label.
- Batches (numpy, this host's share of the global batch of size B / process_count = b):
    image        float32 [b, H, W, C], in spec.image_range
    label_masks  {name: float32 [b]}, one per label of the data set: 1 = this example is
                 labelled for that label (drawn from the labelled subset and, where examples
                 may lack labels, carrying that label and kept for it)
    labels       {name: int32 [b] (categorical; -1 where its mask is 0) or float32 [b]
                 (continuous; NaN where its mask is 0; in the codes' range [-r, r])}
  An example never carries a label whose mask is 0: its entry is the sentinel. The labelled
  pool (what labelled batches draw from) is every example that carries any label.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
from collections.abc import Iterator

import numpy as np
from absl import logging

from ssinfogan_jax import augment, config_checks
from ssinfogan_jax.data import folder, labeled_subset, registry, sampler
from ssinfogan_jax.data.sources import DataSource, DataSpec, to_float

DataNotFoundError = registry.DataNotFoundError
FolderError = folder.FolderError


class TrainData:
    """This host's training batches for any global step.

    Attributes:
      info: the data set (info.num_train = the whole train split, all hosts).
      labeled_indices: int64 [num_labeled] sorted global train indices of the labelled subset
        (the examples that carry any label).
      labeled_fraction: num_labeled / num_train (the schedule's final probability).
      images, labels: this host's block of the train split (uint8 [n, H, W, C]; {name: [n]}).
      known: {name: bool [n]}: the example is labelled for that label.
      labeled_max_shift: labelled examples are shifted by up to this many pixels.
    """

    def __init__(
        self,
        *,
        info: DataSpec,
        images: np.ndarray,
        labels: dict[str, np.ndarray],
        known: dict[str, np.ndarray],
        offset: int,
        labeled_indices: np.ndarray,
        sampler_: sampler.Sampler,
        local_labeled: np.ndarray,
        local_unlabeled: np.ndarray,
        prefetch: int = 2,
        seed: int = 0,
        labeled_max_shift: int = 0,
    ):
        self.info, self.labeled_indices = info, labeled_indices
        self.labeled_fraction = len(labeled_indices) / max(info.num_train, 1)
        self.sampler = sampler_
        self.images, self.labels, self.known = images, labels, known
        self.labeled_max_shift = labeled_max_shift
        self._offset = offset
        self._local_labeled, self._local_unlabeled = local_labeled, local_unlabeled
        self._prefetch = prefetch
        self._seed = seed

    @property
    def batch_size(self) -> int:
        """Examples per batch on this host."""
        return self.sampler.batch_size

    def p_labeled(self, step: int) -> float:
        """P(labelled batch) at `step` ('alternate' mode)."""
        return float(self.sampler.p_labeled(np.asarray(step)))

    def local_indices(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(int64 [b] positions in this host's block, bool [b] labelled slots) of batch(step)."""
        lab, unl, slots = self.sampler.slots(int(step))
        local = np.empty(len(slots), np.int64)
        local[slots] = self._local_labeled[lab]
        local[~slots] = self._local_unlabeled[unl]
        return local, slots

    def indices(self, step: int) -> np.ndarray:
        """int64 [b]: the global train-split index of each example of `batch(step)`."""
        return self.local_indices(step)[0] + self._offset

    def shifts(self, step: int, count: int) -> np.ndarray:
        """int [count, 2]: the shifts (dy, dx) of batch(step)'s `count` labelled examples."""
        return augment.random_shifts(self._seed, step, count, self.labeled_max_shift)

    def batch(self, step: int) -> dict:
        """This host's share of global step `step`'s batch; a pure function of (config, step)."""
        local, slots = self.local_indices(step)
        labels, masks = {}, {}
        for name, values in self.labels.items():
            mask = slots & self.known[name][local]
            if self.info.labels[name]:
                out = np.full(len(slots), -1, np.int32)
            else:
                out = np.full(len(slots), np.nan, np.float32)
            out[mask] = values[local[mask]]
            labels[name], masks[name] = out, mask.astype(np.float32)
        images = to_float(self.images[local], self.info.image_range)
        if self.labeled_max_shift and slots.any():
            shifts = self.shifts(step, int(slots.sum()))
            images[slots] = augment.shift_images(images[slots], shifts, self.info.image_range[0])
        return {"image": images, "label_masks": masks, "labels": labels}

    def iterate(self, start_step: int = 0) -> Iterator[dict]:
        """batch(start_step), batch(start_step + 1), ..., computed ahead in a thread."""
        if self._prefetch == 0:
            step = start_step
            while True:
                yield self.batch(step)
                step += 1
        with concurrent.futures.ThreadPoolExecutor(1, "input_pipeline") as pool:
            queue = collections.deque(
                pool.submit(self.batch, start_step + i) for i in range(self._prefetch)
            )
            step = start_step + self._prefetch
            try:
                while True:
                    batch = queue.popleft().result()
                    queue.append(pool.submit(self.batch, step))
                    step += 1
                    yield batch
            finally:
                for future in queue:
                    future.cancel()


def host_block(num_train: int, process_index: int, process_count: int) -> tuple[int, int]:
    """This host's contiguous block [start, stop) of the train split (as tfds.even_splits)."""
    start = num_train * process_index // process_count
    return start, num_train * (process_index + 1) // process_count


def create_train_data(
    exp,
    workdir: str | None,
    *,
    process_index: int = 0,
    process_count: int = 1,
) -> TrainData:
    """Loads this host's block of the train split, fixes the labelled subset, builds batches.

    `exp` is the run's `experiment.Experiment`; the subset's size is resolved from the train
    split as loaded (`labeled_count`: a set built from fewer files than the published one has
    its own size). It is read back from `workdir` when a previous run wrote it there (resume),
    else chosen by `exp.subset` and written there by process 0 (labeled_subset.json: indices
    and count per class; where chosen per label also the indices per label, and the source's
    label map). Prepares the data first (a download where allowed); raises DataNotFoundError
    (fast) when it is absent and cannot be had, config_checks.ConfigError (one line) when the
    count asked for does not fit the split.
    """
    source: DataSource = exp.source
    if problems := source.problems():
        raise DataNotFoundError("\n".join(problems))
    spec = exp.data
    # The split as built: a partial download or a fixture has fewer examples than the
    # registry lists (and mock_data its own number).
    if process_count == 1:
        images, labels = source.load("train")
        num_train = len(images)
        start, stop = 0, num_train
        all_labels = labels
    else:
        num_train = source.num_examples("train")
        start, stop = host_block(num_train, process_index, process_count)
        images, labels = source.load(f"train[{start}:{stop}]")
        all_labels = None
    spec = dataclasses.replace(spec, num_train=num_train)
    n_lab = labeled_count(exp, num_train)

    record = labeled_subset.load(workdir) if workdir else None
    per_label = None  # {label: indices} when labels are chosen apart.
    if record is not None:
        indices, saved = record
        if (saved.get("dataset"), len(indices)) != (spec.name, n_lab):
            raise ValueError(
                f"{workdir}/{labeled_subset.SUBSET_FILE} holds {len(indices)} labelled examples "
                f"of {saved.get('dataset')}, but the config asks for {n_lab} of {spec.name}; use "
                f"a fresh work dir (or delete that file) to choose a new subset"
            )
        if source.per_label_subset:
            if saved.get("source") != source.fingerprint:
                raise ValueError(
                    f"{workdir}/{labeled_subset.SUBSET_FILE} was chosen from other data than "
                    f"{source.describe()} holds now; use a fresh work dir"
                )
            per_label = {k: np.asarray(v, np.int64) for k, v in saved["indices_per_label"].items()}
    else:
        subset = exp.subset
        description = dict(dataset=spec.name, num_train=num_train, labeled_seed=subset.seed)
        if all_labels is None:
            # Every host needs all train labels (to choose, and to log the count per class);
            # only the labels are read, images stay undecoded.
            all_labels = source.load_labels("train")
        if source.per_label_subset:
            per_label = labeled_subset.choose_per_label(subset, all_labels)
            indices = labeled_subset.union(per_label)
            counts = _counts_per_label(source, all_labels, per_label)
            description.update(
                selection=subset.selection,
                source=source.fingerprint,
                **source.subset_record(),
                indices_per_label={k: [int(i) for i in v] for k, v in per_label.items()},
            )
            logging.info(
                "%s: %d train examples; labelled subset: %d examples carry a label; per label "
                "and class: %s",
                source.describe(),
                num_train,
                len(indices),
                counts,
            )
        else:
            indices = labeled_subset.choose(subset, all_labels, n_lab)
            counts = labeled_subset.class_counts(all_labels, indices)
            description["selection"] = subset.selection if subset.strata_label else "random"
            logging.info("Labelled subset: %d of %d; per class: %s", n_lab, num_train, counts)
        if workdir and process_index == 0:
            path = labeled_subset.save(workdir, indices, counts, description)
            logging.info("Wrote the labelled subset to %s.", path)
            if (label_map := source.label_map()) is not None:
                path = labeled_subset.save_json(workdir, folder.LABEL_MAP_FILE, label_map)
                logging.info("Wrote the class names of each label to %s.", path)

    def local_mask(global_indices: np.ndarray) -> np.ndarray:
        mask = np.zeros(stop - start, bool)
        mine = global_indices[(global_indices >= start) & (global_indices < stop)]
        mask[mine - start] = True
        return mask

    is_labeled = local_mask(indices)
    if per_label is None:
        known = {name: is_labeled for name in spec.labels}
    else:
        known = {name: local_mask(per_label[name]) for name in spec.labels}
    local_labeled = np.flatnonzero(is_labeled)
    local_unlabeled = np.flatnonzero(~is_labeled)
    if n_lab and not len(local_labeled):
        raise ValueError(f"process {process_index} holds none of the {n_lab} labelled examples")
    if n_lab < num_train and not len(local_unlabeled):
        raise ValueError(f"process {process_index} holds no unlabelled examples")
    batches = exp.batches
    sampler_ = sampler.Sampler(
        seed=batches.seed,
        schedule=batches.schedule(n_lab / num_train),
        mode=batches.mode,
        mix_share=float(batches.mix_share),
        batch_size=batches.batch_size // process_count,
        num_labeled_local=len(local_labeled),
        num_unlabeled_local=len(local_unlabeled),
        has_labeled=n_lab > 0,
        has_unlabeled=n_lab < num_train,
    )
    return TrainData(
        info=spec,
        images=images,
        labels=labels,
        known=known,
        offset=start,
        labeled_indices=indices,
        sampler_=sampler_,
        local_labeled=local_labeled,
        local_unlabeled=local_unlabeled,
        prefetch=int(batches.prefetch),
        seed=batches.seed,
        labeled_max_shift=int(batches.labeled_max_shift),
    )


def labeled_count(exp, num_train: int) -> int:
    """The labelled subset's size in a train split of `num_train` examples, as loaded: the
    count asked for (config.data.num_labeled), or labeled_fraction of `num_train`.

    Raises config_checks.ConfigError (one line) when the count is more than the split has,
    or when labeled_fraction of a set built from far fewer files than the published one
    rounds to none (or to some where the published size gave none): the run's losses were
    set up for labels (exp.has_labels), so it asks for a count instead of training otherwise.
    """
    source, subset = exp.source, exp.subset
    count = source.num_labeled(subset, num_train)
    name = exp.data.name
    if count > num_train:
        raise config_checks.ConfigError(
            f"config.data.num_labeled: {count} is more than the {num_train} training examples "
            f"of {name} as built; ask for at most {num_train} (or 0 for no labels)"
        )
    if (count > 0) != exp.has_labels:
        raise config_checks.ConfigError(
            f"config.data.labeled_fraction: {subset.fraction} of the {num_train} training "
            f"examples of {name} as built is {count} labelled examples, where the "
            f"{exp.data.num_train} it lists gave {exp.num_labeled} and the losses were set up "
            f"for {'labels' if exp.has_labels else 'none'}; set config.data.num_labeled to "
            f"the count you want (0: the InfoGAN baseline)"
        )
    return count


def _counts_per_label(
    source: DataSource, labels: dict[str, np.ndarray], per_label: dict[str, np.ndarray]
) -> dict[str, dict]:
    """{label: {class name: count}} of the kept labels ({'count': n} for a continuous one)."""
    counts = {}
    for name, kept in per_label.items():
        classes = source.spec.labels[name]
        if classes:
            found = np.bincount(labels[name][kept], minlength=classes)
            names = source.class_names.get(name) or [str(k) for k in range(classes)]
            counts[name] = {c: int(k) for c, k in zip(names, found, strict=True)}
        else:
            counts[name] = {"count": len(kept)}
    return counts
