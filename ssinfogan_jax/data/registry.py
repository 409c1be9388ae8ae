"""What each data set is, without reading it: image geometry, range, split sizes, labels.

    info = get_dataset_info(config)          # DatasetInfo; no example is read
    problems = find_problems(config)         # one line per bad config.data / code-label field

A data set is one entry of `DATASETS`: its preprocessing kind (how a tfds example becomes a
training image, see `KINDS` and `input_pipeline`), its split sizes and its labels. Any other
tfds name with 28x28x1 or 32x32x3 images also works; its facts are read from tfds's metadata.
`FOLDER` ('folder') is the user's own images: its facts come from the CSV and the folder
(`data/folder.py`), its kind from the architecture's shape.
Nothing here imports TensorFlow at module level, so the train step's imports stay light.
"""

from __future__ import annotations

import dataclasses

import ml_collections
import numpy as np

from ssinfogan_jax.data import digit_scenes, folder, labeled_subset, sampler

# Preprocessing kinds: image shape and range after preprocessing.
#   mnist   28x28x1 in [0, 1] (G ends in a sigmoid, as the reference)
#   rgb32   32x32x3 in [-1, 1] (tanh G)
#   celeba  a fixed face crop (config.data.celeba_crop), area-resized to 32x32x3, in [-1, 1];
#           labels = the chosen binary attributes
KINDS = {
    "mnist": ((28, 28, 1), (0.0, 1.0)),
    "rgb32": ((32, 32, 3), (-1.0, 1.0)),
    "celeba": ((32, 32, 3), (-1.0, 1.0)),
}


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A registry entry: kind, (train, test) sizes, labels {name: classes, 0 = continuous}."""

    kind: str
    num_train: int
    num_test: int
    labels: dict[str, int]
    # A continuous label's range as stored, (low, high); the pipeline maps it linearly onto the
    # codes' range [-r, r] (config.latents.continuous_range).
    label_ranges: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    # The version of a set rendered here (digit_scenes), whose pixels change with it: the
    # judge's cache key names it, so a judge of older renders is never loaded for newer ones.
    version: str = ""


DATASETS = {
    "digits": Dataset("mnist", 1438, 359, {"label": 10}),  # scikit-learn's 8x8, offline
    "mnist": Dataset("mnist", 60000, 10000, {"label": 10}),
    "fashion_mnist": Dataset("mnist", 60000, 10000, {"label": 10}),
    "kmnist": Dataset("mnist", 60000, 10000, {"label": 10}),
    "svhn_cropped": Dataset("rgb32", 73257, 26032, {"label": 10}),
    "cifar10": Dataset("rgb32", 50000, 10000, {"label": 10}),
    "celeb_a": Dataset("celeba", 162770, 19962, {}),  # labels: config.data.celeba_attributes
    # Synthetic, rendered from an IDX folder (data/digit_scenes.py); the sizes are the source's
    # (MNIST's here: another IDX source gives its own).
    "digit_scenes": Dataset(
        "rgb32",
        digit_scenes.SPLIT_SIZES["train"],
        digit_scenes.SPLIT_SIZES["test"],
        dict(digit_scenes.LABELS),
        {"rotation": digit_scenes.ROTATION_RANGE},
        digit_scenes.VERSION,
    ),
}
# config.data.download: what happens when a set is not prepared and no raw_dir is given.
DOWNLOADS = ("auto", "never")  # tfds's download_and_prepare; stop with how to prepare offline
# Sets that tfds cannot download: built from files only (see data/builders.py).
NOT_DOWNLOADABLE = ("digit_scenes",)
CELEBA = "celeb_a"
FOLDER = "folder"  # Your own images; not a table entry (see _from_folder).
CELEBA_IMAGE_HW = (218, 178)  # tfds celeb_a: img_align_celeba, 218 x 178.


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    name: str
    kind: str
    image_shape: tuple[int, int, int]  # after preprocessing
    image_range: tuple[float, float]  # (0, 1) or (-1, 1)
    num_train: int
    num_test: int
    labels: dict[str, int]  # label name -> number of classes (0 = continuous)
    label_ranges: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    version: str = ""  # Dataset.version


def celeba_attributes() -> tuple[str, ...]:
    from tensorflow_datasets.datasets.celeb_a import celeb_a_dataset_builder

    return tuple(celeb_a_dataset_builder.ATTR_HEADINGS)


def _from_tfds(name: str) -> Dataset:
    """The entry of a tfds set that is not in DATASETS, from tfds's metadata; raises ValueError."""
    import difflib

    from ssinfogan_jax.data.tf_setup import tfds

    try:
        builder_cls = tfds.builder_cls(name)
    except Exception:
        names = tfds.list_builders(with_community_datasets=False)  # No network.
        close = difflib.get_close_matches(name, [*DATASETS, *names], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"config.data.name: unknown data set {name!r}{hint} (known here: "
            f"{', '.join(sorted(DATASETS))}, or any tfds name with 28x28x1 or 32x32x3 images)"
        ) from None
    info = builder_cls(data_dir="/nonexistent-tfds-dir").info
    shape = tuple(info.features["image"].shape) if "image" in info.features else None
    kind = next((k for k, (s, _) in KINDS.items() if s == shape and k != "celeba"), None)
    if kind is None:
        raise ValueError(
            f"config.data.name: {name!r} has images {shape}; supported are 28x28x1 "
            f"(MNIST-like), 32x32x3 and celeb_a"
        )
    splits = info.splits
    label = info.features["label"].num_classes if "label" in info.features else None
    return Dataset(
        kind,
        splits["train"].num_examples if "train" in splits else 0,
        splits["test"].num_examples if "test" in splits else 0,
        {"label": label} if label else {},
    )


def _from_folder(config: ml_collections.ConfigDict) -> Dataset:
    """The entry of config.data's folder and CSV; raises folder.FolderError.

    The kind is the one whose shape the architecture makes (the images are converted to it).
    """
    from ssinfogan_jax import models  # Only here: the registry stays free of JAX otherwise.

    source = folder.read_source(config.data)
    arch = models.ARCHITECTURES.get(config.model.arch)
    shape = arch.image_shape if arch else KINDS["rgb32"][0]
    kind = "mnist" if shape == KINDS["mnist"][0] else "rgb32"
    num_test = int(source.is_test.sum())
    labels = {name: label.num_classes for name, label in source.labels.items()}
    return Dataset(kind, len(source.files) - num_test, num_test, labels)


def get_dataset_info(config: ml_collections.ConfigDict) -> DatasetInfo:
    """Shapes, ranges, split sizes and labels of config.data.name; raises ValueError if unknown
    (folder.FolderError for a folder that cannot be used)."""
    name = config.data.name
    if name == FOLDER:
        entry = _from_folder(config)
    else:
        entry = DATASETS.get(name) or _from_tfds(name)
    labels = dict(entry.labels)
    if entry.kind == "celeba":
        # The listed attributes, plus any attribute a code names (so a config that only edits
        # its codes works); each a binary label of that name.
        known = celeba_attributes()
        names = list(config.data.celeba_attributes)
        names += [c.label for c in config.latents.codes if c.get("label") in known]
        labels = dict.fromkeys(names, 2)
    shape, value_range = KINDS[entry.kind]
    return DatasetInfo(
        name,
        entry.kind,
        shape,
        value_range,
        entry.num_train,
        entry.num_test,
        labels,
        dict(entry.label_ranges),
        entry.version,
    )


def num_labeled(config: ml_collections.ConfigDict, num_train: int) -> int:
    """The labelled subset size: config.data.num_labeled, or the fraction when it is -1.

    For a folder: the training examples that keep at least one label after the selection per
    label (`folder_labeled`)."""
    d = config.data
    if d.name == FOLDER:
        per_label = folder_labeled(config)
        return len(np.unique(np.concatenate([np.zeros(0, np.int64), *per_label.values()])))
    return labeled_subset.resolve_num_labeled(d.num_labeled, d.labeled_fraction, num_train)


def folder_labeled(config: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
    """{label: sorted int64 train-split positions that keep that label} for a folder.

    Per label, of the training rows whose cell is filled: all of them when num_labeled is -1
    and labeled_fraction is 1; else num_labeled (at most all), or that fraction, chosen by
    labeled_selection (stratified by the label's classes; random for a continuous label) with
    labeled_seed and the label's position.
    """
    d = config.data
    source = folder.read_source(d)
    train = source.rows("train")
    out = {}
    for i, (name, label) in enumerate(source.labels.items()):
        values = source.values[name][train]
        filled = np.flatnonzero(values >= 0 if label.num_classes else ~np.isnan(values))
        count = labeled_subset.resolve_num_labeled(d.num_labeled, d.labeled_fraction, len(filled))
        count = min(count, len(filled))
        if count == len(filled):
            out[name] = filled.astype(np.int64)
            continue
        strata = values[filled] if label.num_classes else None
        selection = d.labeled_selection if strata is not None else "random"
        if strata is None:
            strata = np.zeros(len(filled), np.int64)
        chosen = labeled_subset.select_labeled(strata, count, selection, [d.labeled_seed, i])
        out[name] = np.sort(filled[chosen]).astype(np.int64)
    return out


def codes_from_data(config: ml_collections.ConfigDict) -> list[ml_collections.ConfigDict]:
    """One supervised code per label of the data set, named after it: categorical with the
    label's classes (binary = 2), or continuous of size 1."""
    info = get_dataset_info(config)
    return [
        ml_collections.ConfigDict(
            dict(
                name=name,
                kind="categorical" if classes else "continuous",
                size=classes or 1,
                label=name,
            )
        )
        for name, classes in info.labels.items()
    ]


def resolve(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The config with what the data decides filled in (a copy; `config` is not changed):
    latents.codes_from_data's codes, and for a folder the judge's own cache folder (so two
    folders never share a classifier). Unchanged when the data cannot be read (the checks
    then say why)."""
    needs_codes = bool(config.latents.get("codes_from_data", False))
    is_folder = config.data.name == FOLDER
    if not needs_codes and not is_folder:
        return config
    try:
        info = get_dataset_info(config)
        codes = codes_from_data(config) if needs_codes else None
    except ValueError:
        return config
    config = ml_collections.ConfigDict(config.to_dict())
    if needs_codes:
        config.latents.codes = [*codes, *config.latents.codes]
        config.latents.codes_from_data = False
    if is_folder and not config.eval.classifier_dir:
        import os

        from ssinfogan_jax.data import builders

        digest = folder.read_source(config.data).digest
        config.eval.classifier_dir = os.path.join(
            builders.default_data_dir(config.data.data_dir),
            "ssinfogan_classifiers",
            f"{FOLDER}_{digest[:16]}_{info.image_shape[0]}x{info.image_shape[1]}",
        )
    return config


def find_problems(
    config: ml_collections.ConfigDict, process_count: int = 1, device_count: int = 1
) -> list[str]:
    """Every problem of config.data and of the codes' labels, one line each; reads no data.

    (Whether the data is present is the input pipeline's check, made when it loads.)
    """
    d, problems = config.data, []
    try:
        info = get_dataset_info(config)
    except folder.FolderError as e:
        return e.problems
    except ValueError as e:
        return [str(e)]
    is_folder = d.name == FOLDER
    # The labelled subset.
    if not 0.0 <= d.labeled_fraction <= 1.0:
        problems.append(f"config.data.labeled_fraction: {d.labeled_fraction} is not in [0, 1]")
    if d.num_labeled < -1:
        problems.append(
            f"config.data.num_labeled: {d.num_labeled} is negative (use -1 for "
            f"labeled_fraction, 0 for no labels = the InfoGAN baseline)"
        )
    elif is_folder:
        pass  # At most all of each label's filled cells (folder_labeled).
    elif info.num_train and num_labeled(config, info.num_train) > info.num_train:
        problems.append(
            f"config.data.num_labeled: {d.num_labeled} is larger than the {info.num_train} "
            f"training examples of {d.name}"
        )
    elif 0 < num_labeled(config, info.num_train) < process_count:
        problems.append(
            f"config.data.num_labeled: {d.num_labeled} labelled examples cannot be shared by "
            f"{process_count} processes (each needs at least one)"
        )
    if d.labeled_selection not in labeled_subset.SELECTIONS:
        problems.append(
            f"config.data.labeled_selection: {d.labeled_selection!r} is not one of "
            f"{labeled_subset.SELECTIONS}"
        )
    # Codes against labels.
    if is_folder:
        coded = {c.get("label", "") or "" for c in config.latents.codes}
        for name in info.labels:
            if name not in coded:
                problems.append(
                    f"config.data.labels_csv: column {name!r} is neither {folder.FILE_COLUMN!r}, "
                    f"{folder.SPLIT_COLUMN!r} nor the label of a code in config.latents.codes "
                    f"(set config.latents.codes_from_data = True for one code per column)"
                )
    for c in config.latents.codes:
        label = c.get("label", "") or ""
        if not label:
            continue
        where = f"config.latents.codes[{c.name}].label"
        if label not in info.labels:
            problems.append(
                f"{where}: {d.name} has no label {label!r} (it has {sorted(info.labels)})"
            )
            continue
        classes = info.labels[label]
        if c.kind == "categorical" and classes == 0:
            problems.append(f"{where}: {label!r} is continuous, but code {c.name} is categorical")
        elif c.kind == "categorical" and c.size != classes:
            problems.append(
                f"config.latents.codes[{c.name}].size: {c.size} differs from the {classes} "
                f"classes of label {label!r}"
            )
        elif c.kind == "continuous" and classes:
            problems.append(f"{where}: {label!r} is categorical, but code {c.name} is continuous")
    # The schedule.
    if is_folder:
        if not 0.0 <= d.test_share < 1.0:
            problems.append(f"config.data.test_share: {d.test_share} is not in [0, 1)")
        if d.unlisted_images not in ("error", "unlabeled"):
            problems.append(
                f"config.data.unlisted_images: {d.unlisted_images!r}, expected 'error' or "
                f"'unlabeled'"
            )
    if d.batch_mode not in sampler.MODES:
        problems.append(f"config.data.batch_mode: {d.batch_mode!r} is not one of {sampler.MODES}")
    for field in ("p_labeled_start", "p_labeled_step", "mix_labeled_share"):
        if not 0.0 <= d[field] <= 1.0:
            problems.append(f"config.data.{field}: {d[field]} is not in [0, 1]")
    if d.p_labeled_final != -1 and not 0.0 <= d.p_labeled_final <= 1.0:
        problems.append(
            f"config.data.p_labeled_final: {d.p_labeled_final} is neither -1 (the true "
            f"labelled fraction) nor in [0, 1]"
        )
    if d.p_labeled_every < 1:
        problems.append(f"config.data.p_labeled_every: {d.p_labeled_every} must be >= 1")
    if d.prefetch < 0:
        problems.append(f"config.data.prefetch: {d.prefetch} must be >= 0")
    if not 0 <= d.labeled_max_shift < min(info.image_shape[:2]) // 2:
        problems.append(
            f"config.data.labeled_max_shift: {d.labeled_max_shift} must be in "
            f"[0, {min(info.image_shape[:2]) // 2}) pixels for {d.name}"
        )
    # Batch.
    for count, what in ((process_count, "processes"), (device_count, "devices")):
        if config.batch_size < 1 or config.batch_size % count:
            problems.append(
                f"config.batch_size: {config.batch_size} is not a positive multiple of the "
                f"{count} {what}"
            )
            break
    # CelebA.
    if info.kind == "celeba":
        known = celeba_attributes()
        for a in d.celeba_attributes:
            if a not in known:
                problems.append(f"config.data.celeba_attributes: {a!r} is not one of {known}")
        top, left, h, w = d.celeba_crop
        height, width = CELEBA_IMAGE_HW
        if min(top, left) < 0 or min(h, w) < 1 or top + h > height or left + w > width:
            problems.append(
                f"config.data.celeba_crop: {tuple(d.celeba_crop)} (top, left, height, width) "
                f"is not inside the {height}x{width} aligned CelebA images"
            )
    return problems
