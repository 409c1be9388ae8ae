"""celeb_a, svhn_cropped and cifar10 built from small fixtures written in the exact formats
their owners publish (a zip of 178x218 JPEGs and CelebA's annotation files, SVHN's .mat files,
CIFAR's pickled and binary batches), read back through tfds as a downloaded build would be;
bad files stopped with one line; one process of several preparing a shared data_dir.
Nothing here reaches the network (conftest's guard fails any download)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import tarfile
import textwrap
import time
import zipfile

import numpy as np
import pytest
import scipy.io
from PIL import Image
from tensorflow_datasets.datasets.celeb_a import celeb_a_dataset_builder as tfds_celeba

from configs import celeba
from ssinfogan_jax import experiment
from ssinfogan_jax.data import builders, official_files, prepare_once
from ssinfogan_jax.data.tf_setup import tf, tfds

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship"]
CIFAR_NAMES.append("truck")


@pytest.fixture
def unchecked(monkeypatch):
    """The documented switch: the fixtures are not the official files, so no checksums."""
    monkeypatch.setenv(official_files.SKIP_CHECKSUMS_ENV, "1")


def _examples(name: str, data_dir, split: str, **kwargs) -> list[dict]:
    builder = tfds.builder(name, data_dir=str(data_dir), try_gcs=False)
    return list(tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False, **kwargs)))


def _same_info_as_tfds(name: str, data_dir) -> tfds.core.DatasetInfo:
    """The prepared set's info, checked against tfds's own builder: name, version, features."""
    built = tfds.builder(name, data_dir=str(data_dir), try_gcs=False)
    own = tfds.builder_cls(name)(data_dir=str(data_dir) + "-nonexistent")
    assert built.info.name == own.info.name and built.info.version == own.info.version
    assert repr(built.info.features) == repr(own.info.features)
    return built.info


# ----------------------------------------------------------------------------------------------
# CelebA: img_align_celeba.zip (or its folder), list_attr_celeba.txt, list_eval_partition.txt.

CELEBA_PARTITIONS = [0, 0, 0, 1, 2, 2, 0]  # Per file: 0 train, 1 validation, 2 test.


def _jpeg(rng, size=(178, 218)) -> bytes:
    buffer = io.BytesIO()
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _celeba_rows(values) -> str:
    # CelebA's column layout: each value right-aligned in 3 characters (" -1", "  1"), so runs
    # of one or two spaces separate them.
    return "".join(f"{v:>3}" for v in values)


def write_celeba(raw, *, folder: bool = False, optional: bool = True, seed: int = 0) -> dict:
    """The official CelebA files for len(CELEBA_PARTITIONS) images in `raw`; returns what
    they hold: {file name: (jpeg bytes, attributes [40] -1/1, landmarks [10], identity)}."""
    rng = np.random.default_rng(seed)
    raw.mkdir(parents=True, exist_ok=True)
    names = [f"{i:06d}.jpg" for i in range(1, len(CELEBA_PARTITIONS) + 1)]
    truth = {
        n: (
            _jpeg(rng),
            rng.choice([-1, 1], 40),
            rng.integers(60, 160, 10),
            int(rng.integers(1, 10177)),
        )
        for n in names
    }
    if folder:
        (raw / "img_align_celeba").mkdir()
        for n in names:
            (raw / "img_align_celeba" / n).write_bytes(truth[n][0])
    else:
        with zipfile.ZipFile(raw / "img_align_celeba.zip", "w") as z:
            z.writestr("img_align_celeba/", b"")
            for n in names:
                z.writestr(f"img_align_celeba/{n}", truth[n][0])
    # A count line, the 40 names (with CelebA's trailing space), then the rows; CRLF endings.
    attributes = [f"{len(names)}", " ".join(tfds_celeba.ATTR_HEADINGS) + " "]
    attributes += [n + _celeba_rows(truth[n][1]) for n in names]
    (raw / "list_attr_celeba.txt").write_bytes(("\r\n".join(attributes) + "\r\n").encode())
    partition = [f"{n} {p}" for n, p in zip(names, CELEBA_PARTITIONS, strict=True)]
    (raw / "list_eval_partition.txt").write_text("\n".join(partition) + "\n")
    if optional:
        landmarks = [f"{len(names)}", " ".join(tfds_celeba.LANDMARK_HEADINGS)]
        landmarks += [n + "          " + "".join(f"{v:>5}" for v in truth[n][2]) for n in names]
        (raw / "list_landmarks_align_celeba.txt").write_text("\n".join(landmarks) + "\n")
        identity = [f"{n} {truth[n][3]}" for n in names]
        (raw / "identity_CelebA.txt").write_text("\n".join(identity) + "\n")
    return truth


def _check_celeba(data_dir, truth, optional: bool) -> None:
    info = _same_info_as_tfds("celeb_a", data_dir)
    sizes = {s: CELEBA_PARTITIONS.count(i) for s, i in official_files.CELEBA_PARTITIONS.items()}
    assert (
        {s: info.splits[s].num_examples for s in sizes}
        == sizes
        == {
            "train": 4,
            "validation": 1,
            "test": 2,
        }
    )
    by_bytes = {jpeg: name for name, (jpeg, *_) in truth.items()}
    for split, file_id in official_files.CELEBA_PARTITIONS.items():
        raw = _examples("celeb_a", data_dir, split, decoders={"image": tfds.decode.SkipDecoding()})
        decoded = _examples("celeb_a", data_dir, split)
        names = [by_bytes[e["image"]] for e in raw]  # The JPEG bytes, stored untouched.
        assert sorted(names) == sorted(
            n for n, p in zip(truth, CELEBA_PARTITIONS, strict=True) if p == file_id
        )
        for example, image, name in zip(raw, decoded, names, strict=True):
            _, attributes, landmarks, identity = truth[name]
            assert image["image"].shape == (218, 178, 3)
            # Decoded as TensorFlow decodes the fixture's JPEG, the picture drawn (PIL's
            # decoder differs by a few levels).
            np.testing.assert_array_equal(image["image"], tf.io.decode_jpeg(truth[name][0]))
            drawn = np.asarray(Image.open(io.BytesIO(truth[name][0])), dtype=np.float64)
            assert np.abs(image["image"] - drawn).mean() < 2
            assert [bool(example["attributes"][a]) for a in tfds_celeba.ATTR_HEADINGS] == [
                bool(v == 1) for v in attributes
            ]
            got_landmarks = [int(example["landmarks"][k]) for k in tfds_celeba.LANDMARK_HEADINGS]
            got_identity = int(example["identity"]["Identity_No"])
            if optional:
                assert got_landmarks == landmarks.tolist() and got_identity == identity
            else:
                assert got_landmarks == [0] * 10 and got_identity == 0


def test_celeba_from_the_zip_is_tfds_celeb_a(tmp_path, unchecked):
    truth = write_celeba(tmp_path / "raw")
    assert builders.missing_raw_files("celeb_a", str(tmp_path / "raw")) == []
    builders.prepare("celeb_a", str(tmp_path / "raw"), str(tmp_path / "tfds"))
    _check_celeba(tmp_path / "tfds", truth, optional=True)


def test_celeba_from_the_extracted_folder_without_landmarks_or_identities(tmp_path, unchecked):
    truth = write_celeba(tmp_path / "raw", folder=True, optional=False, seed=1)
    builders.ensure_prepared(
        "celeb_a", str(tmp_path / "tfds"), str(tmp_path / "raw"), process_index=0, process_count=1
    )
    _check_celeba(tmp_path / "tfds", truth, optional=False)


# ----------------------------------------------------------------------------------------------
# SVHN: train_32x32.mat, test_32x32.mat (extra_32x32.mat optional).


def write_svhn(raw, sizes=(("train", 40), ("test", 20)), seed: int = 0) -> dict:
    """SVHN's .mat files: X [32, 32, 3, N] uint8, y [N, 1] double in 1..10 (10 = the digit 0),
    every class in each split; returns {split: (images [N, 32, 32, 3], y [N])}."""
    rng = np.random.default_rng(seed)
    raw.mkdir(parents=True, exist_ok=True)
    truth = {}
    for split, n in sizes:
        images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        y = rng.permutation(np.arange(n) % 10 + 1).astype(np.float64)
        x = np.ascontiguousarray(np.moveaxis(images, 0, -1))
        scipy.io.savemat(raw / f"{split}_32x32.mat", {"X": x, "y": y[:, None]})
        truth[split] = (images, y)
    return truth


def test_svhn_from_the_mat_files_has_0_for_10(tmp_path, unchecked):
    truth = write_svhn(tmp_path / "raw", (("train", 20), ("test", 10), ("extra", 5)))
    builders.prepare("svhn_cropped", str(tmp_path / "raw"), str(tmp_path / "tfds"))
    info = _same_info_as_tfds("svhn_cropped", tmp_path / "tfds")
    assert {s: info.splits[s].num_examples for s in info.splits} == dict(train=20, test=10, extra=5)
    for split, (images, y) in truth.items():
        examples = _examples("svhn_cropped", tmp_path / "tfds", split)
        assert len(examples) == len(y)
        for example in examples:
            index = int(example["id"].decode().removeprefix(f"{split}_"))
            np.testing.assert_array_equal(example["image"], images[index])
            assert example["label"] == (0 if y[index] == 10 else y[index])
        assert sorted(e["label"] for e in examples) == sorted(int(v) % 10 for v in y)


def test_svhn_needs_no_extra_file(tmp_path, unchecked):
    write_svhn(tmp_path / "raw", (("train", 10),))
    assert builders.missing_raw_files("svhn_cropped", str(tmp_path / "raw")) == ["test_32x32.mat"]
    write_svhn(tmp_path / "raw", (("test", 10),))
    assert builders.missing_raw_files("svhn_cropped", str(tmp_path / "raw")) == []
    builders.prepare("svhn_cropped", str(tmp_path / "raw"), str(tmp_path / "tfds"))
    assert set(_same_info_as_tfds("svhn_cropped", tmp_path / "tfds").splits) == {"train", "test"}


# ----------------------------------------------------------------------------------------------
# CIFAR-10: the Python version (tarball or folder) and the binary one.


def _cifar_row(image: np.ndarray) -> np.ndarray:
    """CIFAR's layout: the R, G and B planes of a 32x32 image, each row-major."""
    return np.concatenate([image[:, :, c].reshape(-1) for c in range(3)])


def write_cifar(raw, version: str = "python", packed: bool = True, per_batch: int = 4) -> dict:
    """CIFAR-10's five train batches and test batch, `per_batch` images each, as published:
    pickled dicts with bytes keys (python) or label byte + 3072 bytes records (binary), in a
    .tar.gz or its extracted folder. Returns {split: (images [N, 32, 32, 3], labels [N])}."""
    rng = np.random.default_rng(2)
    folder, train_files, test_file, meta_file = official_files.CIFAR_FILES[version]
    files, truth = {}, {}
    for split, names in (("train", train_files), ("test", (test_file,))):
        images = rng.integers(0, 256, (per_batch * len(names), 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, len(images))
        truth[split] = (images, labels)
        for b, name in enumerate(names):
            part = slice(b * per_batch, (b + 1) * per_batch)
            rows = np.stack([_cifar_row(im) for im in images[part]])
            if version == "python":
                batch = {
                    b"batch_label": f"batch {b}".encode(),
                    b"labels": [int(v) for v in labels[part]],
                    b"data": rows,
                    b"filenames": [f"{i}.png".encode() for i in range(per_batch)],
                }
                files[name] = pickle.dumps(batch, protocol=2)
            else:
                files[name] = np.concatenate(
                    [labels[part, None].astype(np.uint8), rows], 1
                ).tobytes()
    if version == "python":
        meta = {b"label_names": [n.encode() for n in CIFAR_NAMES], b"num_vis": 3072}
        files[meta_file] = pickle.dumps(meta, protocol=2)
    else:
        files[meta_file] = ("\n".join(CIFAR_NAMES) + "\n\n").encode()
    raw.mkdir(parents=True, exist_ok=True)
    if packed:
        archive = "cifar-10-python.tar.gz" if version == "python" else "cifar-10-binary.tar.gz"
        with tarfile.open(raw / archive, "w:gz") as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(f"{folder}/{name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    else:
        (raw / folder).mkdir()
        for name, data in files.items():
            (raw / folder / name).write_bytes(data)
    return truth


@pytest.mark.parametrize("version, packed", [("python", True), ("python", False), ("binary", True)])
def test_cifar10_from_the_python_or_binary_batches(tmp_path, unchecked, version, packed):
    truth = write_cifar(tmp_path / "raw", version, packed)
    builders.prepare("cifar10", str(tmp_path / "raw"), str(tmp_path / "tfds"))
    info = _same_info_as_tfds("cifar10", tmp_path / "tfds")
    assert info.features["label"].names == CIFAR_NAMES
    for split, (images, labels) in truth.items():
        examples = _examples("cifar10", tmp_path / "tfds", split)
        assert len(examples) == len(labels) == info.splits[split].num_examples
        for example in examples:
            index = int(example["id"].decode().removeprefix(f"{split}_"))
            np.testing.assert_array_equal(example["image"], images[index])
            assert example["label"] == labels[index]


# ----------------------------------------------------------------------------------------------
# Checksums, missing files and malformed lines: one line each, nothing prepared.


def _refused(name, raw, data_dir, **kwargs) -> str:
    with pytest.raises(builders.BadRawFileError) as error:
        builders.prepare(name, str(raw), str(data_dir), **kwargs)
    message = str(error.value)
    assert "\n" not in message
    assert not builders.is_prepared(name, str(data_dir))
    assert not any(p.name.startswith("incomplete") for p in (data_dir / name).glob("*"))
    return message


def test_archives_are_checked_against_the_sizes_and_sha256_tfds_records(tmp_path, monkeypatch):
    write_svhn(tmp_path / "raw")
    train = tmp_path / "raw" / "train_32x32.mat"
    message = _refused("svhn_cropped", tmp_path / "raw", tmp_path / "tfds")
    size = train.stat().st_size
    assert message == (
        f"cannot prepare svhn_cropped: {train}: {size:,} bytes, expected 182,040,794; download "
        f"it again from http://ufldl.stanford.edu/housenumbers/, or set "
        f"SSINFOGAN_SKIP_CHECKSUMS=1 to use it unchecked"
    )
    # The sha256 is compared too: the record of a file of this very size, but other bytes.
    records = official_files.expected_checksums("svhn_cropped")
    test_file = tmp_path / "raw" / "test_32x32.mat"
    test_sha = hashlib.sha256(test_file.read_bytes()).hexdigest()
    records["train_32x32.mat"] = (size, "0" * 64)
    records["test_32x32.mat"] = (test_file.stat().st_size, test_sha)
    monkeypatch.setattr(official_files, "expected_checksums", lambda name: records)
    message = _refused("svhn_cropped", tmp_path / "raw", tmp_path / "tfds")
    real = hashlib.sha256(train.read_bytes()).hexdigest()
    assert f"{train}: sha256 {real}, expected {'0' * 64};" in message
    records["train_32x32.mat"] = (size, real)  # Both as recorded: built.
    builders.prepare("svhn_cropped", str(tmp_path / "raw"), str(tmp_path / "tfds"))
    assert builders.is_prepared("svhn_cropped", str(tmp_path / "tfds"))


def test_an_html_page_saved_as_the_zip_is_named_as_such(tmp_path):
    write_celeba(tmp_path / "raw")
    page = b"<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title>"
    (tmp_path / "raw" / "img_align_celeba.zip").write_bytes(page + b" " * 2000)
    message = _refused("celeb_a", tmp_path / "raw", tmp_path / "tfds", verify_checksums=True)
    assert message.startswith(
        f"cannot prepare celeb_a: {tmp_path / 'raw' / 'img_align_celeba.zip'}: an HTML page (a "
        "failed download), not the official file; download it again from "
        "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
    )
    message = _refused("celeb_a", tmp_path / "raw", tmp_path / "tfds", verify_checksums=False)
    assert message.endswith(
        "img_align_celeba.zip: an HTML page (a failed download); download "
        "it from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
    )


def _replace_line(path, number: int, text: str) -> None:
    lines = path.read_bytes().decode().splitlines()
    lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    "file, line, text, expected",
    [
        (
            "list_attr_celeba.txt",
            4,
            "000002.jpg" + _celeba_rows([1] * 39),
            "list_attr_celeba.txt line 4: 39 values after the file name, expected 40",
        ),
        (
            "list_attr_celeba.txt",
            5,
            "000003.jpg" + _celeba_rows([1] * 39 + [0]),
            "list_attr_celeba.txt line 5: expected -1 or 1, found " + "1 " * 39 + "0",
        ),
        (
            "list_attr_celeba.txt",
            1,
            "seven",
            "list_attr_celeba.txt line 1: expected the number of rows, found ['seven']",
        ),
        (
            "list_eval_partition.txt",
            2,
            "000002.jpg 3",
            "list_eval_partition.txt line 2: expected 0, 1 or 2, found 3",
        ),
        (
            "list_eval_partition.txt",
            3,
            "000099.jpg 0",
            "list_attr_celeba.txt: no row for 000099.jpg (listed in list_eval_partition.txt)",
        ),
    ],
)
def test_a_malformed_line_is_one_line_naming_file_and_line(
    tmp_path, unchecked, file, line, text, expected
):
    write_celeba(tmp_path / "raw")
    _replace_line(tmp_path / "raw" / file, line, text)
    message = _refused("celeb_a", tmp_path / "raw", tmp_path / "tfds")
    assert message == f"cannot prepare celeb_a: {tmp_path / 'raw'}/{expected}"


def test_bad_images_and_arrays_are_named(tmp_path, unchecked):
    raw = tmp_path / "celeba"
    write_celeba(raw, folder=True)
    (raw / "img_align_celeba" / "000006.jpg").write_bytes(_jpeg(np.random.default_rng(0), (64, 64)))
    message = _refused("celeb_a", raw, tmp_path / "tfds")  # Found while tfds writes: removed.
    assert message.endswith(
        "img_align_celeba: 000006.jpg is a 64x64 RGB JPEG, expected a 178x218 RGB JPEG"
    )
    (raw / "img_align_celeba" / "000006.jpg").unlink()
    message = _refused("celeb_a", raw, tmp_path / "tfds")
    assert message.endswith(
        "img_align_celeba: lacks 000006.jpg (listed in list_eval_partition.txt)"
    )

    raw = tmp_path / "svhn"
    write_svhn(raw)
    scipy.io.savemat(
        raw / "test_32x32.mat", {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": [[0], [1]]}
    )
    message = _refused("svhn_cropped", raw, tmp_path / "tfds")
    assert message.endswith("test_32x32.mat: y[0] is 0, expected 1 to 10 (10 for the digit 0)")
    scipy.io.savemat(
        raw / "test_32x32.mat", {"X": np.zeros((2, 32, 32, 3), np.uint8), "y": [[1], [1]]}
    )
    message = _refused("svhn_cropped", raw, tmp_path / "tfds")
    assert message.endswith(
        "test_32x32.mat: X is [2, 32, 32, 3] uint8, expected [32, 32, 3, N] uint8"
    )

    raw = tmp_path / "cifar"
    write_cifar(raw, packed=False)
    (raw / "cifar-10-batches-py" / "data_batch_3").unlink()
    message = _refused("cifar10", raw, tmp_path / "tfds")
    assert message.endswith("cifar-10-batches-py: lacks data_batch_3")


def test_what_each_set_needs_is_said_with_where_to_get_it(tmp_path):
    (tmp_path / "raw").mkdir()
    assert builders.missing_raw_files("cifar10", str(tmp_path / "raw")) == [
        "cifar-10-python.tar.gz (or cifar-10-batches-py/, cifar-10-binary.tar.gz, "
        "cifar-10-batches-bin/)"
    ]
    assert builders.missing_raw_files("celeb_a", str(tmp_path / "raw")) == [
        "img_align_celeba.zip (or its extracted img_align_celeba/ folder)",
        "list_attr_celeba.txt",
        "list_eval_partition.txt",
    ]
    advice = builders.what_to_place("celeb_a", "", str(tmp_path / "tfds"))
    assert advice.startswith(
        "place img_align_celeba.zip (or its extracted img_align_celeba/ folder), "
        "list_attr_celeba.txt, list_eval_partition.txt (optional: "
        "list_landmarks_align_celeba.txt, identity_CelebA.txt) from "
        "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html in a folder"
    )


def test_prepare_data_refuses_with_one_line_and_exit_2(tmp_path):
    write_svhn(tmp_path / "raw", (("train", 10),))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ssinfogan_jax.prepare_data",
            "--dataset=svhn_cropped",
            f"--raw_dir={tmp_path / 'raw'}",
            f"--data_dir={tmp_path / 'tfds'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("FATAL")]
    assert line.startswith(
        f"FATAL data not found: cannot prepare svhn_cropped offline: {tmp_path / 'raw'} lacks "
        "test_32x32.mat; place train_32x32.mat, test_32x32.mat (optional: extra_32x32.mat) from "
        "http://ufldl.stanford.edu/housenumbers/ in a folder"
    ), line
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "tfds" / "svhn_cropped").exists() or not builders.is_prepared(
        "svhn_cropped", str(tmp_path / "tfds")
    )


# ----------------------------------------------------------------------------------------------
# A run through the CLI, from the raw folder.


def _main_from_raw(tmp_path, config: str, *flags: str) -> subprocess.CompletedProcess:
    """`main` with `config` on the official files in <tmp_path>/raw (checksums skipped: they
    are fixtures), preparing into <tmp_path>/tfds, a 5-step judge in <tmp_path>/judges, the
    run in <tmp_path>/run; it must exit 0."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ssinfogan_jax.main",
            f"--config={config}",
            f"--config.data.raw_dir={tmp_path / 'raw'}",
            f"--config.data.data_dir={tmp_path / 'tfds'}",
            f"--workdir={tmp_path / 'run'}",
            "--config.eval.judge_steps=5",
            f"--config.eval.judge_dir={tmp_path / 'judges'}",
            *flags,
        ],
        cwd=ROOT,
        env={**os.environ, official_files.SKIP_CHECKSUMS_ENV: "1"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_svhn_runlocal_trains_from_the_raw_folder(tmp_path):
    write_svhn(tmp_path / "raw")
    result = _main_from_raw(tmp_path, "configs/svhn.py:runlocal", "--config.data.num_labeled=10")
    assert "Prepared svhn_cropped into" in result.stderr
    assert "(cond_acc_direct/digit)" in result.stdout  # The end summary's headline.
    assert builders.is_prepared("svhn_cropped", str(tmp_path / "tfds"))
    subset = json.loads((tmp_path / "run" / "labeled_subset.json").read_text())
    assert (subset["dataset"], subset["num_train"], subset["num_labeled"]) == (
        "svhn_cropped",
        40,
        10,
    )
    # Stratified: one labelled example per digit, 0 among them (stored as 10 in the .mat).
    assert subset["count_per_class"]["label"] == {str(d): 1 for d in range(10)}


def test_celeba_64_runlocal_trains_at_64x64_from_the_raw_folder(tmp_path):
    """configs/celeba.py:64,runlocal through the CLI on the official files: G, the data and the
    judge at 64x64; the set it prepared also serves 32x32 (the size is the net's, at load)."""
    write_celeba(tmp_path / "raw")
    data_dir, judges = tmp_path / "tfds", tmp_path / "judges"
    # Of the fixture's 4: its 1% (the count is of the split as built) is none, which a run set
    # up for labels refuses (test_input_pipeline).
    result = _main_from_raw(
        tmp_path, "configs/celeba.py:64,runlocal", "--config.data.num_labeled=2"
    )
    assert "Prepared celeb_a into" in result.stderr
    assert "(cond_acc_direct_mean)" in result.stdout  # The end summary's headline.
    assert json.loads((tmp_path / "run" / "config.json").read_text())["model"]["arch"] == "dcgan_64"
    # G's samples: a row per value of the binary code, 64-pixel cells with 2-pixel gaps.
    (grid,) = (tmp_path / "run" / "images").glob("step_6/samples_smiling.png")
    assert Image.open(grid).size[1] == 2 * (64 + 2) + 2
    # The judge: trained at 64x64, apart from a 32x32 one (its key names the size).
    (judge,) = judges.iterdir()
    assert judge.name.startswith("celeb_a_64x64_")
    spec = json.loads((judge / "classifier.json").read_text())["spec"]
    assert spec["image_shape"] == [64, 64, 3]

    # The data: the crop area-resized to the net's size, from the one prepared set.
    stored = [e["image"] for e in _examples("celeb_a", data_dir, "train")]  # 218 x 178
    top, left, h, w = celeba.get_config().data.celeba_crop
    for arg, size in (("64", 64), ("", 32)):
        config = celeba.get_config(arg)
        config.data.data_dir = str(data_dir)
        source = experiment.data_source(config)
        assert source.spec.image_shape == (size, size, 3)
        assert source.judge_key == ("celeb_a_64x64" if size == 64 else "celeb_a")
        images, labels = source.load("train")
        assert images.shape == (4, size, size, 3) and images.dtype == np.uint8
        assert set(labels) == set(config.data.celeba_attributes)
        k = h // size  # The crop is 128x128: each pixel the mean of a k x k block.
        for image, full in zip(images, stored, strict=True):
            crop = full[top : top + h, left : left + w].astype(np.float64)
            blocks = crop.reshape(size, k, size, k, 3).mean(axis=(1, 3))
            assert np.abs(image - blocks).max() <= 0.5 + 1e-3  # Rounded to the nearest level.


def test_a_run_with_a_malformed_file_stops_with_one_line_and_exit_2(tmp_path):
    write_svhn(tmp_path / "raw")
    bad_y = {"X": np.zeros((32, 32, 3, 1), np.uint8), "y": [[11]]}
    scipy.io.savemat(tmp_path / "raw" / "test_32x32.mat", bad_y)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ssinfogan_jax.main",
            "--config=configs/svhn.py:runlocal",
            f"--config.data.raw_dir={tmp_path / 'raw'}",
            f"--config.data.data_dir={tmp_path / 'tfds'}",
            f"--workdir={tmp_path / 'run'}",
            "--config.data.num_labeled=10",
        ],
        cwd=ROOT,
        env={**os.environ, official_files.SKIP_CHECKSUMS_ENV: "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("FATAL")]
    assert line == (
        f"FATAL data not found: cannot prepare svhn_cropped: {tmp_path / 'raw'}/test_32x32.mat: "
        "y[0] is 11, expected 1 to 10 (10 for the digit 0)"
    )
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()  # Rejected before anything was written.
    assert not builders.is_prepared("svhn_cropped", str(tmp_path / "tfds"))
    assert [p.name for p in (tmp_path / "tfds" / "svhn_cropped").iterdir()] == [".prepare.lock"]


# ----------------------------------------------------------------------------------------------
# Prepared once: process 0 builds, the others wait for it.

_PROCESS = textwrap.dedent(
    """
    import os, sys, time
    from absl import logging
    from ssinfogan_jax.data import builders

    logging.set_verbosity(logging.INFO)
    index, waiting = int(sys.argv[1]), sys.argv[2]
    if index == 0:  # Prepares only once process 1 is waiting, so that it surely waits.
        prepare = builders.prepare
        def after_process_1(*args, **kwargs):
            while not os.path.exists(waiting):
                time.sleep(0.05)
            prepare(*args, **kwargs)
        builders.prepare = after_process_1
    for data_dir, raw_dir in zip(sys.argv[3::2], sys.argv[4::2]):
        if index == 1:
            open(waiting, "w").close()
        try:
            builders.ensure_prepared(
                "svhn_cropped", data_dir, raw_dir, process_index=index, process_count=2,
                wait_timeout_s=240, poll_s=0.1,
            )
            print("READY", flush=True)
        except builders.DataNotFoundError as e:
            print("FAILED", e, flush=True)
        if index == 0:
            os.remove(waiting)
    """
)


def test_two_processes_on_a_shared_folder_only_process_0_prepares(tmp_path):
    """Two processes (process_index 0 and 1) on one shared data_dir, twice: with a bad file,
    and with good ones."""
    write_svhn(tmp_path / "bad", (("train", 10), ("test", 10)))
    bad_y = {"X": np.zeros((32, 32, 3, 1), np.uint8), "y": [[11]]}
    scipy.io.savemat(tmp_path / "bad" / "test_32x32.mat", bad_y)
    write_svhn(tmp_path / "raw", (("train", 10), ("test", 10)))
    data_dir = tmp_path / "tfds"
    scenarios = [
        str(data_dir / "a"),
        str(tmp_path / "bad"),
        str(data_dir / "b"),
        str(tmp_path / "raw"),
    ]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _PROCESS, str(i), str(tmp_path / "waiting"), *scenarios],
            cwd=ROOT,
            env={**os.environ, official_files.SKIP_CHECKSUMS_ENV: "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in (0, 1)
    ]
    (out0, log0), (out1, log1) = (p.communicate(timeout=400) for p in processes)
    assert [p.returncode for p in processes] == [0, 0], (log0[-2000:], log1[-2000:])
    # A bad file: process 0 stops with its line, process 1 with process 0's line (no timeout).
    bad = "test_32x32.mat: y[0] is 11, expected 1 to 10 (10 for the digit 0)"
    failed0, ready0 = [line for line in out0.splitlines() if line.startswith(("FAILED", "READY"))]
    failed1, ready1 = [line for line in out1.splitlines() if line.startswith(("FAILED", "READY"))]
    assert failed0.startswith("FAILED cannot prepare svhn_cropped: ") and failed0.endswith(bad)
    assert failed1 == f"FAILED process 0 could not prepare svhn_cropped: {failed0[7:]}"
    # Good files: only process 0 prepared; process 1 waited for its marker, then read.
    assert ready0 == ready1 == "READY"
    assert log0.count("Prepared svhn_cropped into") == 1 and "Prepared" not in log1
    waited = [line for line in log1.splitlines() if "svhn_cropped is prepared in" in line]
    assert len(waited) == 1 and f"{data_dir / 'b' / 'svhn_cropped'} (waited" in waited[0]
    folder = data_dir / "b" / "svhn_cropped"
    assert json.loads((folder / "3.1.0.prepared").read_text())["process_index"] == 0
    assert not (folder / "3.1.0.preparing").exists() and not (folder / "3.1.0.failed").exists()
    written = [p.stat().st_mtime for p in (folder / "3.1.0").iterdir()]
    assert max(written) <= (folder / "3.1.0.prepared").stat().st_mtime
    assert builders.is_prepared("svhn_cropped", str(data_dir / "b"))
    assert not builders.is_prepared("svhn_cropped", str(data_dir / "a"))


def test_a_process_that_waits_in_vain_says_why(tmp_path):
    """Process 1 alone: nobody ever claims the folder; with a grace period longer than the
    timeout it stops with a clear line (a per-host folder would be prepared after the grace)."""
    with pytest.raises(builders.DataNotFoundError) as error:
        builders.ensure_prepared(
            "digits",
            str(tmp_path / "tfds"),
            "",
            process_index=1,
            process_count=4,
            wait_timeout_s=0.3,
            poll_s=0.05,
        )
    message = str(error.value)
    assert message.startswith(
        f"process 1 waited 0 s for process 0 to prepare digits in {tmp_path / 'tfds' / 'digits'}"
    )
    assert (
        "never started preparing it there (1.0.0.preparing never appeared): is the data_dir "
        "shared by every process? On a pod use a gs:// data_dir" in message
    )
    assert message.endswith(
        f"prepare it once beforehand: python -m ssinfogan_jax.prepare_data --dataset=digits "
        f"--raw_dir=DIR --data_dir={tmp_path / 'tfds'}, then run again"
    )
    assert not builders.is_prepared("digits", str(tmp_path / "tfds"))


def test_a_folder_process_0_never_claims_is_prepared_by_its_own_host(tmp_path):
    """A per-host local folder (a multi-host job with a local data_dir): after the grace
    period the processes that share it prepare it, one at a time."""
    calls = []

    def prepare():
        calls.append(1)
        (tmp_path / "done").write_text("x")

    kwargs = dict(
        prepare=prepare,
        is_prepared=(tmp_path / "done").exists,
        process_count=3,
        what="a set",
        remedy="-",
        error=RuntimeError,
        timeout_s=30,
        poll_s=0.01,
        grace_s=0.05,
    )
    prepare_once.run(str(tmp_path), "1.0", process_index=1, **kwargs)
    prepare_once.run(str(tmp_path), "1.0", process_index=2, **kwargs)
    assert calls == [1]
    assert not (tmp_path / "1.0.prepared").exists()  # Process 0 did not prepare it.


# ----------------------------------------------------------------------------------------------
# A raw folder on gs:// (the GCS emulator of tests/gcs_emulator.py).

_FROM_GCS = textwrap.dedent(
    """
    import sys
    from ssinfogan_jax.data import builders

    data_dir = sys.argv[1]
    builders.prepare("celeb_a", "gs://bucket/celeba", data_dir, verify_checksums=False)
    builders.prepare("celeb_a", "gs://bucket/faces", data_dir + "-folder", verify_checksums=False)
    builders.prepare("cifar10", "gs://bucket/cifar", data_dir, verify_checksums=False)
    try:
        builders.prepare("svhn_cropped", "gs://bucket/svhn", data_dir)
    except builders.DataNotFoundError as e:
        print("REFUSED", e)
    """
)


def test_a_raw_dir_on_gcs_is_read_through_the_file_layer(tmp_path):
    """A zip (copied once to a local temporary file), a folder of JPEGs (read by threads), a
    folder of pickled batches and a .mat file checked against tfds's size, all on gs://."""
    pytest.importorskip("gcsfs", reason="gs:// through etils epath needs gcsfs ([test] extra)")
    pytest.importorskip("gcp_storage_emulator.server", reason="the emulator is a [test] extra")
    storage = pytest.importorskip("google.cloud.storage")
    sys.path.insert(0, os.path.dirname(__file__))
    import gcs_emulator
    from google.auth.credentials import AnonymousCredentials

    celeba = write_celeba(tmp_path / "raw" / "celeba")
    faces = write_celeba(tmp_path / "raw" / "faces", folder=True, optional=False, seed=3)
    cifar = write_cifar(tmp_path / "raw" / "cifar", packed=False)
    write_svhn(tmp_path / "raw" / "svhn", (("train", 10), ("test", 10)))
    server, url = gcs_emulator.start(port=0, bucket="bucket")
    try:
        client = storage.Client(
            project="test",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": url},
        )
        bucket = client.bucket("bucket")
        for path in (tmp_path / "raw").rglob("*"):
            if path.is_file():
                bucket.blob(str(path.relative_to(tmp_path / "raw"))).upload_from_filename(path)
        result = subprocess.run(
            [sys.executable, "-c", _FROM_GCS, str(tmp_path / "tfds")],
            cwd=ROOT,
            env={**os.environ, **gcs_emulator.environment(url)},
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr[-3000:]
    _check_celeba(tmp_path / "tfds", celeba, optional=True)
    _check_celeba(tmp_path / "tfds-folder", faces, optional=False)
    for split, (images, labels) in cifar.items():
        examples = _examples("cifar10", tmp_path / "tfds", split)
        got = {int(e["id"].decode().split("_")[1]): e for e in examples}
        assert sorted(got) == list(range(len(labels)))
        assert all(np.array_equal(got[i]["image"], images[i]) for i in got)
    size = (tmp_path / "raw" / "svhn" / "train_32x32.mat").stat().st_size
    (refused,) = [line for line in result.stdout.splitlines() if line.startswith("REFUSED")]
    assert refused.startswith(
        f"REFUSED cannot prepare svhn_cropped: gs://bucket/svhn/train_32x32.mat: {size:,} bytes, "
        "expected 182,040,794;"
    )


@pytest.mark.parametrize(
    "name, write, expected",
    [
        ("cifar10", write_cifar, "cifar-10-python.tar.gz: {size:,} bytes, expected 170,498,071"),
        ("celeb_a", write_celeba, "img_align_celeba.zip: {size:,} bytes, expected 1,443,490,838"),
    ],
)
def test_each_archive_has_its_record(tmp_path, name, write, expected):
    """The Python CIFAR tarball (keras' record: tfds fetches the binary one) and CelebA's zip."""
    write(tmp_path / "raw")
    (archive,) = [p for p in (tmp_path / "raw").iterdir() if p.suffix in (".gz", ".zip")]
    message = _refused(name, tmp_path / "raw", tmp_path / "tfds")
    assert expected.format(size=archive.stat().st_size) in message


def test_only_a_fresh_failure_of_process_0_stops_a_waiter(tmp_path):
    """A 'failed' marker from an earlier run is not this run's news; a new one is."""
    kwargs = dict(
        prepare=lambda: None,
        is_prepared=lambda: False,
        process_index=1,
        process_count=2,
        what="a set",
        remedy="prepare it",
        error=RuntimeError,
        poll_s=0.01,
    )
    (tmp_path / "1.0.preparing").write_text(json.dumps({"host": "h0", "time": 0}))
    old = {"message": "an old failure", "time": time.time() - 10 * prepare_once.FRESH_S}
    (tmp_path / "1.0.failed").write_text(json.dumps(old))
    with pytest.raises(RuntimeError, match="process 0 started on h0 and has not finished"):
        prepare_once.run(str(tmp_path), "1.0", timeout_s=0.2, **kwargs)
    (tmp_path / "1.0.failed").write_text(json.dumps({"message": "bad file", "time": time.time()}))
    with pytest.raises(RuntimeError, match=r"^process 0 could not prepare a set: bad file$"):
        prepare_once.run(str(tmp_path), "1.0", timeout_s=30, **kwargs)
