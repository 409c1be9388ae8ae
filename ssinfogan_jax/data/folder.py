"""Your own images: a folder of PNG/JPEG files and a CSV with some labels filled in.

    source = read_source(config.data)     # parses and checks the CSV and the folder listing
    source.labels["smiling"]              # int32 [N] class index, -1 where the cell is blank
    builder = prepare(source, image_shape, data_dir)   # the tfds data set, built once

The CSV has a `file` column (paths relative to the images folder), an optional `split` column
(`train` or `test`; blank = train) and one column per label. A blank cell means "not labelled"
for that label only. Each label column's kind is inferred from its filled cells, and
config.data.label_kinds can override it:

    binary        true/false or yes/no (any case): classes ('false', 'true')
    categorical   integers (classes in numeric order) or any other text (in sorted order), or
                  the order config.data.label_classes gives
    continuous    numbers that are not all integers; mapped linearly from [min, max] of the
                  filled cells to [-1, 1] (the continuous codes' prior range)

Every row of the CSV is one example, in CSV order. Without a `split` column, a seeded share
(config.data.test_share, seed config.data.labeled_seed) of the rows that carry any label forms
the test split that the independent judge is trained on; those rows leave the train split.

The tfds data set (`ssinfogan_folder`) holds the images already converted to the
architecture's shape (centre-cropped to its aspect ratio, then area-resized; the colour mode
converted to 1 or 3 channels), the file name and the CSV row, in one split `images`. It lives in
the tfds data_dir under a config named by a hash of the CSV's bytes, the folder's listing
(path, size and modification time of each image) and the shape, so it is reused by the next
run and rebuilt when the CSV or the folder changes. Labels are read from the CSV, not stored.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import math
import os
import threading
from typing import ClassVar

import numpy as np

FILE_COLUMN = "file"
SPLIT_COLUMN = "split"
SPLITS = ("train", "test")
KINDS = ("categorical", "binary", "continuous")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
BUILDER_NAME = "ssinfogan_folder"
LABEL_MAP_FILE = "label_map.json"  # Written into the work dir: class names per label.
# Colour modes and the channel count they convert to without losing anything.
MODES = {"L": 1, "LA": 1, "1": 1, "RGB": 3, "RGBA": 3, "P": 3, "CMYK": 3, "YCbCr": 3}
_TRUE, _FALSE = ("true", "yes"), ("false", "no")
_SHOWN = 3  # File names quoted in a message before "...".


class FolderError(ValueError):
    """The images folder or the labels CSV cannot be used; one line per problem."""

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


@dataclasses.dataclass(frozen=True)
class Label:
    """One label column: its kind and class names (index = position); () when continuous.

    A continuous label's values are mapped from [low, high] to [-1, 1]."""

    name: str
    kind: str
    classes: tuple[str, ...] = ()
    low: float = 0.0
    high: float = 0.0

    @property
    def num_classes(self) -> int:
        """Classes of a categorical or binary label; 0 for a continuous one."""
        return 0 if self.kind == "continuous" else len(self.classes)


@dataclasses.dataclass(frozen=True, eq=False)
class Source:
    """The CSV and folder, parsed and checked.

    Attributes:
      images_dir, labels_csv: the paths.
      files: [N] the `file` cell of each row (relative to images_dir), in CSV order.
      split: bool [N], True for a test row.
      split_from: 'column' (the CSV's split column) or 'seeded share' (see the module doc).
      labels: {name: Label}, in CSV column order.
      values: {name: int32 [N] (class index, -1 blank) or float32 [N] (in [-1, 1], NaN blank)}.
      digest: hex hash of the CSV's bytes and the folder's listing.
    """

    images_dir: str
    labels_csv: str
    files: tuple[str, ...]
    is_test: np.ndarray
    split_from: str
    labels: dict[str, Label]
    values: dict[str, np.ndarray]
    digest: str

    def rows(self, split: str) -> np.ndarray:
        """int64 row numbers (CSV order) of 'train' or 'test'."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return np.flatnonzero(self.is_test if split == "test" else ~self.is_test)

    def label_map(self) -> dict:
        """What each code value means, for the work dir: {label: {kind, classes | low, high}}."""
        out = {}
        for name, label in self.labels.items():
            if label.kind == "continuous":
                out[name] = dict(kind=label.kind, low=label.low, high=label.high, range=[-1, 1])
            else:
                out[name] = dict(kind=label.kind, classes=list(label.classes))
        return out


def parse_mapping(text: str, field: str) -> dict[str, str]:
    """'a=x,b=y' -> {'a': 'x', 'b': 'y'}; raises FolderError naming `field`."""
    out = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise FolderError(
                f"{field}: {item.strip()!r} is not label=value (e.g. 'age=continuous')"
            )
        out[key.strip()] = value.strip()
    return out


def _show(names) -> str:
    names = sorted(names)
    more = f", ... ({len(names)} in all)" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


def list_images(images_dir: str) -> dict[str, tuple[int, int]]:
    """{path relative to images_dir: (size, mtime_ns)} of every PNG/JPEG below it."""
    out = {}
    root = os.path.abspath(images_dir)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fname in filenames:
            if fname.lower().endswith(IMAGE_EXTENSIONS):
                path = os.path.join(dirpath, fname)
                st = os.stat(path)
                out[os.path.relpath(path, root).replace(os.sep, "/")] = (st.st_size, st.st_mtime_ns)
    return out


def _is_int(cell: str) -> bool:
    try:
        int(cell)
        return True
    except ValueError:
        return False


def _is_float(cell: str) -> bool:
    try:
        return math.isfinite(float(cell))
    except ValueError:
        return False


def infer_kind(cells: list[str]) -> str:
    """The kind of a label column from its filled cells (see the module doc)."""
    lower = {c.lower() for c in cells}
    if lower and lower <= {*_TRUE, *_FALSE}:
        return "binary"
    if cells and all(_is_int(c) for c in cells):
        return "categorical"
    if cells and all(_is_float(c) for c in cells):
        return "continuous"
    return "categorical"


def stray_cell(name: str, cells: list[str]) -> str | None:
    """Why a column of numbers with a stray word (a typo such as 'big' among sizes) must not
    silently become a categorical label of every distinct number; None if it is not one. A
    stray is a non-numeric cell among at least 2 numbers, at most 1% of the filled cells (at
    least one)."""
    filled = [c for c in cells if c]
    stray = [(i, c) for i, c in enumerate(cells) if c and not _is_float(c)]
    numbers = len(filled) - len(stray)
    if not stray or numbers < 2 or len(stray) > max(1, len(filled) // 100):
        return None
    (row, cell), more = stray[0], len(stray) - 1
    also = f" (and {more} more such cell{'s' if more > 1 else ''})" if more else ""
    return (
        f"line {row + 2}, column {name!r}: {cell!r} is not a number, but the column's other "
        f"{numbers} filled cells are{also}; correct or blank the cell, or set "
        f"config.data.label_kinds='{name}=categorical' if the column is meant to be classes"
    )


def _classes(name: str, kind: str, cells: list[str], named: list[str] | None) -> tuple[str, ...]:
    """Class names in index order; raises FolderError."""
    if kind == "binary" and {c.lower() for c in cells} <= {*_TRUE, *_FALSE} and not named:
        return ("false", "true")
    seen = set(cells)
    if named:
        missing = [c for c in named if c not in seen]
        if missing:
            raise FolderError(
                f"config.data.label_classes: label {name!r} has no cell with class "
                f"{_show(missing)} (its classes in the CSV: {_show(seen)})"
            )
        unlisted = seen - set(named)
        if unlisted:
            raise FolderError(
                f"config.data.label_classes: label {name!r} lists {len(named)} classes, but the "
                f"CSV also has {_show(unlisted)}"
            )
        return tuple(named)
    if all(_is_int(c) for c in seen):
        return tuple(sorted(seen, key=int))
    return tuple(sorted(seen))


def _canonical(kind: str, cell: str) -> str:
    """A binary cell's class name: true/yes -> 'true', false/no -> 'false'; others as they are."""
    if kind == "binary":
        low = cell.lower()
        return "true" if low in _TRUE else "false" if low in _FALSE else cell
    return cell


def _encode(label: Label, cells: list[str]) -> np.ndarray:
    if label.kind == "continuous":
        out = np.full(len(cells), np.nan, np.float32)
        scale = 2.0 / (label.high - label.low) if label.high > label.low else 0.0
        for i, cell in enumerate(cells):
            if cell:
                out[i] = (float(cell) - label.low) * scale - 1.0
        return out
    index = {c: i for i, c in enumerate(label.classes)}
    out = np.full(len(cells), -1, np.int32)
    for i, cell in enumerate(cells):
        if cell:
            out[i] = index[_canonical(label.kind, cell)]
    return out


def _read_csv(path: str) -> tuple[list[str], list[list[str]], bytes]:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise FolderError(f"config.data.labels_csv: cannot read {path}: {e.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise FolderError(f"config.data.labels_csv: {path} is not UTF-8 text") from None
    rows = list(csv.reader(text.splitlines()))
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not rows:
        raise FolderError(f"config.data.labels_csv: {path} is empty")
    header = [h.strip() for h in rows[0]]
    body = []
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise FolderError(
                f"config.data.labels_csv: {path} line {number} has {len(row)} cells, the header "
                f"{len(header)}"
            )
        body.append([cell.strip() for cell in row])
    return header, body, raw


def _test_rows(values: dict[str, np.ndarray], share: float, seed: int) -> np.ndarray:
    """bool [N]: a seeded share of the rows that carry any label."""
    n = len(next(iter(values.values()))) if values else 0
    carries = np.zeros(n, bool)
    for v in values.values():
        carries |= v >= 0 if v.dtype.kind == "i" else ~np.isnan(v)
    candidates = np.flatnonzero(carries)
    count = round(share * len(candidates))
    chosen = np.random.default_rng([seed, 0x7E57]).permutation(candidates)[:count]
    out = np.zeros(n, bool)
    out[chosen] = True
    return out


def _read_source(
    images_dir: str,
    labels_csv: str,
    label_kinds: str,
    label_classes: str,
    test_share: float,
    seed: int,
    unlisted_images: str,
) -> Source:
    if not images_dir or not labels_csv:
        missing = [f for f, v in (("images_dir", images_dir), ("labels_csv", labels_csv)) if not v]
        raise FolderError(
            [f"config.data.{f}: empty; the folder data set needs it" for f in missing]
        )
    if not os.path.isdir(images_dir):
        raise FolderError(f"config.data.images_dir: {images_dir} is not a folder")
    header, body, raw = _read_csv(labels_csv)
    where = f"config.data.labels_csv ({labels_csv})"
    if FILE_COLUMN not in header:
        raise FolderError(f"{where}: no {FILE_COLUMN!r} column (header: {', '.join(header)})")
    duplicates = sorted({h for h in header if header.count(h) > 1})
    if duplicates or "" in header:
        raise FolderError(f"{where}: empty or repeated column names {duplicates or ['']}")
    kinds = parse_mapping(label_kinds, "config.data.label_kinds")
    named = {
        k: v.split("|")
        for k, v in parse_mapping(label_classes, "config.data.label_classes").items()
    }
    columns = {h: [row[i] for row in body] for i, h in enumerate(header)}
    files = columns.pop(FILE_COLUMN)
    split_cells = columns.pop(SPLIT_COLUMN, None)
    problems = []

    # Files against the folder.
    listing = list_images(images_dir)
    blank = sum(1 for f in files if not f)
    if blank:
        problems.append(f"{where}: {blank} rows have an empty {FILE_COLUMN!r} cell")
    files = [f.replace("\\", "/") for f in files]
    files = [f[2:] if f.startswith("./") else f for f in files]
    seen: set[str] = set()
    repeated: set[str] = set()
    for f in files:
        if f in seen:
            repeated.add(f)
        seen.add(f)
    if repeated:
        problems.append(f"{where}: {len(repeated)} files are listed twice: {_show(repeated)}")
    absent = [f for f in seen if f and f not in listing]
    if absent:
        problems.append(
            f"{where}: {len(absent)} of its {len(files)} files are not PNG/JPEG files in "
            f"{images_dir}: {_show(absent)}"
        )
    unlisted = sorted(set(listing) - seen)
    if unlisted and unlisted_images == "error":
        problems.append(
            f"config.data.images_dir: {len(unlisted)} images in {images_dir} are not in "
            f"{labels_csv}: {_show(unlisted)} (add them as rows with blank labels, or set "
            f"config.data.unlisted_images='unlabeled')"
        )

    # Kinds, classes and values.
    for name in kinds:
        if name not in columns:
            problems.append(
                f"config.data.label_kinds: {where} has no column {name!r} (label columns: "
                f"{', '.join(columns) or 'none'})"
            )
        elif kinds[name] not in KINDS:
            problems.append(f"config.data.label_kinds: {name}={kinds[name]!r}; kinds: {KINDS}")
    for name in named:
        if name not in columns:
            problems.append(
                f"config.data.label_classes: {where} has no column {name!r} (label columns: "
                f"{', '.join(columns) or 'none'})"
            )
    if problems:
        raise FolderError(problems)
    if unlisted and unlisted_images != "error":  # Unlabelled training examples.
        files += unlisted
        for cells in columns.values():
            cells += [""] * len(unlisted)
        if split_cells is not None:
            split_cells += [""] * len(unlisted)

    labels, values = {}, {}
    for name, cells in columns.items():
        filled = [c for c in cells if c]
        if name not in kinds and not named.get(name) and (stray := stray_cell(name, cells)):
            problems.append(f"{where}: {stray}")
            continue
        kind = kinds.get(name) or infer_kind(filled)
        if named.get(name) and name not in kinds:
            kind = "categorical"
        try:
            if kind == "continuous":
                bad = [c for c in filled if not _is_float(c)]
                if bad:
                    raise FolderError(
                        f"{where}: label {name!r} is continuous, but has cells {_show(set(bad))}"
                    )
                numbers = [float(c) for c in filled]
                if len(set(numbers)) < 2:
                    raise FolderError(
                        f"{where}: label {name!r} has {len(set(numbers))} distinct labelled "
                        f"values; a continuous label needs at least 2"
                    )
                label = Label(name, kind, (), min(numbers), max(numbers))
            else:
                canonical = [_canonical(kind, c) for c in filled]
                classes = _classes(name, kind, canonical, named.get(name))
                if kind == "binary" and len(classes) != 2:
                    raise FolderError(
                        f"{where}: label {name!r} is binary but has {len(classes)} classes "
                        f"({_show(classes)})"
                    )
                label = Label(name, kind, classes)
        except FolderError as e:
            problems += e.problems
            continue
        labels[name] = label
        values[name] = _encode(label, cells)

    # The split (a test_share outside [0, 1) is config_checks' one line; nothing follows it).
    share_ok = split_cells is not None or 0.0 <= test_share < 1.0
    if split_cells is not None:
        bad = {c for c in split_cells if c and c not in SPLITS}
        if bad:
            problems.append(
                f"{where}: the split column holds {_show(bad)}; allowed: train, test, blank"
            )
        is_test = np.array([c == "test" for c in split_cells], bool)
        split_from = "column"
    else:
        is_test = _test_rows(values, test_share, seed)
        split_from = "seeded share"
    # Every label needs 2 classes among the training rows.
    for name, label in labels.items():
        train_values = values[name][~is_test]
        if label.kind == "continuous":
            distinct = len(np.unique(train_values[~np.isnan(train_values)]))
        else:
            distinct = len(np.unique(train_values[train_values >= 0]))
        if distinct < 2 and share_ok:
            problems.append(
                f"{where}: label {name!r} has {distinct} labelled "
                f"{'values' if label.kind == 'continuous' else 'classes'} among the training rows; "
                f"a code needs at least 2"
            )
    if problems:
        raise FolderError(problems)
    digest = hashlib.sha256(raw)
    for path in sorted(p for p in listing if p in seen or unlisted_images != "error"):
        size, mtime = listing[path]
        digest.update(f"\0{path}\0{size}\0{mtime}".encode())
    return Source(
        images_dir=images_dir,
        labels_csv=labels_csv,
        files=tuple(files),
        is_test=is_test,
        split_from=split_from,
        labels=labels,
        values=values,
        digest=digest.hexdigest(),
    )


_CACHE: dict[tuple, Source] = {}
_CACHE_LOCK = threading.Lock()


def read_source(data) -> Source:
    """The folder and CSV of `config.data`, parsed and checked; raises FolderError.

    Cached in the process, keyed by the fields and the CSV's and folder's modification times.
    """
    key_fields = (
        data.images_dir,
        data.labels_csv,
        data.label_kinds,
        data.label_classes,
        float(data.test_share),
        int(data.labeled_seed),
        data.unlisted_images,
    )
    stamps = tuple(
        os.stat(p).st_mtime_ns if p and os.path.exists(p) else None
        for p in (data.images_dir, data.labels_csv)
    )
    key = (*key_fields, stamps)
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
    source = _read_source(*key_fields)
    with _CACHE_LOCK:
        _CACHE[key] = source
    return source


# ----------------------------------------------------------------------------------------------
# Images.


def convert(image, image_shape: tuple[int, int, int]) -> np.ndarray:
    """A PIL image -> uint8 [H, W, C] of `image_shape`: colour mode converted (1 or 3
    channels), centre-cropped to the target's aspect ratio, area-resized; untouched when it
    already has the shape."""
    from PIL import Image

    height, width, channels = image_shape
    if image.mode in ("RGBA", "LA", "P") and image.mode != ("L" if channels == 1 else "RGB"):
        # Transparent pixels over black, the usual background of the data sets here.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, rgba)
    image = image.convert("L" if channels == 1 else "RGB")
    w, h = image.size
    if (w, h) != (width, height):
        if w * height > h * width:  # Too wide: crop the sides.
            new_w = max(round(h * width / height), 1)
            left = (w - new_w) // 2
            image = image.crop((left, 0, left + new_w, h))
        elif w * height < h * width:  # Too tall: crop top and bottom.
            new_h = max(round(w * height / width), 1)
            top = (h - new_h) // 2
            image = image.crop((0, top, w, top + new_h))
        image = image.resize(
            (width, height), Image.BOX if image.size[0] >= width else Image.BICUBIC
        )
    array = np.asarray(image, np.uint8)
    return array.reshape(height, width, channels)


def scan_modes(source: Source, progress: bool = True) -> str:
    """Opens every image's header; returns the one colour mode they share.

    Raises FolderError for an unreadable image, an unsupported mode, or mixed modes (grey and
    colour in one folder)."""
    from PIL import Image, UnidentifiedImageError

    modes: dict[str, list[str]] = {}
    unreadable = []
    files = source.files
    iterator = _progress(files, "Checking images", progress)
    for f in iterator:
        path = os.path.join(source.images_dir, f)
        try:
            with Image.open(path) as im:
                modes.setdefault(im.mode, []).append(f)
        except (OSError, UnidentifiedImageError):
            unreadable.append(f)
    problems = []
    if unreadable:
        problems.append(
            f"config.data.images_dir: {len(unreadable)} images cannot be read: {_show(unreadable)}"
        )
    unsupported = [m for m in modes if m not in MODES]
    if unsupported:
        problems.append(
            f"config.data.images_dir: unsupported colour modes {unsupported} (e.g. "
            f"{modes[unsupported[0]][0]}); supported: {', '.join(MODES)}"
        )
    if len({MODES.get(m, m) for m in modes}) > 1:
        counts = ", ".join(f"{len(v)} {m} (e.g. {v[0]})" for m, v in sorted(modes.items()))
        problems.append(
            f"config.data.images_dir: mixed colour modes: {counts}; convert them to one mode"
        )
    if problems:
        raise FolderError(problems)
    return next(iter(modes), "L")


def _progress(items, description: str, enabled: bool):
    if not enabled:
        return items
    try:
        from tqdm import auto as tqdm
    except ImportError:  # pragma: no cover - tqdm comes with tfds
        return items
    return tqdm.tqdm(items, desc=description, unit=" images", mininterval=2.0)


def _builder_class():
    from ssinfogan_jax.data.tf_setup import tfds

    class SsinfoganFolder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        """A folder of images converted to one shape (see ssinfogan_jax/data/folder.py)."""

        VERSION = tfds.core.Version("1.0.0")
        RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "First version."}

        def __init__(self, *, source: Source, image_shape, **kwargs):
            self._source, self._image_shape = source, tuple(image_shape)
            h, w, c = self._image_shape
            name = f"{source.digest[:20]}_{h}x{w}x{c}"
            config = tfds.core.BuilderConfig(name=name, description=source.images_dir)
            super().__init__(config=config, **kwargs)

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                description=f"Images of {self._source.images_dir} listed in "
                f"{self._source.labels_csv}, converted to {self._image_shape}.",
                features=tfds.features.FeaturesDict(
                    {
                        "image": tfds.features.Image(shape=self._image_shape),
                        "file": tfds.features.Text(),
                        "row": tfds.features.Scalar(dtype=np.int64),
                    }
                ),
            )

        def _split_generators(self, dl_manager):
            del dl_manager  # Everything is local.
            return [tfds.core.SplitGenerator(name="images", gen_kwargs={})]

        def _generate_examples(self):
            from PIL import Image

            source = self._source
            for row, f in enumerate(source.files):
                path = os.path.join(source.images_dir, f)
                try:
                    with Image.open(path) as im:
                        im.load()
                        image = convert(im, self._image_shape)
                except OSError as e:
                    raise FolderError(f"config.data.images_dir: cannot read {path}: {e}") from None
                yield row, {"image": image, "file": f, "row": row}

    SsinfoganFolder.name = BUILDER_NAME
    return SsinfoganFolder


def builder(source: Source, image_shape, data_dir: str):
    """The tfds builder of `source` at `image_shape` in `data_dir` (prepared or not)."""
    return _builder_class()(source=source, image_shape=image_shape, data_dir=data_dir)


def prepare(source: Source, image_shape, data_dir: str, progress: bool = True):
    """The prepared builder: built now (images checked first, with a progress bar) unless a
    build of the same CSV, folder and shape is there. A failed build leaves nothing behind."""
    from absl import logging

    from ssinfogan_jax.data.tf_setup import tfds

    b = builder(source, image_shape, data_dir)
    if b.is_prepared():
        return b
    mode = scan_modes(source, progress)
    logging.info(
        "Converting %d images (%s) of %s to %s into %s.",
        len(source.files),
        mode,
        source.images_dir,
        image_shape,
        b.data_dir,
    )
    try:
        b.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    except BaseException:
        _remove_incomplete(b.data_dir)
        raise
    return b


def _remove_incomplete(version_dir: str) -> None:
    """Removes a failed build's leftovers (tfds's `<version>.incomplete*` folders)."""
    import shutil

    parent = os.path.dirname(version_dir)
    if not os.path.isdir(parent):
        return
    for entry in os.listdir(parent):
        if entry.startswith(os.path.basename(version_dir)) and "incomplete" in entry:
            shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)
    if os.path.isdir(parent) and not os.listdir(parent):
        os.rmdir(parent)


_IMAGES: dict[tuple, np.ndarray] = {}  # The last folder's images, read once per process.


def load_images(source: Source, image_shape, data_dir: str) -> np.ndarray:
    """uint8 [N, H, W, C] of every row, in CSV order (preparing first if needed)."""
    key = (source.digest, tuple(image_shape), data_dir)
    with _CACHE_LOCK:
        if key in _IMAGES:
            return _IMAGES[key]
    images = _load_images(source, image_shape, data_dir)
    with _CACHE_LOCK:
        _IMAGES.clear()
        _IMAGES[key] = images
    return images


def _load_images(source: Source, image_shape, data_dir: str) -> np.ndarray:
    from ssinfogan_jax.data.tf_setup import tf, tfds

    b = prepare(source, image_shape, data_dir)
    read_config = tfds.ReadConfig(interleave_cycle_length=1)
    ds = b.as_dataset(split="images", shuffle_files=False, read_config=read_config)
    ds = ds.map(
        lambda e: {"image": e["image"], "row": e["row"]}, num_parallel_calls=tf.data.AUTOTUNE
    )
    out = np.zeros((len(source.files), *image_shape), np.uint8)
    for chunk in tfds.as_numpy(ds.batch(4096).prefetch(2)):
        out[chunk["row"]] = chunk["image"]
    return out
