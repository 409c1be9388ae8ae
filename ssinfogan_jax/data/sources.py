"""Where a run's images and labels come from: a `DataSource`, built once per run.

    source = sources.from_config(config.data, image_shape=..., continuous_range=...)
    source = sources.ArraySource({"train": (images, labels), "test": (images, labels)})
    source.spec                      # DataSpec: shapes, range, sizes, labels; no example read
    source.prepare()                 # makes it loadable (a tfds build, a folder's conversion)
    images, labels = source.load("train")        # uint8 [N, H, W, C], {label: [N]}
    source.num_examples("train")     # the split's size as built (a partial set has its own)

Three kinds:
- `TfdsSource`: every registered tfds set (data/registry.py), prepared by data/builders.py from
  local files or a download;
- `FolderSource`: your images and a CSV of labels (data/folder.py);
- `ArraySource`: arrays a researcher passes from Python.

A split is 'train', 'test' or 'train[a:b]' (a contiguous block of the train split, in its
stored order: what one host of several reads). Labels are int32 class indices (-1 where an
example lacks the label) or float32 values in the codes' range (NaN where it lacks it).
Everything that depends on what a data set *is* lives in its source or its registry entry;
the input pipeline and the loop only call this interface.
"""

from __future__ import annotations

import collections
import hashlib
import os
from collections.abc import Mapping, Sequence

import numpy as np

from ssinfogan_jax.data import folder, labeled_subset, registry

DataSpec = registry.DataSpec
Arrays = tuple[np.ndarray, Mapping[str, np.ndarray]]  # (uint8 images [N, H, W, C], labels)


def to_float(images: np.ndarray, image_range: tuple[float, float]) -> np.ndarray:
    """uint8 [..., C] -> float32 in `image_range` (0 -> low, 255 -> high)."""
    lo, hi = image_range
    scale = np.float32((hi - lo) / 255.0)
    return images.astype(np.float32) * scale + np.float32(lo)


def _size(shape: Sequence[int]) -> str:
    """(64, 64, 3) -> '64x64x3'."""
    return "x".join(str(int(d)) for d in shape)


def _kind_of(image_shape: Sequence[int]) -> str:
    """The kind (registry.KINDS: the value range) of images a source converts or is given at
    a net's shape: grey ones in [0, 1] (the MNIST nets), colour ones in [-1, 1]."""
    return "mnist" if len(image_shape) == 3 and image_shape[2] == 1 else "rgb32"


def _block(split: str) -> tuple[str, slice]:
    """'train[a:b]' -> ('train', slice(a, b)); 'test' -> ('test', slice(None))."""
    name, _, rest = split.partition("[")
    if not rest:
        return name, slice(None)
    start, _, stop = rest.rstrip("]").partition(":")
    return name, slice(int(start or 0), int(stop) if stop else None)


class DataSource:
    """A data set: its facts (`spec`) and its examples (`load`).

    Attributes:
      spec: the data set's static facts.
      per_label_subset: examples may lack some labels, so the labelled subset is chosen per
        label among the examples that carry it (`labeled_subset.choose_per_label`); otherwise
        one subset carries every label (`labeled_subset.choose`).
      class_names: {label: class names in code order} where the data names its classes.
      judge_key: what the judge's cache key names the data by (two sources with the same key
        must hold the same test and train images).
    """

    spec: DataSpec
    per_label_subset: bool = False
    class_names: Mapping[str, list[str]] = {}

    @property
    def judge_key(self) -> str:
        return self.spec.name

    @property
    def fingerprint(self) -> str:
        """What the work dir's labelled subset records of the data, where it is chosen per
        label (a resume from other data is refused); '' = the spec's name says it all."""
        return ""

    def describe(self) -> str:
        """The data in a few words, for the log and messages."""
        return self.spec.name

    def subset_record(self) -> dict:
        """More facts for the work dir's labelled subset file."""
        return {}

    def label_map(self) -> dict | None:
        """What each code value means, for the work dir's label_map.json; None: nothing to
        add (the classes are the indices)."""
        return None

    def problems(self) -> list[str]:
        """Why the data cannot be loaded here, one line each; [] = it can."""
        return []

    def prepare(self) -> None:
        """Makes `load` work (e.g. builds the tfds set); raises DataNotFoundError or
        FolderError, so bad input stops a run before it writes anything."""

    def load(self, split: str) -> Arrays:
        """(uint8 [N, H, W, C] in the spec's geometry, {label: [N]}) of a split."""
        raise NotImplementedError

    def load_labels(self, split: str) -> dict[str, np.ndarray]:
        """The labels of a split, without decoding its images where the source can."""
        return dict(self.load(split)[1])

    def num_examples(self, split: str) -> int:
        """The size of 'train' or 'test' as built, once `prepare` has run (the spec's sizes
        are the published set's; a set built from fewer files has fewer)."""
        return self.spec.num_train if split == "train" else self.spec.num_test

    def load_float(self, split: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """A whole split as float32 [N, H, W, C] in spec.image_range, and its labels."""
        images, labels = self.load(split)
        return to_float(images, self.spec.image_range), dict(labels)

    def num_labeled(self, subset: labeled_subset.SubsetSpec, num_train: int | None = None) -> int:
        """The labelled subset's size: examples that carry at least one chosen label, of a
        train split of `num_train` examples (default: the spec's; where the subset is chosen
        per label, the labels themselves are counted)."""
        if not self.per_label_subset:
            return subset.count(self.spec.num_train if num_train is None else num_train)
        per_label = labeled_subset.choose_per_label(subset, self.load_labels("train"))
        return len(labeled_subset.union(per_label))


# ----------------------------------------------------------------------------------------------
# tfds.


class TfdsSource(DataSource):
    """A tfds set of the registry, prepared in `data_dir` from `raw_dir` or by a download."""

    def __init__(
        self,
        spec: DataSpec,
        *,
        data_dir: str = "",
        raw_dir: str = "",
        download: str = "auto",
        celeba_crop: tuple[int, int, int, int] | None = None,
    ):
        self.spec = spec
        self.data_dir, self.raw_dir, self.download = data_dir, raw_dir, download
        self.celeba_crop = tuple(celeba_crop) if celeba_crop else None  # CelebA's only

    @property
    def judge_key(self) -> str:
        """The set's name, and its size where it is not its kind's (CelebA at 64x64: a judge
        of its own; the 32x32 judge keeps the key it always had)."""
        if self.spec.image_shape == registry.KINDS[self.spec.kind][0]:
            return self.spec.name
        h, w = self.spec.image_shape[:2]
        return f"{self.spec.name}_{h}x{w}"

    def problems(self) -> list[str]:
        from ssinfogan_jax.data import builders  # TensorFlow: only where tfds is read.

        name = self.spec.name
        try:
            prepared = builders.is_prepared(name, self.data_dir)
        except Exception as e:
            return [f"config.data.data_dir: cannot read {self.data_dir!r}: {e}"]
        if prepared or name in registry.EMBEDDED:
            return []
        if not self.raw_dir:
            if self.download == "auto" and name not in registry.NOT_DOWNLOADABLE:
                return []  # Downloaded when first loaded.
            return [builders.not_prepared_message(name, self.data_dir, self.download)]
        if missing := builders.missing_raw_files(name, self.raw_dir):
            return [
                f"config.data.raw_dir: {self.raw_dir} lacks {', '.join(missing)} to prepare "
                f"{name}; " + builders.what_to_place(name, self.raw_dir, self.data_dir)
            ]
        return []

    def prepare(self) -> None:
        from ssinfogan_jax.data import builders

        if problems := self.problems():
            raise registry.DataNotFoundError("\n".join(problems))
        builders.ensure_prepared(self.spec.name, self.data_dir, self.raw_dir, self.download)

    def _builder(self):
        from ssinfogan_jax.data import builders

        builders.ensure_prepared(self.spec.name, self.data_dir, self.raw_dir, self.download)
        return builders.builder(self.spec.name, self.data_dir)

    def num_examples(self, split: str) -> int:
        """From the built set's metadata (no example is read)."""
        return int(self._builder().info.splits[split].num_examples)

    def preprocess_fn(self):
        """tf example -> (uint8 image in the final geometry, {label: value})."""
        from ssinfogan_jax.data.tf_setup import tf

        spec = self.spec
        celeba = spec.kind == "celeba"
        crop = self.celeba_crop

        def label(name, value):
            if spec.labels[name]:
                return tf.cast(value, tf.int32)
            # Continuous: float32, mapped from its stored range onto the codes' range [-r, r].
            r = spec.continuous_range
            low, high = spec.label_ranges.get(name, (-r, r))
            return (tf.cast(value, tf.float32) - (low + high) / 2) * (2 * r / (high - low))

        def fn(example):
            image = example["image"]
            if celeba:  # A fixed face crop, area-resized.
                top, left, h, w = crop
                image = image[top : top + h, left : left + w]
                image = tf.image.resize(image, spec.image_shape[:2], method="area")
                image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
                labels = {a: tf.cast(example["attributes"][a], tf.int32) for a in spec.labels}
            else:
                labels = {n: label(n, example[n]) for n in spec.labels}
            return {"image": tf.ensure_shape(image, spec.image_shape), "labels": labels}

        return fn

    def load(self, split: str) -> Arrays:
        from ssinfogan_jax.data.tf_setup import tf, tfds

        spec = self.spec
        builder = self._builder()
        # cycle_length 1: read files in order, so position i of 'train[a:b]' is index a + i.
        read_config = tfds.ReadConfig(interleave_cycle_length=1)
        ds = builder.as_dataset(split=split, shuffle_files=False, read_config=read_config)
        ds = ds.map(self.preprocess_fn(), num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.batch(2048).prefetch(2)
        images, labels = [], collections.defaultdict(list)
        for chunk in tfds.as_numpy(ds):
            images.append(chunk["image"])
            for k, v in chunk["labels"].items():
                labels[k].append(v)
        empty = np.zeros((0, *spec.image_shape), np.uint8)
        out = {
            k: np.concatenate(labels[k]) if labels[k] else np.zeros(0, np.int32)
            for k in spec.labels
        }
        return (np.concatenate(images) if images else empty), out

    def load_labels(self, split: str) -> dict[str, np.ndarray]:
        from ssinfogan_jax.data.tf_setup import tf, tfds

        spec = self.spec
        read_config = tfds.ReadConfig(interleave_cycle_length=1)
        ds = self._builder().as_dataset(
            split=split,
            shuffle_files=False,
            read_config=read_config,
            decoders={"image": tfds.decode.SkipDecoding()},
        )
        celeba = spec.kind == "celeba"

        def fn(example):
            values = example["attributes"] if celeba else example
            return {n: tf.cast(values[n], tf.int32) for n in spec.labels}

        ds = ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE).batch(8192)
        out = collections.defaultdict(list)
        for chunk in tfds.as_numpy(ds):
            for k, v in chunk.items():
                out[k].append(v)
        return {k: np.concatenate(v) for k, v in out.items()}


# ----------------------------------------------------------------------------------------------
# Your images and a CSV.


class FolderSource(DataSource):
    """A folder of images and a CSV (data/folder.py), converted once into a tfds set in
    `data_dir`; the train split is the CSV's train rows in CSV order."""

    per_label_subset = True

    def __init__(self, source: folder.Source, spec: DataSpec, data_dir: str = ""):
        self.source, self.spec = source, spec
        self.data_dir = registry.default_data_dir(data_dir)
        self.class_names = {
            name: list(label.classes) for name, label in source.labels.items() if label.classes
        }

    @property
    def judge_key(self) -> str:
        h, w = self.spec.image_shape[:2]
        return f"{registry.FOLDER}_{self.source.digest[:16]}_{h}x{w}"

    @property
    def fingerprint(self) -> str:
        return self.source.digest

    def describe(self) -> str:
        return f"the folder {self.source.images_dir} with {self.source.labels_csv}"

    def subset_record(self) -> dict:
        return dict(split_from=self.source.split_from, num_test=int(self.source.is_test.sum()))

    def label_map(self) -> dict:
        return self.source.label_map()

    def prepare(self) -> None:
        folder.prepare(self.source, self.spec.image_shape, self.data_dir)

    def _rows(self, split: str) -> np.ndarray:
        name, block = _block(split)
        return self.source.rows(name)[block]

    def load(self, split: str) -> Arrays:
        rows = self._rows(split)
        images = folder.load_images(self.source, self.spec.image_shape, self.data_dir)[rows]
        return images, self.load_labels(split)

    def load_labels(self, split: str) -> dict[str, np.ndarray]:
        rows = self._rows(split)
        return {name: self.source.values[name][rows] for name in self.spec.labels}


# ----------------------------------------------------------------------------------------------
# Arrays from Python.


class ArraySource(DataSource):
    """In-memory arrays: {'train': (images, labels), 'test': (images, labels)}.

    images: uint8 [N, H, W, C] of the net's shape `image_shape` (any (H, W, C) with C 1 or 3
    when not given): grey ones are shown in [0, 1] (the MNIST nets), colour ones in [-1, 1].
    labels: {name: [N]}: integers (class indices; -1 = unlabelled) or floats (a continuous
    label; NaN = unlabelled), mapped linearly from `label_ranges[name]` (default: the train
    split's min and max) onto the codes' range. `num_classes` overrides max + 1 per label.
    When some example lacks some label, the labelled subset is chosen per label.
    """

    def __init__(
        self,
        splits: Mapping[str, Arrays],
        *,
        name: str = "arrays",
        num_classes: Mapping[str, int] | None = None,
        label_ranges: Mapping[str, tuple[float, float]] | None = None,
        continuous_range: float = 1.0,
        image_shape: Sequence[int] = (),
    ):
        problems = []
        for split in ("train", "test"):
            if split not in splits:
                problems.append(f"data: no {split!r} split (give 'train' and 'test')")
        if problems:
            raise ValueError("; ".join(problems))
        (train_images, train_labels), (test_images, test_labels) = splits["train"], splits["test"]
        shape = tuple(int(d) for d in train_images.shape[1:])
        kind = _kind_of(shape)
        for split, (images, labels) in splits.items():
            if images.dtype != np.uint8 or tuple(images.shape[1:]) != shape:
                problems.append(
                    f"data[{split!r}]: images must be uint8 [N, H, W, C] of one shape, got "
                    f"{images.dtype} {images.shape}"
                )
            if set(labels) != set(train_labels):
                problems.append(f"data[{split!r}]: labels {sorted(labels)} differ from train's")
            problems += [
                f"data[{split!r}]: label {k!r} has {len(v)} values for {len(images)} images"
                for k, v in labels.items()
                if len(v) != len(images)
            ]
        net = tuple(int(d) for d in image_shape)
        if net and shape != net:
            h, w, c = net
            problems.append(
                f"data['train']: images are {_size(shape)}, but the net (config.model.arch) "
                f"makes {_size(net)}; pass uint8 [N, {h}, {w}, {c}] arrays (resize them), or "
                f"set config.model.arch to a net of {_size(shape)} images"
            )
        elif len(shape) != 3 or shape[2] not in (1, 3):
            problems.append(
                f"data['train']: images of shape {shape}; expected uint8 [N, H, W, C] with C 1 "
                f"(grey) or 3 (colour)"
            )
        if problems:
            raise ValueError("; ".join(problems))
        num_classes, ranges = dict(num_classes or {}), {}
        self._splits = {}
        labels_out = {}
        for label, values in train_labels.items():
            values = np.asarray(values)
            if np.issubdtype(values.dtype, np.integer):
                both = np.concatenate([values, np.asarray(test_labels[label])])
                labels_out[label] = num_classes.get(label) or int(both.max(initial=-1)) + 1
            else:
                labels_out[label] = 0
                kept = values[~np.isnan(values)]
                given = (label_ranges or {}).get(label)
                ranges[label] = tuple(given) if given else (float(kept.min()), float(kept.max()))
        r = float(continuous_range)
        for split, (images, labels) in splits.items():
            out = {}
            for label, values in labels.items():
                values = np.asarray(values)
                if labels_out[label]:
                    out[label] = values.astype(np.int32)
                else:  # As TfdsSource: from the label's range onto [-r, r].
                    low, high = ranges[label]
                    out[label] = (
                        (values.astype(np.float32) - np.float32((low + high) / 2))
                        * np.float32(2 * r / (high - low))
                    ).astype(np.float32)
            self._splits[split] = (images, out)
        self.per_label_subset = any(
            bool(np.any(v < 0) if labels_out[k] else np.any(np.isnan(v)))
            for k, v in self._splits["train"][1].items()
        )
        digest = hashlib.sha256()
        for split in ("train", "test"):
            images, labels = self._splits[split]
            digest.update(images.tobytes())
            for k in sorted(labels):
                digest.update(k.encode() + labels[k].tobytes())
        self._digest = digest.hexdigest()
        self.spec = DataSpec(
            name=name,
            kind=kind,
            image_shape=shape,
            image_range=registry.KINDS[kind][1],
            num_train=len(train_images),
            num_test=len(test_images),
            labels=labels_out,
            label_ranges=ranges,
            continuous_range=r,
        )

    @property
    def judge_key(self) -> str:
        """Names the arrays' digest, and their size where it is not their kind's (as
        TfdsSource's: the keys of 28x28x1 and 32x32x3 arrays are the ones they always had)."""
        key = f"{self.spec.name}_arrays_{self._digest[:16]}"
        if self.spec.image_shape == registry.KINDS[self.spec.kind][0]:
            return key
        h, w = self.spec.image_shape[:2]
        return f"{key}_{h}x{w}"

    @property
    def fingerprint(self) -> str:
        return self._digest

    def describe(self) -> str:
        return f"arrays ({self.spec.name})"

    def load(self, split: str) -> Arrays:
        name, block = _block(split)
        images, labels = self._splits[name]
        return images[block], {k: v[block] for k, v in labels.items()}


# ----------------------------------------------------------------------------------------------
# From the config (the registry's entry for each kind).


def from_config(
    data,
    *,
    image_shape: tuple[int, ...],
    continuous_range: float,
    code_labels: Sequence[str] = (),
) -> DataSource:
    """The source of `config.data` for a net that makes `image_shape` images, whose codes
    name `code_labels`.

    Raises ValueError (an unknown name) or folder.FolderError (a folder that cannot be used).
    """
    if data.name == registry.FOLDER:  # Converted to the net's size (one build per size).
        source = folder.read_source(data)
        num_test = int(source.is_test.sum())
        spec = registry.spec_of(
            data.name,
            registry.Dataset(
                _kind_of(image_shape),
                len(source.files) - num_test,
                num_test,
                {name: label.num_classes for name, label in source.labels.items()},
            ),
            continuous_range=continuous_range,
            image_shape=image_shape,
        )
        return FolderSource(source, spec, data.data_dir)
    spec = registry.spec_of(
        data.name,
        registry.entry(data.name),
        continuous_range=continuous_range,
        attributes=tuple(data.celeba_attributes),
        code_labels=code_labels,
        image_shape=image_shape,
    )
    return TfdsSource(
        spec,
        data_dir=data.data_dir,
        raw_dir=data.raw_dir,
        download=data.download,
        celeba_crop=tuple(data.celeba_crop),
    )


def as_source(
    data,
    continuous_range: float = 1.0,
    name: str = "arrays",
    image_shape: Sequence[int] = (),
) -> DataSource:
    """`data` if it is a DataSource, else ArraySource(data) for a net of `image_shape`."""
    if isinstance(data, DataSource):
        return data
    return ArraySource(data, name=name, continuous_range=continuous_range, image_shape=image_shape)


def default_judge_dir(data_dir: str) -> str:
    """Where judges are cached by default: <data_dir>/ssinfogan_classifiers."""
    return os.path.join(registry.default_data_dir(data_dir), "ssinfogan_classifiers")


__all__ = [
    "ArraySource",
    "DataSource",
    "DataSpec",
    "FolderSource",
    "TfdsSource",
    "as_source",
    "default_judge_dir",
    "from_config",
    "to_float",
]
