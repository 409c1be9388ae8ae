"""What each data set is, without reading it: image geometry, range, split sizes, labels.

    spec = spec_of(name, entry(name), continuous_range=1.0)    # DataSpec; no example is read
    problems = find_problems(config, spec, num_labeled)        # one line per bad data field

A data set is one entry of `DATASETS`: its preprocessing kind (how a tfds example becomes a
training image, see `KINDS` and data/sources.py), its split sizes and its labels. Any other
tfds name with 28x28x1 or 32x32x3 images also works; its facts are read from tfds's metadata.
`FOLDER` ('folder') is the user's own images: its facts come from the CSV and the folder
(data/sources.py's FolderSource), its kind from the net's channels and its size the net's.
The split sizes here are the published sets'; a set built from fewer files has its own, which
the input pipeline counts when it loads the split (the labelled count follows them).
Nothing here imports TensorFlow at module level.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import ml_collections

from ssinfogan_jax.data import digit_scenes, folder, labeled_subset, sampler

# Preprocessing kinds: image shape and range after preprocessing.
#   mnist   28x28x1 in [0, 1] (G ends in a sigmoid, as the reference)
#   rgb32   32x32x3 in [-1, 1] (tanh G)
#   celeba  a fixed face crop (config.data.celeba_crop), area-resized to 32x32x3, in [-1, 1];
#           labels = the chosen binary attributes.
# The shape is the kind's, except where the images are resized to the net's when loaded or
# converted (`RESIZED`: CelebA's crop, a folder's images): a net of another size with the
# kind's channels (dcgan_64) gets them at its size (spec_of).
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
# Sets that tfds cannot download: built from files only (data/builders.py).
NOT_DOWNLOADABLE = ("digit_scenes",)
# Sets built from what is installed (scikit-learn's digits): always preparable.
EMBEDDED = ("digits",)
FOLDER = "folder"  # Your own images; not a table entry (data/sources.py's FolderSource).
RESIZED = ("celeba",)  # Kinds resized to the net's size when loaded (and FOLDER: converted).
CELEBA_IMAGE_HW = (218, 178)  # tfds celeb_a: img_align_celeba, 218 x 178.


class DataNotFoundError(FileNotFoundError):
    """The data set is neither prepared nor preparable here (from local files or a download)."""


def default_data_dir(data_dir: str) -> str:
    """tfds's own default (~/tensorflow_datasets or $TFDS_DATA_DIR) when `data_dir` is ''."""
    return data_dir or os.path.expanduser(os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets"))


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """A data set's static facts, as a run uses them (no example is read to make one)."""

    name: str
    kind: str  # A key of KINDS: how a tfds example becomes a training image.
    image_shape: tuple[int, int, int]  # after preprocessing
    image_range: tuple[float, float]  # (0, 1) or (-1, 1)
    num_train: int
    num_test: int
    labels: dict[str, int]  # label name -> number of classes (0 = continuous)
    label_ranges: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    version: str = ""  # Dataset.version
    continuous_range: float = 1.0  # r: continuous labels are mapped onto the codes' [-r, r].


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


def entry(name: str) -> Dataset:
    """The registry entry of a tfds set (DATASETS, else tfds's metadata); raises ValueError."""
    return DATASETS.get(name) or _from_tfds(name)


def spec_of(
    name: str,
    dataset: Dataset,
    *,
    continuous_range: float = 1.0,
    attributes: Sequence[str] = (),
    code_labels: Sequence[str] = (),
    image_shape: Sequence[int] = (),
) -> DataSpec:
    """The spec of a registry entry. CelebA's labels are the chosen attributes plus any
    attribute a code names (so a config that only edits its codes works), each binary.

    `image_shape`: what the net makes. CelebA's images are resized from the crop when loaded
    (nothing prepared depends on the size) and a folder's when converted (one build per
    size), so they take the shape of any net with their kind's channels (H, W, C); every
    other set has its kind's shape, which config_checks compares with the net's."""
    labels = dict(dataset.labels)
    shape, value_range = KINDS[dataset.kind]
    if dataset.kind == "celeba":
        known = celeba_attributes()
        names = [*attributes, *(label for label in code_labels if label in known)]
        labels = dict.fromkeys(names, 2)
    resized = dataset.kind in RESIZED or name == FOLDER
    if resized and len(image_shape) == 3 and image_shape[2] == shape[2]:
        shape = tuple(int(d) for d in image_shape)
    return DataSpec(
        name,
        dataset.kind,
        shape,
        value_range,
        dataset.num_train,
        dataset.num_test,
        labels,
        dict(dataset.label_ranges),
        dataset.version,
        float(continuous_range),
    )


def find_problems(
    config: ml_collections.ConfigDict,
    spec: DataSpec,
    num_labeled: int,
    process_count: int = 1,
    device_count: int = 1,
) -> list[str]:
    """Every problem of config.data and of the codes' labels, one line each, for the data set
    of `spec` with a labelled subset of `num_labeled`; reads no data.

    (Whether the data is present is the data source's check, made before it loads.)
    """
    d, problems, info = config.data, [], spec
    is_folder = spec.name == FOLDER
    # The labelled subset.
    fraction_ok = 0.0 <= d.labeled_fraction <= 1.0
    if not fraction_ok:
        problems.append(f"config.data.labeled_fraction: {d.labeled_fraction} is not in [0, 1]")
    if d.num_labeled < -1:
        problems.append(
            f"config.data.num_labeled: {d.num_labeled} is negative (use -1 for "
            f"labeled_fraction, 0 for no labels = the InfoGAN baseline)"
        )
    elif is_folder or (d.num_labeled == -1 and not fraction_ok):
        pass  # A folder: at most all of each label's filled cells (choose_per_label).
    elif info.num_train and num_labeled > info.num_train:
        problems.append(
            f"config.data.num_labeled: {d.num_labeled} is larger than the {info.num_train} "
            f"training examples of {info.name}"
        )
    elif 0 < num_labeled < process_count:
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
                f"{where}: {info.name} has no label {label!r} (it has {sorted(info.labels)})"
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
    if is_folder:  # (data.test_share: config_checks.RANGES, for every data set.)
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
            f"[0, {min(info.image_shape[:2]) // 2}) pixels for {info.name}"
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
