"""tfds data: the embedded `digits` set, building tfds sets from raw files, and downloads.

`ensure_prepared` finds the prepared tfds data in `data_dir`, or prepares it: from local files
(scikit-learn's digits; an IDX folder for MNIST-format sets and for the synthetic digit_scenes
rendered from them; the files their owners publish for celeb_a, svhn_cropped and cifar10, see
data/official_files.py; the original archives for any other set, through tfds's `manual_dir`),
or, with config.data.download 'auto' and no raw folder, by tfds's own download. Otherwise it
raises `DataNotFoundError` within seconds with what to place where. For the manual path the
presence of every file tfds would fetch is checked first; tfds never looks for a prepared copy
on GCS. tfds writes a set into an `incomplete.*` folder and renames it when complete, so an
interrupted preparation is never taken as prepared (`is_prepared`). With several processes
(a pod), process 0 prepares and the others wait for it (data/prepare_once.py).
"""

from __future__ import annotations

import contextlib
import gzip
import os
import time
from typing import ClassVar

import numpy as np
from absl import logging

from ssinfogan_jax import fileio
from ssinfogan_jax.data import digit_scenes, official_files, prepare_once, registry, tf_setup

tf = tf_setup.tf
tfds = tf_setup.tfds

# MNIST-format IDX files, as published (gzipped or not).
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# tfds sets whose builder is tfds's MNIST class (same IDX layout, same features).
IDX_DATASETS = ("mnist", "fashion_mnist", "kmnist")
# Every set made from the four IDX files of a raw folder: those, and our rendered digit_scenes.
IDX_SOURCED = (*IDX_DATASETS, "digit_scenes")
NOT_DOWNLOADABLE = registry.NOT_DOWNLOADABLE
DataNotFoundError = registry.DataNotFoundError
default_data_dir = registry.default_data_dir
PREPARE_COMMAND = (
    "python -m ssinfogan_jax.prepare_data --dataset={name} --raw_dir={raw} --data_dir={dd}"
)


class BadRawFileError(DataNotFoundError):
    """A raw file is missing, not the official one, or malformed (official_files.RawFileError)."""


# ----------------------------------------------------------------------------------------------
# IDX reading.


def _read_idx_bytes(raw_dir: str, stem: str) -> bytes:
    for fname in (stem, stem + ".gz"):
        path = fileio.Path(raw_dir, fname)
        if path.exists():
            data = fileio.read_bytes(path)
            return gzip.decompress(data) if fname.endswith(".gz") else data
    raise DataNotFoundError(f"{raw_dir}: missing {stem} (or {stem}.gz)")


def missing_idx_files(raw_dir: str) -> list[str]:
    """The IDX files (neither plain nor .gz) absent from `raw_dir` (local or gs://)."""
    return [
        stem
        for stem in IDX_FILES.values()
        if not any(fileio.exists(fileio.Path(raw_dir, stem + ext)) for ext in ("", ".gz"))
    ]


def read_idx(raw_dir: str, key: str) -> np.ndarray:
    """One IDX file as uint8: images [N, 28, 28] or labels [N]. `key` is a key of IDX_FILES."""
    data = _read_idx_bytes(raw_dir, IDX_FILES[key])
    magic = int.from_bytes(data[0:4], "big")
    ndim = magic & 0xFF
    if magic >> 8 != 0x08 or ndim not in (1, 3):  # 0x08 = unsigned byte
        raise ValueError(f"{raw_dir}/{IDX_FILES[key]}: not an unsigned-byte IDX file")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    return np.frombuffer(data, np.uint8, count=int(np.prod(dims)), offset=offset).reshape(dims)


def _offline_idx_builder(name: str, raw_dir: str, data_dir: str):
    """tfds's own builder for `name` (same features, name and version), reading local IDX files.

    A subclass that is not registered: it only replaces where the examples come from, so the
    prepared folder is exactly what `tfds.load(name, data_dir=...)` reads afterwards. Examples
    keep tfds's keys (the file index), so the record order matches a downloaded build.
    """
    base = tfds.builder_cls(name)

    class OfflineIdxBuilder(base, skip_registration=True):
        def _split_generators(self, dl_manager):
            del dl_manager  # Nothing to download.
            return [
                tfds.core.SplitGenerator(name=tfds.Split.TRAIN, gen_kwargs=dict(prefix="train")),
                tfds.core.SplitGenerator(name=tfds.Split.TEST, gen_kwargs=dict(prefix="test")),
            ]

        def _generate_examples(self, prefix):
            images = read_idx(raw_dir, f"{prefix}_images")[..., None]
            labels = read_idx(raw_dir, f"{prefix}_labels")
            if len(images) != len(labels):
                raise ValueError(f"{raw_dir}: {len(images)} {prefix} images, {len(labels)} labels")
            for index, (image, label) in enumerate(zip(images, labels, strict=True)):
                yield index, {"image": image, "label": int(label)}

    OfflineIdxBuilder.name = base.name
    OfflineIdxBuilder.__module__ = base.__module__  # dataset_info.json as tfds's own build
    return OfflineIdxBuilder(data_dir=data_dir)


# ----------------------------------------------------------------------------------------------
# The embedded default: scikit-learn's 8x8 digits.

DIGITS_TEST_EVERY = 5  # Example i goes to 'test' when i % 5 == 4: 1,438 train / 359 test.


def digits_arrays() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's 1,797 8x8 digits as MNIST-like uint8 [N, 28, 28, 1] images and labels.

    Each 8x8 image (values 0..16) is scaled to 0..255, resized to 20x20 (bilinear) and padded
    by 4 pixels, the layout of MNIST (a 20x20 digit centred in 28x28), so the MNIST net runs
    on it unchanged. The split is a fixed rule (every 5th image is test), independent of any
    library's random state.
    """
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    small = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    resized = np.stack(
        [np.asarray(Image.fromarray(im).resize((20, 20), Image.BILINEAR)) for im in small]
    )
    images = np.pad(resized, ((0, 0), (4, 4), (4, 4)))[..., None]
    labels = digits.target.astype(np.int64)
    is_test = np.arange(len(images)) % DIGITS_TEST_EVERY == DIGITS_TEST_EVERY - 1
    return {
        "train": (images[~is_test], labels[~is_test]),
        "test": (images[is_test], labels[is_test]),
    }


class Digits(tfds.core.GeneratorBasedBuilder):
    """scikit-learn's bundled 8x8 handwritten digits at 28x28x1: works offline everywhere."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "8x8 -> 20x20, padded to 28x28."}

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description="scikit-learn's 1,797 8x8 digits (UCI optdigits test set), MNIST layout.",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(28, 28, 1)),
                    "label": tfds.features.ClassLabel(num_classes=10),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://scikit-learn.org/stable/datasets/toy_dataset.html",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Bundled with scikit-learn.
        return [
            tfds.core.SplitGenerator(name=tfds.Split.TRAIN, gen_kwargs=dict(split="train")),
            tfds.core.SplitGenerator(name=tfds.Split.TEST, gen_kwargs=dict(split="test")),
        ]

    def _generate_examples(self, split):
        images, labels = digits_arrays()[split]
        for index, (image, label) in enumerate(zip(images, labels, strict=True)):
            yield index, {"image": image, "label": int(label)}


# ----------------------------------------------------------------------------------------------
# digit_scenes: synthetic 32x32 RGB scenes rendered from an IDX folder (data/digit_scenes.py).


class DigitScenes(tfds.core.GeneratorBasedBuilder):
    """Synthetic SVHN/CelebA stand-in: MNIST-format glyphs rendered into 32x32x3 scenes.

    Built offline from the four IDX files in tfds's manual_dir (`prepare` passes raw_dir), with
    digit_scenes.BUILD_SEED; the train and test splits render the source's train and test files.
    """

    VERSION = tfds.core.Version(digit_scenes.VERSION)
    RELEASE_NOTES: ClassVar[dict[str, str]] = digit_scenes.RELEASE_NOTES
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Place the four MNIST-format IDX files (gzipped or not)."

    def _info(self):
        features = {
            "image": tfds.features.Image(shape=digit_scenes.IMAGE_SHAPE),
            "label": tfds.features.ClassLabel(num_classes=10),
        }
        for name, classes in digit_scenes.LABELS.items():
            if name != "label":
                features[name] = (
                    tfds.features.ClassLabel(num_classes=classes)
                    if classes
                    else tfds.features.Scalar(dtype=np.float32)
                )
        return tfds.core.DatasetInfo(
            builder=self,
            description="Synthetic: MNIST-format digits rendered into 32x32 RGB scenes with "
            "coloured backgrounds, neighbouring digits, blur and noise; binary attributes "
            f"{', '.join(digit_scenes.BINARY_ATTRIBUTES)} and the rotation in degrees.",
            features=tfds.features.FeaturesDict(features),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        raw_dir = os.fspath(dl_manager.manual_dir)
        return [
            tfds.core.SplitGenerator(
                name=tfds.Split.TRAIN, gen_kwargs=dict(raw_dir=raw_dir, prefix="train")
            ),
            tfds.core.SplitGenerator(
                name=tfds.Split.TEST, gen_kwargs=dict(raw_dir=raw_dir, prefix="test")
            ),
        ]

    def _generate_examples(self, raw_dir, prefix):
        glyphs = read_idx(raw_dir, f"{prefix}_images")
        labels = read_idx(raw_dir, f"{prefix}_labels")
        if len(glyphs) != len(labels):
            raise ValueError(f"{raw_dir}: {len(glyphs)} {prefix} images, {len(labels)} labels")
        scenes = digit_scenes.render(glyphs, labels, digit_scenes.BUILD_SEED, prefix)
        for index in range(len(glyphs)):
            yield index, {key: value[index] for key, value in scenes.items()}


# ----------------------------------------------------------------------------------------------
# Preparing.


def _no_download_config(manual_dir: str | None = None):
    # `try_download_gcs=False`: never look for a prepared copy on GCS either.
    return tfds.download.DownloadConfig(manual_dir=manual_dir, try_download_gcs=False)


def _download_config():
    # tfds fetches the original files (its checksummed URLs); never a prepared copy on GCS.
    return tfds.download.DownloadConfig(try_download_gcs=False)


def manual_files(name: str) -> list[str]:
    """File names tfds would download for `name` (what a user must place in a raw folder)."""
    url_infos = tfds.builder_cls(name).url_infos or {}
    return sorted({info.filename for info in url_infos.values() if info.filename})


def missing_raw_files(name: str, raw_dir: str) -> list[str]:
    """What `raw_dir` lacks to prepare `name` offline ([] = complete)."""
    if not fileio.Path(raw_dir).is_dir():
        return ["everything (the folder does not exist)"]
    if name in IDX_SOURCED:
        return missing_idx_files(raw_dir)
    if name in official_files.NAMES:
        return official_files.missing(name, raw_dir)
    wanted = manual_files(name)
    if not wanted:
        return ["(tfds lists no files for this data set; it cannot be prepared offline here)"]
    return [f for f in wanted if not fileio.exists(fileio.Path(raw_dir, f))]


def what_to_place(name: str, raw_dir: str, data_dir: str) -> str:
    """A sentence telling the user which files to put where, and the command to run."""
    raw = raw_dir or "/path/to/raw"
    if name in IDX_SOURCED:
        files = ", ".join(f"{s}[.gz]" for s in IDX_FILES.values())
    elif name in official_files.NAMES:
        files = f"{official_files.describe(name)} from {official_files.HOMEPAGES[name]}"
    else:
        files = ", ".join(manual_files(name)) or "(unknown)"
    cmd = PREPARE_COMMAND.format(name=name, raw=raw, dd=default_data_dir(data_dir))
    return (
        f"place {files} in a folder (e.g. {raw}) and run `{cmd}`, or set "
        f"config.data.raw_dir to that folder to prepare it on first use"
    )


def prepare(
    name: str, raw_dir: str, data_dir: str, *, verify_checksums: bool | None = None
) -> None:
    """Builds tfds `name` in `data_dir` from local files so that tfds.load works offline.

    `digits` needs no files (raw_dir is ignored). MNIST-format sets, and `digit_scenes` (rendered
    from them), read the four IDX files in `raw_dir` (gzipped or not). celeb_a, svhn_cropped and
    cifar10 read the files their owners publish (official_files; `verify_checksums` None: check
    them unless SSINFOGAN_SKIP_CHECKSUMS=1). Any other tfds set reads the original downloads
    from `raw_dir` (tfds's manual_dir), after checking that every one is present. `raw_dir` may
    be local or gs://.
    """
    data_dir = default_data_dir(data_dir)
    start = time.perf_counter()
    if name == "digits":
        builder = Digits(data_dir=data_dir)
        builder.download_and_prepare(download_config=_no_download_config())
    else:
        missing = missing_raw_files(name, raw_dir) if raw_dir else ["(no raw_dir given)"]
        if missing:
            raise DataNotFoundError(
                f"cannot prepare {name} offline: {raw_dir or 'raw_dir'} lacks "
                f"{', '.join(missing)}; {what_to_place(name, raw_dir, data_dir)}"
            )
        if name in IDX_DATASETS:
            builder = _offline_idx_builder(name, raw_dir, data_dir)
            builder.download_and_prepare(download_config=_no_download_config())
        elif name == "digit_scenes":
            builder = DigitScenes(data_dir=data_dir)
            builder.download_and_prepare(download_config=_no_download_config(raw_dir))
        elif name in official_files.NAMES:
            try:
                builder = official_files.build(
                    name, raw_dir, data_dir, verify_checksums=verify_checksums
                )
            except official_files.RawFileError as e:
                raise BadRawFileError(f"cannot prepare {name}: {e}") from None
        else:
            builder = tfds.builder(name, data_dir=data_dir)
            builder.download_and_prepare(download_config=_no_download_config(raw_dir))
    logging.info(
        "Prepared %s into %s in %.1f s.", name, builder.data_dir, time.perf_counter() - start
    )


def builder(name: str, data_dir: str):
    """The tfds builder that reads `name` from `data_dir` ('' = tfds's default)."""
    if name == "digits":
        return Digits(data_dir=default_data_dir(data_dir))
    return tfds.builder(name, data_dir=data_dir or None, try_gcs=False)


def is_prepared(name: str, data_dir: str) -> bool:
    builder = Digits(data_dir=data_dir or None) if name == "digits" else None
    builder = builder or tfds.builder(name, data_dir=data_dir or None, try_gcs=False)
    return builder.is_prepared()


# How long the hosts of a download may take to accept a connection before the download is
# given up (tfds would otherwise retry each URL with backoff for minutes).
REACH_TIMEOUT_S = 8.0


def _unreachable_hosts(name: str) -> dict[str, str]:
    """{host: why} for the hosts of tfds `name`'s URLs that do not accept a TCP connection
    within REACH_TIMEOUT_S (all probed at once); {} where all do or the URLs are unknown."""
    import concurrent.futures
    import socket
    import urllib.parse

    urls = tfds.builder_cls(name).url_infos or {}
    hosts = sorted({urllib.parse.urlsplit(u).hostname for u in urls} - {None})

    def probe(host: str) -> str | None:
        try:
            socket.create_connection((host, 443), timeout=REACH_TIMEOUT_S).close()
        except OSError as e:
            return e.strerror or str(e) or type(e).__name__
        return None

    if not hosts:
        return {}
    pool = concurrent.futures.ThreadPoolExecutor(len(hosts))
    futures = {host: pool.submit(probe, host) for host in hosts}
    done, _ = concurrent.futures.wait(futures.values(), timeout=REACH_TIMEOUT_S + 2)
    pool.shutdown(wait=False)  # A name lookup that hangs is not waited for.
    return {
        host: (f.result() if f in done else f"no answer in {REACH_TIMEOUT_S:.0f} s")
        for host, f in futures.items()
        if f not in done or f.result() is not None
    }


def _entries(roots: list[str]) -> set[str]:
    """The local `roots` that exist and every path under them."""
    found = set()
    for root in roots:
        if os.path.isdir(root):
            found.add(root)
            for folder, dirs, files in os.walk(root):
                found.update(os.path.join(folder, n) for n in dirs + files)
    return found


def _remove_new(roots: list[str], before: set[str]) -> None:
    """Removes what a failed download added under the local `roots` (folders, .tmp files,
    incomplete.* preparations, the roots themselves where it made them), deepest first;
    what was there before stays."""
    import shutil

    for path in sorted(_entries(roots) - before, key=len, reverse=True):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
            os.remove(path)


def _offline_route(name: str, data_dir: str) -> str:
    return (
        f"prepare it offline: {what_to_place(name, '', data_dir)}, and set "
        "config.data.download='never' to stop instead of downloading"
    )


def _check_reachable(name: str, data_dir: str) -> None:
    """DataNotFoundError (one line: what, why, the offline route) where a host of tfds
    `name`'s download does not answer: before anything is written."""
    if unreachable := _unreachable_hosts(name):
        why = "; ".join(f"{host}: {reason}" for host, reason in unreachable.items())
        raise DataNotFoundError(
            f"config.data.download: cannot download {name} into {default_data_dir(data_dir)}: "
            f"its host does not answer ({why}); check the network (or proxy) and rerun, or "
            f"{_offline_route(name, data_dir)}"
        )


def download_and_prepare(name: str, data_dir: str) -> None:
    """Downloads and prepares tfds `name` into `data_dir` with tfds's own download.

    Raises DataNotFoundError, one line saying what failed, why, and the offline route, when
    the download or the preparation fails (no network, a proxy, a moved URL, a full disk).
    A host that cannot be reached fails within about REACH_TIMEOUT_S, before tfds starts; a
    failed download leaves no folder or temporary file of its own in `data_dir`.
    """
    data_dir = default_data_dir(data_dir)
    _check_reachable(name, data_dir)
    offline = _offline_route(name, data_dir)
    # What tfds writes into: the set's folder, its downloads and the data dir itself.
    roots = [] if "://" in data_dir else [data_dir]
    roots += [os.path.join(data_dir, name), os.path.join(data_dir, "downloads")] if roots else []
    before = {r for r in roots if os.path.isdir(r)} | _entries(roots[1:])
    builder = tfds.builder(name, data_dir=data_dir, try_gcs=False)
    size = builder.info.download_size
    logging.info(
        "%s is not prepared in %s: downloading it with tfds (%s; once, then read offline; "
        "config.data.download='never' stops instead).",
        name,
        data_dir,
        f"{size.GiB:.2f} GiB" if size else "size unknown",
    )
    start = time.perf_counter()
    try:
        builder.download_and_prepare(download_config=_download_config())
    except Exception as e:  # Network, HTTP, checksum or disk: each is the user's to fix.
        if name == official_files.NAMES[0]:  # celeb_a: Google Drive, which refuses it.
            command = PREPARE_COMMAND.format(name=name, raw="DIR", dd=data_dir)
            message = official_files.celeba_download_failure(e, data_dir, command)
        else:
            reason = " ".join(str(e).split()) or "no message"
            if len(reason) > 300:  # Cut at a word, and say so.
                reason = reason[:300].rsplit(" ", 1)[0] + " ..."
            message = (
                f"config.data.download: downloading {name} with tfds into {data_dir} failed "
                f"({type(e).__name__}: {reason}); check the network (or proxy) and rerun, or "
                f"{offline}"
            )
        # After the message (which may read what came): what this attempt wrote goes.
        _remove_new(roots[1:], before)
        if roots and roots[0] not in before and os.path.isdir(roots[0]):
            with contextlib.suppress(OSError):  # Made by this download, and empty again.
                os.rmdir(roots[0])
        raise DataNotFoundError(message) from e
    logging.info(
        "Downloaded and prepared %s into %s in %.0f s.",
        name,
        builder.data_dir,
        time.perf_counter() - start,
    )


def ensure_prepared(
    name: str,
    data_dir: str,
    raw_dir: str,
    download: str = "auto",
    *,
    process_index: int | None = None,
    process_count: int | None = None,
    wait_timeout_s: float = prepare_once.TIMEOUT_S,
    poll_s: float = prepare_once.POLL_S,
    verify_checksums: bool | None = None,
) -> None:
    """Makes `tfds.load(name, data_dir)` work offline, or raises DataNotFoundError.

    Already prepared: nothing to do. Else `digits` is built from scikit-learn's copy, a
    `raw_dir` is built from (whatever `download` says), else `download` 'auto' downloads with
    tfds and 'never' raises at once, saying how to prepare offline.

    Of several processes (`process_index` / `process_count`, default jax.process_index() /
    jax.process_count()) only process 0 prepares; the others wait for it, up to
    `wait_timeout_s`, looking every `poll_s` (data/prepare_once.py). `data_dir` must then be
    shared by all of them (gs:// on a pod); a per-host local folder is prepared by its own host.
    `verify_checksums` (None: unless SSINFOGAN_SKIP_CHECKSUMS=1) is official_files' check.
    """
    if is_prepared(name, data_dir):  # Done: tfds renames a build into place when complete.
        return
    if process_index is None or process_count is None:
        import jax  # Here: the data modules import no JAX; a caller that passes both needs none.

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if process_index > 0 and not is_prepared(name, data_dir):
        downloadable = download == "auto" and name not in registry.NOT_DOWNLOADABLE
        if not (raw_dir or name == "digits" or downloadable):
            raise DataNotFoundError(not_prepared_message(name, data_dir, download))
    downloads = download == "auto" and name not in NOT_DOWNLOADABLE and name != "digits"
    if process_index == 0 and downloads and not raw_dir and not is_prepared(name, data_dir):
        _check_reachable(name, data_dir)  # Offline: one line at once, and no lock file left.
    folder = _version_dir(name, data_dir)
    info = folder / "dataset_info.json"
    prepare_once.run(
        os.fspath(folder.parent),
        folder.name,
        prepare=lambda: _prepare_or_download(name, data_dir, raw_dir, download, verify_checksums),
        # dataset_info.json first: tfds warns about every folder without it that it is asked about.
        is_prepared=lambda: info.exists() and is_prepared(name, data_dir),
        process_index=process_index,
        process_count=process_count,
        what=name,
        remedy=(
            "prepare it once beforehand: "
            + PREPARE_COMMAND.format(name=name, raw=raw_dir or "DIR", dd=default_data_dir(data_dir))
        ),
        error=DataNotFoundError,
        timeout_s=wait_timeout_s,
        poll_s=poll_s,
    )


def _version_dir(name: str, data_dir: str) -> fileio.Path:
    """Where `name` is (or will be) prepared: data_dir/name[/config]/version."""
    if name == "digits":
        return fileio.Path(Digits(data_dir=default_data_dir(data_dir)).data_dir)
    builder = tfds.builder(name, data_dir=default_data_dir(data_dir), try_gcs=False)
    return fileio.Path(builder.data_dir)


def _prepare_or_download(
    name: str, data_dir: str, raw_dir: str, download: str, verify_checksums: bool | None
) -> None:
    """Prepares `name`, which is not prepared: from scikit-learn (digits), `raw_dir`, or a tfds
    download when `download` allows it; else raises DataNotFoundError."""
    if name == "digits":
        prepare(name, "", data_dir)
        return
    if raw_dir:
        prepare(name, raw_dir, data_dir, verify_checksums=verify_checksums)
        return
    if download == "auto" and name not in NOT_DOWNLOADABLE:
        download_and_prepare(name, data_dir)
        return
    raise DataNotFoundError(not_prepared_message(name, data_dir, download))


def not_prepared_message(name: str, data_dir: str, download: str) -> str:
    """Why `name` cannot be used here without a raw_dir, and how to prepare it offline."""
    if name in NOT_DOWNLOADABLE:
        why = "tfds cannot download it"
    else:
        why = f"config.data.download is {download!r}"
    return (
        f"config.data.data_dir: {name} is not prepared in {default_data_dir(data_dir)} and "
        f"{why}; {what_to_place(name, '', data_dir)}"
    )
