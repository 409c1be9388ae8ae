"""tfds's `celeb_a`, `svhn_cropped` and `cifar10`, built from the files their owners publish.

    official_files.missing("celeb_a", raw_dir)           # [] when raw_dir holds what it needs
    official_files.build("celeb_a", raw_dir, data_dir)   # then tfds.load("celeb_a", data_dir=...)

Each set is tfds's own builder (same name, version, features, splits and label names) with only
the source of its examples replaced, so the prepared folder is what a tfds download would have
made and `tfds.builder(name, data_dir=...)` reads it the same way; the examples keep tfds's keys,
so the records are stored in the same order. What a raw folder (local or gs://) must hold:

    celeb_a       img_align_celeba.zip (or its extracted img_align_celeba/ folder of 178x218
                  JPEGs), list_attr_celeba.txt, list_eval_partition.txt (0 train, 1 validation,
                  2 test). Optional: list_landmarks_align_celeba.txt and identity_CelebA.txt;
                  without them every example's landmarks and identity are 0 (CelebA's own
                  identities start at 1, so 0 reads as unknown).
    svhn_cropped  train_32x32.mat, test_32x32.mat (MATLAB X [32, 32, 3, N] uint8, y [N, 1] with
                  10 for the digit 0, stored as 0). Optional: extra_32x32.mat (the 'extra'
                  split; without it the set has only 'train' and 'test').
    cifar10       cifar-10-python.tar.gz or its cifar-10-batches-py/ folder (pickled batches:
                  `data` [10000, 3072] uint8, the R, G and B planes row-major, and `labels`), or
                  the binary version that tfds fetches, cifar-10-binary.tar.gz or its
                  cifar-10-batches-bin/ folder. The Python version is a pickle: read only files
                  you trust.

Checks, each failure one line naming the file and what is wrong (`RawFileError`): each archive
(the zip, the .mat files, the tar.gz) is checked first against the size and sha256 that tfds
records for it (its checksums.tsv; for cifar-10-python.tar.gz, which tfds does not fetch, the
sha256 keras.datasets records); an extracted folder cannot be. Setting the environment variable
SSINFOGAN_SKIP_CHECKSUMS=1 turns the check off (for copies made on purpose, such as the tests'
small fixtures). Then every line of the text files, the shape of every array and the header of
every JPEG are checked; what can be is checked before tfds writes anything. tfds writes into an
`incomplete.*` folder, removed when anything fails, so nothing half-built is ever taken as
prepared. A gs:// archive is copied once into a local temporary folder (random access) and
deleted afterwards; a gs:// folder is read file by file.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import hashlib
import io
import os
import pickle
import re
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator

import numpy as np
from absl import logging

from ssinfogan_jax import fileio
from ssinfogan_jax.data.tf_setup import tfds

NAMES = ("celeb_a", "svhn_cropped", "cifar10")
SKIP_CHECKSUMS_ENV = "SSINFOGAN_SKIP_CHECKSUMS"  # "1": use the files unchecked.
HOMEPAGES = {
    "celeb_a": "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html",
    "svhn_cropped": "http://ufldl.stanford.edu/housenumbers/",
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar.html",
}
# Official files that tfds does not fetch: (size in bytes, sha256). cifar-10-python.tar.gz as
# keras.datasets.cifar10 records it (its md5, c58f30108f718f92721af3b95e74349a, is torchvision's).
OTHER_CHECKSUMS = {
    "cifar-10-python.tar.gz": (
        170_498_071,
        "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
    ),
}
CELEBA_IMAGE_SIZE = (178, 218)  # PIL's (width, height) of img_align_celeba's JPEGs.
CELEBA_PARTITIONS = {"train": 0, "validation": 1, "test": 2}
CIFAR_FILES = {  # Per version: (member folder, train batches, test batch, label names file).
    "python": (
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        "test_batch",
        "batches.meta",
    ),
    "binary": (
        "cifar-10-batches-bin",
        tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
        "test_batch.bin",
        "batches.meta.txt",
    ),
}
_CHUNK = 1 << 22  # Bytes per read when hashing or copying.
_REMOTE_READERS = 32  # Threads reading a gs:// folder of JPEGs.


class RawFileError(ValueError):
    """A raw file is missing, not the official one, or malformed: one line naming it."""


@dataclasses.dataclass(frozen=True)
class Input:
    """One thing a raw folder must (or may) hold: the first of `names` present is used; a name
    ending in '/' is a folder."""

    role: str
    names: tuple[str, ...]
    required: bool = True

    def describe(self) -> str:
        first, *others = self.names
        if not others:
            return first
        if len(others) == 1 and others[0].rstrip("/") == first.split(".")[0]:
            return f"{first} (or its extracted {others[0]} folder)"
        return f"{first} (or {', '.join(others)})"


INPUTS: dict[str, tuple[Input, ...]] = {
    "celeb_a": (
        Input("images", ("img_align_celeba.zip", "img_align_celeba/")),
        Input("attributes", ("list_attr_celeba.txt",)),
        Input("partition", ("list_eval_partition.txt",)),
        Input("landmarks", ("list_landmarks_align_celeba.txt",), required=False),
        Input("identity", ("identity_CelebA.txt",), required=False),
    ),
    "svhn_cropped": (
        Input("train", ("train_32x32.mat",)),
        Input("test", ("test_32x32.mat",)),
        Input("extra", ("extra_32x32.mat",), required=False),
    ),
    "cifar10": (
        Input(
            "batches",
            (
                "cifar-10-python.tar.gz",
                "cifar-10-batches-py/",
                "cifar-10-binary.tar.gz",
                "cifar-10-batches-bin/",
            ),
        ),
    ),
}


# ----------------------------------------------------------------------------------------------
# What a raw folder holds.


def describe(name: str) -> str:
    """The files `name` is built from, for a message: required, then optional ones."""
    required = [i.describe() for i in INPUTS[name] if i.required]
    optional = [i.describe() for i in INPUTS[name] if not i.required]
    text = ", ".join(required)
    return text + (f" (optional: {', '.join(optional)})" if optional else "")


def _present(raw_dir: str, entry: str) -> bool:
    path = fileio.Path(raw_dir, entry.rstrip("/"))
    return path.is_dir() if entry.endswith("/") else path.is_file()


def locate(name: str, raw_dir: str) -> dict[str, fileio.Path]:
    """{role: path} of the inputs present in `raw_dir` (the first alternative found)."""
    found = {}
    for item in INPUTS[name]:
        entry = next((e for e in item.names if _present(raw_dir, e)), None)
        if entry is not None:
            found[item.role] = fileio.Path(raw_dir, entry.rstrip("/"))
    return found


def missing(name: str, raw_dir: str) -> list[str]:
    """The required inputs absent from `raw_dir` ([] = it can be built)."""
    found = locate(name, raw_dir)
    return [i.describe() for i in INPUTS[name] if i.required and i.role not in found]


def verify_by_default() -> bool:
    """False when SSINFOGAN_SKIP_CHECKSUMS is set to 1 (or true / yes)."""
    return os.environ.get(SKIP_CHECKSUMS_ENV, "").strip().lower() not in ("1", "true", "yes")


def expected_checksums(name: str) -> dict[str, tuple[int, str]]:
    """{file name: (size, sha256)} of `name`'s official files: tfds's record, and ours."""
    infos = tfds.builder_cls(name).url_infos or {}
    known = {i.filename: (int(i.size), i.checksum) for i in infos.values() if i.filename}
    known.update({f: v for f, v in OTHER_CHECKSUMS.items() if _is_input_of(name, f)})
    return known


def _is_input_of(name: str, filename: str) -> bool:
    return any(filename in item.names for item in INPUTS[name])


# ----------------------------------------------------------------------------------------------
# Reading: local copies of remote archives, checked on the way.


def _looks_like_html(head: bytes) -> bool:
    head = head.lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html")) or b"<html" in head[:1024]


class _Reader:
    """Gives each raw file as a local path (a gs:// file is copied into a temporary folder)
    after checking its size and sha256 against `expected` when `verify`."""

    def __init__(self, name: str, verify: bool):
        self.name, self.verify = name, verify
        self.expected = expected_checksums(name) if verify else {}
        self._tmp: tempfile.TemporaryDirectory | None = None

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()

    def _mismatch(self, path, what: str) -> RawFileError:
        with contextlib.suppress(OSError):
            with fileio.Path(path).open("rb") as f:
                if _looks_like_html(f.read(2048)):
                    what = "an HTML page (a failed download), not the official file"
        return RawFileError(
            f"{path}: {what}; download it again from {HOMEPAGES[self.name]}, or set "
            f"{SKIP_CHECKSUMS_ENV}=1 to use it unchecked"
        )

    def local(self, path: fileio.Path) -> str:
        """A local path holding `path`'s bytes, checked when tfds (or we) record them."""
        want = self.expected.get(path.name)
        remote = fileio.is_remote(path)
        if want is not None:
            size = path.stat().length
            if size != want[0]:
                raise self._mismatch(path, f"{size:,} bytes, expected {want[0]:,}")
        if not remote and want is None:
            return os.fspath(path)
        target = None
        if remote:
            if self._tmp is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="ssinfogan_raw_")
            target = os.path.join(self._tmp.name, path.name)
        start = time.perf_counter()
        digest = hashlib.sha256()
        with (
            path.open("rb") as f,
            open(target, "wb") if target else contextlib.nullcontext() as out,
        ):
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
                if out is not None:
                    out.write(chunk)
        if want is not None:
            if digest.hexdigest() != want[1]:
                raise self._mismatch(path, f"sha256 {digest.hexdigest()}, expected {want[1]}")
            logging.info(
                "%s: size and sha256 as recorded (%.1f s).", path, time.perf_counter() - start
            )
        return target or os.fspath(path)


# ----------------------------------------------------------------------------------------------
# CelebA.


@dataclasses.dataclass
class _Table:
    """A CelebA annotation file: column names and {file name: values}."""

    columns: list[str]
    rows: dict[str, list[int]]


def _lines(path: fileio.Path) -> list[tuple[int, list[str]]]:
    """(1-based line number, whitespace-split fields) of each non-blank line."""
    try:
        text = fileio.read_bytes(path).decode("utf-8-sig")  # A BOM (Windows editors) is fine.
    except UnicodeDecodeError:
        raise RawFileError(f"{path}: not a text file") from None
    return [(n, line.split()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _read_table(
    path: fileio.Path, columns: list[str] | None, allowed: Callable[[int], bool], what: str
) -> _Table:
    """CelebA's annotation format: with `columns` None, a count line, a line of column names,
    then `file v1 v2 ...` rows; else rows only, with these columns. Values are ints passing
    `allowed` (`what` describes them)."""
    lines = _lines(path)
    if columns is None:
        if len(lines) < 2:
            raise RawFileError(f"{path}: expected a count line and a line of column names")
        (n0, count), (_, columns) = lines[0], lines[1]
        if len(count) != 1 or not count[0].isdigit():
            raise RawFileError(f"{path} line {n0}: expected the number of rows, found {count}")
        lines = lines[2:]
        if int(count[0]) != len(lines):
            raise RawFileError(f"{path}: line 1 announces {count[0]} rows, {len(lines)} follow")
    rows = {}
    for n, fields in lines:
        if len(fields) != len(columns) + 1:
            raise RawFileError(
                f"{path} line {n}: {len(fields) - 1} values after the file name, expected "
                f"{len(columns)}"
            )
        try:
            values = [int(v) for v in fields[1:]]
        except ValueError:
            values = None
        if values is None or not all(allowed(v) for v in values):
            raise RawFileError(f"{path} line {n}: expected {what}, found {' '.join(fields[1:])}")
        if fields[0] in rows:
            raise RawFileError(f"{path} line {n}: {fields[0]} listed twice")
        rows[fields[0]] = values
    return _Table(list(columns), rows)


def _check_columns(path, found: list[str], expected: list[str]) -> None:
    if sorted(found) != sorted(expected):
        lacking = sorted(set(expected) - set(found))
        extra = sorted(set(found) - set(expected))
        raise RawFileError(
            f"{path} line 2: expected the {len(expected)} column names of tfds's celeb_a, found "
            f"{len(found)} (missing: {', '.join(lacking) or 'none'}; unknown: "
            f"{', '.join(extra) or 'none'})"
        )


class _CelebaImages:
    """img_align_celeba's JPEGs by file name, from the zip or the extracted folder."""

    def __init__(self, path: fileio.Path, reader: _Reader):
        self.path = path
        if path.is_dir():
            self._zip = None
            self._files = {p.name: p for p in path.iterdir()}
            return
        local = reader.local(path)
        try:
            self._zip = zipfile.ZipFile(local)
        except zipfile.BadZipFile:
            with open(local, "rb") as f:
                html = _looks_like_html(f.read(2048))
            what = "an HTML page (a failed download)" if html else "not a zip file"
            raise RawFileError(f"{path}: {what}; download it from {HOMEPAGES['celeb_a']}") from None
        self._files = {
            os.path.basename(i.filename): i for i in self._zip.infolist() if not i.is_dir()
        }

    def names(self) -> set[str]:
        return set(self._files)

    def read(self, file_name: str) -> bytes:
        """The JPEG's bytes, after checking its header: 178x218 RGB JPEG."""
        entry = self._files[file_name]
        data = self._zip.read(entry) if self._zip else entry.read_bytes()
        from PIL import Image

        try:
            with Image.open(io.BytesIO(data)) as image:
                found = (image.format, image.size, image.mode)
        except Exception:  # PIL raises several kinds for bytes that are no image.
            found = None
        if found != ("JPEG", CELEBA_IMAGE_SIZE, "RGB"):
            seen = "not an image" if found is None else "a {1[0]}x{1[1]} {2} {0}".format(*found)
            raise RawFileError(
                f"{self.path}: {file_name} is {seen}, expected a "
                f"{CELEBA_IMAGE_SIZE[0]}x{CELEBA_IMAGE_SIZE[1]} RGB JPEG"
            )
        return data

    def read_all(self, file_names: list[str]) -> Iterator[tuple[str, bytes]]:
        """(file name, its checked JPEG) in order; a gs:// folder is read by several threads
        (one object at a time would take hours for CelebA's 202,599)."""
        if self._zip is not None or not fileio.is_remote(self.path):
            yield from ((name, self.read(name)) for name in file_names)
            return
        with concurrent.futures.ThreadPoolExecutor(_REMOTE_READERS) as pool:
            for start in range(0, len(file_names), 8 * _REMOTE_READERS):
                chunk = file_names[start : start + 8 * _REMOTE_READERS]
                yield from zip(chunk, pool.map(self.read, chunk), strict=True)

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


def _first(names, count: int = 3) -> str:
    names = sorted(names)
    more = f" and {len(names) - count} more" if len(names) > count else ""
    return ", ".join(names[:count]) + more


def _celeba(files: dict[str, fileio.Path], reader: _Reader):
    """(split generators, closer) for celeb_a, every annotation checked first."""
    from tensorflow_datasets.datasets.celeb_a import celeb_a_dataset_builder as tfds_celeba

    partition_path = files["partition"]
    partition = _read_table(partition_path, ["partition"], lambda v: v in (0, 1, 2), "0, 1 or 2")
    attributes = _read_table(files["attributes"], None, lambda v: v in (-1, 1), "-1 or 1")
    _check_columns(files["attributes"], attributes.columns, list(tfds_celeba.ATTR_HEADINGS))
    tables = {"attributes": attributes}
    if "landmarks" in files:
        tables["landmarks"] = _read_table(files["landmarks"], None, lambda v: True, "integers")
        _check_columns(
            files["landmarks"], tables["landmarks"].columns, list(tfds_celeba.LANDMARK_HEADINGS)
        )
    if "identity" in files:
        identity_columns = list(tfds_celeba.IDENTITY_HEADINGS)
        tables["identity"] = _read_table(
            files["identity"], identity_columns, lambda v: True, "an id"
        )
    wanted = set(partition.rows)
    for role, table in tables.items():
        if lacking := wanted - set(table.rows):
            raise RawFileError(
                f"{files[role]}: no row for {_first(lacking)} (listed in {partition_path.name})"
            )
    images = _CelebaImages(files["images"], reader)
    if lacking := wanted - images.names():
        images.close()
        raise RawFileError(
            f"{files['images']}: lacks {_first(lacking)} (listed in {partition_path.name})"
        )

    zeros = {
        "landmarks": dict.fromkeys(tfds_celeba.LANDMARK_HEADINGS, 0),
        "identity": dict.fromkeys(tfds_celeba.IDENTITY_HEADINGS, 0),
    }

    def record(file_name: str, jpeg: bytes) -> dict:
        example = {"image": jpeg}
        for role, table in tables.items():
            values = dict(zip(table.columns, table.rows[file_name], strict=True))
            example[role] = (
                {k: v > 0 for k, v in values.items()} if role == "attributes" else values
            )
        return {**zeros, **example}

    def generate(split: str) -> Iterator[tuple[str, dict]]:
        file_id = CELEBA_PARTITIONS[split]
        file_names = sorted(f for f, (p,) in partition.rows.items() if p == file_id)
        for file_name, jpeg in images.read_all(file_names):
            yield file_name, record(file_name, jpeg)  # tfds's key: the file name.

    return {split: _bind(generate, split) for split in CELEBA_PARTITIONS}, None, images.close


def _bind(fn, *args):
    return lambda: fn(*args)


# ----------------------------------------------------------------------------------------------
# SVHN.


def _svhn_labels(path: fileio.Path, local: str) -> int:
    """Checks a .mat file's X and y without loading X; returns N."""
    import scipy.io

    try:
        variables = {name: (shape, kind) for name, shape, kind in scipy.io.whosmat(local)}
    except NotImplementedError:  # scipy's answer to MATLAB v7.3 (HDF5) files.
        raise RawFileError(f"{path}: a MATLAB v7.3 file; expected the official (v5) file") from None
    except Exception:  # scipy raises several kinds for a file that is no .mat.
        with open(local, "rb") as f:
            html = _looks_like_html(f.read(2048))
        what = "an HTML page (a failed download)" if html else "not a MATLAB file"
        raise RawFileError(
            f"{path}: {what}; download it from {HOMEPAGES['svhn_cropped']}"
        ) from None
    if "X" not in variables or "y" not in variables:
        raise RawFileError(f"{path}: holds {sorted(variables)}, expected X and y")
    (x_shape, x_kind), (y_shape, _) = variables["X"], variables["y"]
    if len(x_shape) != 4 or x_shape[:3] != (32, 32, 3) or x_kind != "uint8":
        raise RawFileError(f"{path}: X is {list(x_shape)} {x_kind}, expected [32, 32, 3, N] uint8")
    n = x_shape[3]
    if y_shape not in ((n, 1), (n,), (1, n)):
        raise RawFileError(f"{path}: y is {list(y_shape)}, expected [{n}, 1] (one label per image)")
    y = scipy.io.loadmat(local, variable_names=["y"])["y"].reshape(-1)
    bad = (y < 1) | (y > 10) | (y != np.round(y))
    if bad.any():
        i = int(np.argmax(bad))
        raise RawFileError(f"{path}: y[{i}] is {y[i]:g}, expected 1 to 10 (10 for the digit 0)")
    return n


def _svhn(files: dict[str, fileio.Path], reader: _Reader):
    import scipy.io

    local = {}
    for split in ("train", "test", "extra"):
        if split in files:
            local[split] = reader.local(files[split])
            _svhn_labels(files[split], local[split])

    def generate(split: str) -> Iterator[tuple[int, dict]]:
        data = scipy.io.loadmat(local[split])
        images, labels = np.moveaxis(data["X"], -1, 0), data["y"].reshape(-1).astype(np.int64)
        del data
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            # tfds's key and id; its label is y % 10 (10 stands for the digit 0).
            yield i, {"image": image, "label": int(label % 10), "id": f"{split}_{i:06d}"}

    return {split: _bind(generate, split) for split in local}, None, None


# ----------------------------------------------------------------------------------------------
# CIFAR-10.


def _unpickle(path: str, data: bytes) -> dict[str, object]:
    try:
        loaded = pickle.loads(data, encoding="bytes")
    except Exception:  # pickle raises many kinds for bytes that are no pickle.
        raise RawFileError(f"{path}: not a pickled CIFAR batch") from None
    if not isinstance(loaded, dict):
        raise RawFileError(f"{path}: holds a {type(loaded).__name__}, expected a dict")
    return {k.decode("latin-1") if isinstance(k, bytes) else k: v for k, v in loaded.items()}


def _cifar_python_batch(path: str, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path, data)
    if "data" not in batch or "labels" not in batch:
        raise RawFileError(f"{path}: keys {sorted(batch)}, expected data and labels")
    images = np.asarray(batch["data"])
    labels = np.asarray(batch["labels"])
    if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != 3 * 32 * 32:
        raise RawFileError(
            f"{path}: data is {list(images.shape)} {images.dtype}, expected [N, 3072] uint8"
        )
    if labels.shape != (len(images),):
        raise RawFileError(f"{path}: {labels.size} labels for {len(images)} images")
    return images, labels


def _cifar_binary_batch(path: str, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    record = 1 + 3 * 32 * 32
    if not data or len(data) % record:
        raise RawFileError(
            f"{path}: {len(data)} bytes, not a whole number of {record}-byte records"
        )
    rows = np.frombuffer(data, np.uint8).reshape(-1, record)
    return rows[:, 1:], rows[:, 0].astype(np.int64)


def _cifar_members(path: fileio.Path, reader: _Reader, folder: str, wanted: list[str]):
    """{name: bytes} of `wanted` from the tarball or the extracted folder at `path`."""
    if path.is_dir():
        lacking = [w for w in wanted if not fileio.Path(path, w).is_file()]
        if lacking:
            raise RawFileError(f"{path}: lacks {', '.join(lacking)}")
        return {w: fileio.read_bytes(fileio.Path(path, w)) for w in wanted}
    local = reader.local(path)
    found = {}
    try:
        with tarfile.open(local, "r:gz") as tar:
            for member in tar:
                name = os.path.basename(member.name)
                parent = os.path.basename(os.path.dirname(member.name))
                if member.isfile() and parent == folder and name in wanted:
                    found[name] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError):
        with open(local, "rb") as f:
            html = _looks_like_html(f.read(2048))
        what = "an HTML page (a failed download)" if html else "not a .tar.gz archive"
        raise RawFileError(f"{path}: {what}; download it from {HOMEPAGES['cifar10']}") from None
    if lacking := [w for w in wanted if w not in found]:
        raise RawFileError(f"{path}: lacks {', '.join(f'{folder}/{w}' for w in lacking)}")
    return found


def _cifar(files: dict[str, fileio.Path], reader: _Reader):
    path = files["batches"]
    version = (
        "binary" if path.name in ("cifar-10-binary.tar.gz", "cifar-10-batches-bin") else "python"
    )
    folder, train_files, test_file, meta_file = CIFAR_FILES[version]
    members = _cifar_members(path, reader, folder, [*train_files, test_file, meta_file])
    where = path if path.is_dir() else f"{path}: {folder}"
    parse = _cifar_binary_batch if version == "binary" else _cifar_python_batch
    splits = {}
    for split, names in (("train", train_files), ("test", (test_file,))):
        parts = [parse(f"{where}/{n}", members[n]) for n in names]
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        if len(labels) and (labels.min() < 0 or labels.max() > 9):
            raise RawFileError(
                f"{where}: {split} labels span {labels.min()}..{labels.max()}, expected 0..9"
            )
        # R, G and B planes of 32 rows each -> [N, 32, 32, 3].
        splits[split] = (images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels)
    if version == "binary":
        label_names = [n for n in members[meta_file].decode("utf-8").split("\n") if n.strip()]
    else:
        meta = _unpickle(f"{where}/{meta_file}", members[meta_file])
        label_names = [
            n.decode() if isinstance(n, bytes) else n for n in meta.get("label_names", [])
        ]
    if len(label_names) != 10:
        raise RawFileError(f"{where}/{meta_file}: {len(label_names)} label names, expected 10")

    def generate(split: str) -> Iterator[tuple[int, dict]]:
        images, labels = splits[split]
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            yield i, {"image": image, "label": int(label), "id": f"{split}_{i:05d}"}

    return {split: _bind(generate, split) for split in splits}, label_names, None


# ----------------------------------------------------------------------------------------------
# Building.

_SOURCES = {"celeb_a": _celeba, "svhn_cropped": _svhn, "cifar10": _cifar}


def _builder(name: str, data_dir: str, splits: dict[str, Callable[[], Iterator]], label_names):
    """tfds's own builder for `name` whose examples come from `splits` ({split: generator})."""
    base = tfds.builder_cls(name)

    class OfficialFilesBuilder(base, skip_registration=True):
        def _split_generators(self, dl_manager):
            del dl_manager  # Nothing to download.
            if label_names:
                self.info.features["label"].names = label_names  # As tfds's cifar10 does.
            return {split: self._generate_examples(split) for split in splits}

        def _generate_examples(self, split):
            yield from splits[split]()

    OfficialFilesBuilder.name = base.name
    OfficialFilesBuilder.__module__ = base.__module__  # dataset_info.json as tfds's own build.
    return OfficialFilesBuilder(data_dir=data_dir)


def build(name: str, raw_dir: str, data_dir: str, *, verify_checksums: bool | None = None):
    """Builds tfds `name` into `data_dir` from the official files in `raw_dir`; returns the
    builder. Raises RawFileError (one line) when a file is missing, not the official one
    (`verify_checksums`, default: unless SSINFOGAN_SKIP_CHECKSUMS=1) or malformed."""
    if lacking := missing(name, raw_dir):
        raise RawFileError(f"{raw_dir}: lacks {', '.join(lacking)}")
    verify = verify_by_default() if verify_checksums is None else verify_checksums
    reader = _Reader(name, verify)
    close = None
    try:
        splits, label_names, close = _SOURCES[name](locate(name, raw_dir), reader)
        builder = _builder(name, data_dir, splits, label_names)
        download_config = tfds.download.DownloadConfig(try_download_gcs=False)
        try:
            builder.download_and_prepare(download_config=download_config)
        except RawFileError:
            raise
        except Exception as e:  # tfds may re-raise ours under its own prefix.
            cause = e
            while cause is not None and not isinstance(cause, RawFileError):
                cause = cause.__cause__ or cause.__context__
            if cause is None:
                raise
            raise cause from None
    finally:
        if close is not None:
            close()
        reader.close()
    return builder


# ----------------------------------------------------------------------------------------------
# tfds's own download of celeb_a (Google Drive), when it fails.

_TFDS_CHECKSUM = re.compile(
    r"downloaded to (?P<path>.+?), has wrong checksum.*?Expected: UrlInfo\(size=(?P<want>[^,]+),"
    r".*?filename='(?P<file>[^']*)'\).*?Got: UrlInfo\(size=(?P<got>[^,]+),",
    re.S,
)


def celeba_download_failure(error: BaseException, data_dir: str, command: str) -> str:
    """One line for a failed tfds download of celeb_a: what Drive did, where the official
    files are, and `command` (the prepare_data command line) to build from them."""
    text = str(error)
    what = f"{type(error).__name__}: {' '.join(text.split())[:200]}"
    if match := _TFDS_CHECKSUM.search(text):
        page = ""
        with contextlib.suppress(OSError):
            with open(match["path"], "rb") as f:
                page = " an HTML page of" if _looks_like_html(f.read(2048)) else ""
        what = f"Drive sent{page} {match['got']} where {match['file']} ({match['want']}) should be"
    elif "confirmation link for GDrive" in text:
        what = "Drive answered with a page that offers no download (its quota for the file)"
    elif isinstance(error, ImportError) and "bs4" in text:
        what = "Drive answered with a confirmation page, which tfds follows only with bs4"
    files = ", ".join(i.names[0] for i in INPUTS["celeb_a"] if i.required)
    return (
        f"config.data.download: tfds could not download celeb_a from Google Drive into "
        f"{data_dir} ({what}); Drive has refused this download for years (tensorflow/datasets "
        f"#1482, #5342). Fetch {files} from {HOMEPAGES['celeb_a']} into a folder and run "
        f"`{command}`, or set config.data.raw_dir to that folder"
    )
