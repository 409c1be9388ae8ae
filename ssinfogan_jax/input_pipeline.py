"""Data for ss-InfoGAN: tfds loading and preprocessing, the labelled subset, the batch schedule.

    info = get_dataset_info(config)            # shapes, ranges, label names; no data read
    problems = availability_problems(config)   # why the data cannot be loaded here, if so
    data = create_train_data(exp, workdir, process_index=..., process_count=...)
    for batch in data.iterate(start_step): ...
    images, labels = load_split(config, "test")

Design (why it looks like this):
- The preprocessed train split (this host's contiguous block of it, as tfds's even_splits
  would give) is held in memory as uint8 and turned into float32 per batch: MNIST is 47 MB,
  CelebA at 32x32 ~500 MB. Then `batch(step)` is random access and a pure function of
  (config, step): resuming needs no iterator state and gives the same batches (data/sampler.py).
- The labelled subset is defined on global train-split indices (the tfds file order), chosen
  from config.data.labeled_seed alone, so it is the same on every host and every run; each
  host draws only from its own block of each pool, so hosts see disjoint examples.
- Batches (numpy, this host's share of the global batch of size B / process_count = b):
    image        float32 [b, H, W, C], in info.image_range
    label_masks  {name: float32 [b]}, one per label of the data set: 1 = this example is
                 labelled for that label (drawn from the labelled subset and, for a folder,
                 its cell for that label filled and kept)
    labels       {name: int32 [b] (categorical; -1 where its mask is 0) or float32 [b]
                 (continuous; NaN where its mask is 0; mapped from the data set's label range
                 onto the codes' range [-r, r])}
  An example never carries a label whose mask is 0: its entry is the sentinel. The labelled
  pool (what labelled batches draw from) is every example that carries any label.
- A folder (config.data.name = 'folder', data/folder.py): the images are converted once into a
  tfds set in data_dir; the labels come from the CSV; the train split is the CSV's train rows
  in CSV order, and the labelled subset is chosen per label (registry.folder_labeled).
- Preprocessing: MNIST-format sets (mnist, fashion_mnist, kmnist, digits) -> 28x28x1 in
  [0, 1] (the reference divides by 255; G ends in a sigmoid). svhn_cropped, cifar10 -> 32x32x3
  in [-1, 1] (tanh G). celeb_a -> a fixed face-centred crop (config.data.celeba_crop), area
  resized to 32x32x3, [-1, 1]; labels = the chosen attributes, int32 0/1 each.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
from collections.abc import Iterator

import ml_collections
import numpy as np
from absl import logging

from ssinfogan_jax.data import augment, builders, folder, labeled_subset, registry, sampler
from ssinfogan_jax.data.tf_setup import tf, tfds

DataNotFoundError = builders.DataNotFoundError
FolderError = folder.FolderError
prepare = builders.prepare  # prepare(name, raw_dir, data_dir) -> None
DatasetInfo = registry.DatasetInfo
get_dataset_info = registry.get_dataset_info


def availability_problems(config: ml_collections.ConfigDict) -> list[str]:
    """Why config.data cannot be loaded here (not prepared and not to be downloaded, raw files
    missing); [] = it can (perhaps after a download)."""
    d = config.data
    if d.name == registry.FOLDER:
        return []  # Always preparable from the folder (registry.find_problems checked it).
    try:
        prepared = builders.is_prepared(d.name, d.data_dir)
    except Exception as e:
        return [f"config.data.data_dir: cannot read {d.data_dir!r}: {e}"]
    if prepared or d.name == "digits":
        return []
    if not d.raw_dir:
        if d.download == "auto" and d.name not in registry.NOT_DOWNLOADABLE:
            return []  # Downloaded when first loaded.
        return [builders.not_prepared_message(d.name, d.data_dir, d.download)]
    if missing := builders.missing_raw_files(d.name, d.raw_dir):
        return [
            f"config.data.raw_dir: {d.raw_dir} lacks {', '.join(missing)} to prepare "
            f"{d.name}; " + builders.what_to_place(d.name, d.raw_dir, d.data_dir)
        ]
    return []


# ----------------------------------------------------------------------------------------------
# Loading.


def _preprocess_fn(config, info: DatasetInfo):
    """tf example -> (uint8 image in the final geometry, {label: value})."""
    kind, label_names = info.kind, list(info.labels)

    r = float(config.latents.continuous_range)

    def _label(name, value):
        if info.labels[name]:
            return tf.cast(value, tf.int32)
        # Continuous: float32, mapped from its stored range onto the codes' range [-r, r].
        low, high = info.label_ranges.get(name, (-r, r))
        return (tf.cast(value, tf.float32) - (low + high) / 2) * (2 * r / (high - low))

    def fn(example):
        image = example["image"]
        if kind == "celeba":
            top, left, h, w = config.data.celeba_crop
            image = image[top : top + h, left : left + w]
            image = tf.image.resize(image, info.image_shape[:2], method="area")
            image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
            labels = {a: tf.cast(example["attributes"][a], tf.int32) for a in label_names}
        else:
            labels = {n: _label(n, example[n]) for n in label_names}
        return {"image": tf.ensure_shape(image, info.image_shape), "labels": labels}

    return fn


def _builder(config):
    d = config.data
    builders.ensure_prepared(d.name, d.data_dir, d.raw_dir, d.download)
    if d.name == "digits":
        return builders.Digits(data_dir=builders.default_data_dir(d.data_dir))
    return tfds.builder(d.name, data_dir=d.data_dir or None, try_gcs=False)


def ensure_data(config: ml_collections.ConfigDict) -> None:
    """Prepares the data now if it needs it (a tfds build from local files, a folder's
    conversion), so that bad input stops a run before it writes anything. Raises
    DataNotFoundError or FolderError."""
    d = config.data
    if d.name == registry.FOLDER:
        info = get_dataset_info(config)
        data_dir = builders.default_data_dir(d.data_dir)
        folder.prepare(folder.read_source(d), info.image_shape, data_dir)
        return
    if problems := availability_problems(config):
        raise DataNotFoundError("\n".join(problems))
    builders.ensure_prepared(d.name, d.data_dir, d.raw_dir)


def class_names(config: ml_collections.ConfigDict) -> dict[str, list[str]]:
    """{label: class names in code order} where the data names its classes (a folder's CSV);
    {} for the tfds sets (their classes are the indices)."""
    if config.data.name != registry.FOLDER:
        return {}
    labels = folder.read_source(config.data).labels
    return {name: list(label.classes) for name, label in labels.items() if label.classes}


def _folder_rows(source: folder.Source, split: str) -> np.ndarray:
    """CSV rows of 'train', 'test' or 'train[a:b]' (a block of the train rows)."""
    name, _, rest = split.partition("[")
    rows = source.rows(name)
    if rest:
        start, _, stop = rest.rstrip("]").partition(":")
        rows = rows[int(start or 0) : int(stop) if stop else None]
    return rows


def _load_folder(config, split: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    info = get_dataset_info(config)
    source = folder.read_source(config.data)
    data_dir = builders.default_data_dir(config.data.data_dir)
    rows = _folder_rows(source, split)
    images = folder.load_images(source, info.image_shape, data_dir)[rows]
    return images, {name: source.values[name][rows] for name in info.labels}


def _load_uint8(config, split: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(uint8 [N, H, W, C], {label: [N]}) of a tfds split string, in tfds file order (a
    folder's: CSV order; its labels hold the sentinel where a cell is blank)."""
    if config.data.name == registry.FOLDER:
        return _load_folder(config, split)
    info = get_dataset_info(config)
    builder = _builder(config)
    # cycle_length 1: read files in order, so position i of 'train[a:b]' is global index a + i.
    read_config = tfds.ReadConfig(interleave_cycle_length=1)
    ds = builder.as_dataset(split=split, shuffle_files=False, read_config=read_config)
    ds = ds.map(_preprocess_fn(config, info), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(2048).prefetch(2)
    images, labels = [], collections.defaultdict(list)
    for chunk in tfds.as_numpy(ds):
        images.append(chunk["image"])
        for k, v in chunk["labels"].items():
            labels[k].append(v)
    empty = np.zeros((0, *info.image_shape), np.uint8)
    images = np.concatenate(images) if images else empty
    out = {
        k: np.concatenate(labels[k]) if labels[k] else np.zeros(0, np.int32) for k in info.labels
    }
    return images, out


def _to_float(images: np.ndarray, image_range: tuple[float, float]) -> np.ndarray:
    lo, hi = image_range
    scale = np.float32((hi - lo) / 255.0)
    return images.astype(np.float32) * scale + np.float32(lo)


def load_split(
    config: ml_collections.ConfigDict, split: str
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A whole split (e.g. 'test') for evaluation: float32 [N, H, W, C] images and labels
    {name: [N]}; -1 (categorical) or NaN (continuous) where an example lacks that label."""
    info = get_dataset_info(config)
    images, labels = _load_uint8(config, split)
    return _to_float(images, info.image_range), labels


# ----------------------------------------------------------------------------------------------
# Training batches.


def _schedule(config, labeled_fraction: float) -> sampler.Schedule:
    d = config.data
    final = labeled_fraction if d.p_labeled_final == -1 else float(d.p_labeled_final)
    return sampler.Schedule(
        start=float(d.p_labeled_start),
        step=float(d.p_labeled_step),
        every=int(d.p_labeled_every),
        final=final,
    )


class TrainData:
    """This host's training batches for any global step.

    Attributes:
      info: the data set (info.num_train = the whole train split, all hosts).
      labeled_indices: int64 [num_labeled] sorted global train indices of the labelled subset
        (the examples that carry any label).
      labeled_fraction: num_labeled / num_train (the schedule's final probability).
    """

    def __init__(
        self,
        *,
        info: DatasetInfo,
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
        self._images, self._labels, self._offset = images, labels, offset
        self._known = known  # {name: bool [n_local]}: this example is labelled for `name`.
        self._local_labeled, self._local_unlabeled = local_labeled, local_unlabeled
        self._prefetch = prefetch
        self._seed, self._labeled_max_shift = seed, labeled_max_shift

    @property
    def batch_size(self) -> int:
        """Examples per batch on this host."""
        return self.sampler.batch_size

    def p_labeled(self, step: int) -> float:
        """P(labelled batch) at `step` ('alternate' mode)."""
        return float(self.sampler.p_labeled(np.asarray(step)))

    def _local_indices(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        lab, unl, slots = self.sampler.slots(int(step))
        local = np.empty(len(slots), np.int64)
        local[slots] = self._local_labeled[lab]
        local[~slots] = self._local_unlabeled[unl]
        return local, slots

    def indices(self, step: int) -> np.ndarray:
        """int64 [b]: the global train-split index of each example of `batch(step)`."""
        return self._local_indices(step)[0] + self._offset

    def batch(self, step: int) -> dict:
        """This host's share of global step `step`'s batch; a pure function of (config, step)."""
        local, slots = self._local_indices(step)
        labels, masks = {}, {}
        for name, values in self._labels.items():
            mask = slots & self._known[name][local]
            if self.info.labels[name]:
                out = np.full(len(slots), -1, np.int32)
            else:
                out = np.full(len(slots), np.nan, np.float32)
            out[mask] = values[local[mask]]
            labels[name], masks[name] = out, mask.astype(np.float32)
        images = _to_float(self._images[local], self.info.image_range)
        if self._labeled_max_shift and slots.any():
            count, most = int(slots.sum()), self._labeled_max_shift
            shifts = augment.random_shifts(self._seed, step, count, most)
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


def _strata(config, info: DatasetInfo, labels: dict[str, np.ndarray]) -> np.ndarray | None:
    """What stratified selection balances: the label of the first supervised categorical code
    (for CelebA: the first chosen attribute, so e.g. half the labelled faces smile), else the
    first categorical label; None if there is none (then selection is random)."""
    for c in config.latents.codes:
        label = c.get("label", "") or ""
        if label and info.labels.get(label):
            return labels[label]
    for name, classes in info.labels.items():
        if classes:
            return labels[name]
    return None


def create_train_data(
    exp,
    workdir: str | None,
    *,
    process_index: int = 0,
    process_count: int = 1,
) -> TrainData:
    """Loads this host's block of the train split, fixes the labelled subset, builds batches.

    `exp` is the run's `experiment.Experiment` (its config already checked); the subset has
    `exp.num_labeled` examples. It is read back from `workdir` when a previous run wrote it
    there (resume), else chosen from config.data.labeled_seed and written there by process 0
    (labeled_subset.json: indices and count per class; for a folder also the indices per label,
    and label_map.json, the class names of each label). Downloads the data set first if
    config.data.download allows; raises DataNotFoundError (fast) when it is absent and not to be
    downloaded, or when the download fails.
    """
    config = exp.config
    if problems := availability_problems(config):
        raise DataNotFoundError("\n".join(problems))
    d = config.data
    info = exp.dataset
    is_folder = d.name == registry.FOLDER
    if process_count == 1:
        images, labels = _load_uint8(config, "train")
        num_train = len(images)  # the real count (differs from the table under mock_data)
        start, stop = 0, num_train
        all_labels = labels
    else:
        num_train = info.num_train
        start, stop = host_block(num_train, process_index, process_count)
        images, labels = _load_uint8(config, f"train[{start}:{stop}]")
        all_labels = None
    info = dataclasses.replace(info, num_train=num_train)
    n_lab = exp.num_labeled
    if n_lab > num_train:
        raise ValueError(f"config.data.num_labeled: {n_lab} > {num_train} training examples")

    record = labeled_subset.load(workdir) if workdir else None
    per_label = None  # {label: indices} when labels are subsampled apart (a folder).
    if record is not None:
        indices, saved = record
        if (saved.get("dataset"), len(indices)) != (d.name, n_lab):
            raise ValueError(
                f"{workdir}/{labeled_subset.SUBSET_FILE} holds {len(indices)} labelled examples "
                f"of {saved.get('dataset')}, but the config asks for {n_lab} of {d.name}; use a "
                f"fresh work dir (or delete that file) to choose a new subset"
            )
        if is_folder:
            source = folder.read_source(d)
            if saved.get("source") != source.digest:
                raise ValueError(
                    f"{workdir}/{labeled_subset.SUBSET_FILE} was chosen from another CSV or "
                    f"folder than {d.labels_csv} and {d.images_dir} hold now; use a fresh work dir"
                )
            per_label = {k: np.asarray(v, np.int64) for k, v in saved["indices_per_label"].items()}
    else:
        description = dict(dataset=d.name, num_train=num_train, labeled_seed=d.labeled_seed)
        if is_folder:
            source = folder.read_source(d)
            per_label = registry.folder_labeled(config)
            indices = np.unique(np.concatenate([np.zeros(0, np.int64), *per_label.values()]))
            train_rows = source.rows("train")
            counts = _folder_counts(source, train_rows, per_label)
            description.update(
                selection=d.labeled_selection,
                source=source.digest,
                split_from=source.split_from,
                num_test=int(source.is_test.sum()),
                indices_per_label={k: [int(i) for i in v] for k, v in per_label.items()},
            )
            logging.info(
                "Folder %s: %d train rows, %d test rows (from the %s); labelled subset: %d "
                "examples carry a label; per label and class: %s",
                d.images_dir,
                num_train,
                int(source.is_test.sum()),
                source.split_from,
                len(indices),
                counts,
            )
        else:
            if all_labels is None:
                # Every host needs all train labels (to stratify, and to log the count per
                # class); only the labels are read, images stay undecoded.
                all_labels = _load_labels(config, info)
            strata = _strata(config, info, all_labels)
            # No categorical label (or random selection): one permutation of all N indices.
            selection = d.labeled_selection if strata is not None else "random"
            if strata is None:
                strata = np.zeros(num_train, np.int64)
            indices = labeled_subset.select_labeled(strata, n_lab, selection, d.labeled_seed)
            counts = labeled_subset.class_counts(all_labels, indices)
            description["selection"] = selection
            logging.info("Labelled subset: %d of %d; per class: %s", n_lab, num_train, counts)
        if workdir and process_index == 0:
            path = labeled_subset.save(workdir, indices, counts, description)
            logging.info("Wrote the labelled subset to %s.", path)
            if is_folder:
                path = labeled_subset.save_json(
                    workdir, folder.LABEL_MAP_FILE, folder.read_source(d).label_map()
                )
                logging.info("Wrote the class names of each label to %s.", path)

    def local_mask(global_indices: np.ndarray) -> np.ndarray:
        mask = np.zeros(stop - start, bool)
        mine = global_indices[(global_indices >= start) & (global_indices < stop)]
        mask[mine - start] = True
        return mask

    is_labeled = local_mask(indices)
    if per_label is None:
        known = {name: is_labeled for name in info.labels}
    else:
        known = {name: local_mask(per_label[name]) for name in info.labels}
    local_labeled = np.flatnonzero(is_labeled)
    local_unlabeled = np.flatnonzero(~is_labeled)
    if n_lab and not len(local_labeled):
        raise ValueError(f"process {process_index} holds none of the {n_lab} labelled examples")
    if n_lab < num_train and not len(local_unlabeled):
        raise ValueError(f"process {process_index} holds no unlabelled examples")
    sampler_ = sampler.Sampler(
        seed=config.seed,
        schedule=_schedule(config, n_lab / num_train),
        mode=d.batch_mode,
        mix_share=float(d.mix_labeled_share),
        batch_size=config.batch_size // process_count,
        num_labeled_local=len(local_labeled),
        num_unlabeled_local=len(local_unlabeled),
        has_labeled=n_lab > 0,
        has_unlabeled=n_lab < num_train,
    )
    return TrainData(
        info=info,
        images=images,
        labels=labels,
        known=known,
        offset=start,
        labeled_indices=indices,
        sampler_=sampler_,
        local_labeled=local_labeled,
        local_unlabeled=local_unlabeled,
        prefetch=int(d.prefetch),
        seed=config.seed,
        labeled_max_shift=int(d.labeled_max_shift),
    )


def _folder_counts(
    source: folder.Source, train_rows: np.ndarray, per_label: dict[str, np.ndarray]
) -> dict[str, dict]:
    """{label: {class name: count}} of the kept labels ({'count': n} for a continuous one)."""
    counts = {}
    for name, kept in per_label.items():
        label = source.labels[name]
        values = source.values[name][train_rows[kept]]
        if label.num_classes:
            found = np.bincount(values, minlength=label.num_classes)
            counts[name] = {c: int(k) for c, k in zip(label.classes, found, strict=True)}
        else:
            counts[name] = {"count": len(kept)}
    return counts


def _load_labels(config, info: DatasetInfo) -> dict[str, np.ndarray]:
    """All train labels (images not decoded), in tfds file order."""
    builder = _builder(config)
    read_config = tfds.ReadConfig(interleave_cycle_length=1)
    ds = builder.as_dataset(
        split="train",
        shuffle_files=False,
        read_config=read_config,
        decoders={"image": tfds.decode.SkipDecoding()},
    )
    celeba = info.kind == "celeba"

    def fn(example):
        source = example["attributes"] if celeba else example
        return {n: tf.cast(source[n], tf.int32) for n in info.labels}

    ds = ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE).batch(8192)
    out = collections.defaultdict(list)
    for chunk in tfds.as_numpy(ds):
        for k, v in chunk.items():
            out[k].append(v)
    return {k: np.concatenate(v) for k, v in out.items()}
