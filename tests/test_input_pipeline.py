"""Input pipeline: offline data, the labelled subset, the schedule, sharding, determinism.

No test can download: an autouse fixture makes any tfds download raise.
"""

import gzip
import itertools
import json
import os
import shutil
import time

import jax
import numpy as np
import pytest

from ssinfogan_jax import augment, experiment
from ssinfogan_jax import default_config as default
from ssinfogan_jax import input_pipeline as ip
from ssinfogan_jax.config_checks import ConfigError
from ssinfogan_jax.data import builders, labeled_subset, registry, sampler
from ssinfogan_jax.data.tf_setup import tfds

MNIST_RAW = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist")
MNIST_RAW = os.environ.get("SSINFOGAN_MNIST_RAW", os.path.abspath(MNIST_RAW))


def create_train_data(config, workdir, process_index: int = 0, process_count: int = 1):
    """The loop's way: the config checked and resolved once, then the data."""
    exp = experiment.from_config(config, process_count=process_count, device_count=1)
    return ip.create_train_data(
        exp, workdir, process_index=process_index, process_count=process_count
    )


def validate_data_config(config, process_count: int = 1, device_count: int = 1) -> list[str]:
    """The data's problems as a run meets them: the config's first, then the data's presence."""
    problems = experiment.find_problems(config, process_count, device_count)
    return problems or source_of(config).problems()


def source_of(config):
    """The config's data source, as a run builds it."""
    return experiment.data_source(config)


@pytest.fixture(scope="module")
def tiny_idx_dir(tmp_path_factory):
    """A folder of small, valid, gzipped MNIST-format IDX files (5 train, 3 test): the raw-file
    paths are tested without the real MNIST, which not every machine has."""
    root = tmp_path_factory.mktemp("tiny_idx")
    rng = np.random.default_rng(0)
    for split, n in (("train", 5), ("test", 3)):
        prefix = "train" if split == "train" else "t10k"
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        header = np.array([0x803, n, 28, 28], ">u4").tobytes()
        with gzip.open(root / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
            f.write(header + images.tobytes())
        with gzip.open(root / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(np.array([0x801, n], ">u4").tobytes() + labels.tobytes())
    return str(root)


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("tfds_digits"))
    builders.prepare("digits", "", data_dir)
    return data_dir


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    """(data_dir, TrainData) of real MNIST, prepared offline from the IDX files on first use
    because config.data.raw_dir names them (the same `prepare` the CLI runs); once per session."""
    if not os.path.isdir(MNIST_RAW):
        pytest.skip(f"no raw MNIST at {MNIST_RAW}")
    config = default.get_config()
    config.data.data_dir = str(tmp_path_factory.mktemp("tfds_mnist"))
    config.data.raw_dir = MNIST_RAW
    config.data.prefetch = 0
    start = time.perf_counter()
    data = create_train_data(config, None)
    print(f"prepared and loaded MNIST in {time.perf_counter() - start:.1f} s")
    return config.data.data_dir, data


def digits_config(data_dir, **data):
    config = default.get_config()
    config.data.name = "digits"
    config.data.data_dir = data_dir
    config.data.num_labeled = 50
    config.batch_size = 32
    config.data.prefetch = 0
    for k, v in data.items():
        config.data[k] = v
    return config


# ----------------------------------------------------------------------------------------------
# Offline data.


def test_digits_loads_offline_and_matches_sklearn(digits_dir, tmp_path):
    config = digits_config(digits_dir)
    info = source_of(config).spec
    assert info == registry.DataSpec(
        "digits", "mnist", (28, 28, 1), (0.0, 1.0), 1438, 359, {"label": 10}
    )
    images, labels = source_of(config).load_float("test")
    assert images.shape == (359, 28, 28, 1) and images.dtype == np.float32
    assert images.min() == 0.0 and images.max() == 1.0
    raw_images, raw_labels = builders.digits_arrays()["test"]
    # tfds stores examples in hashed-key order: compare as a mapping image -> label.
    raw = {im.tobytes(): int(lab) for im, lab in zip(raw_images, raw_labels, strict=True)}
    got = {
        np.round(im * 255).astype(np.uint8).tobytes(): int(lab)
        for im, lab in zip(images, labels["label"], strict=True)
    }
    assert got == raw
    # Digits are prepared on first use into an empty data_dir, without any files.
    fresh = str(tmp_path / "fresh")
    data = create_train_data(digits_config(fresh), None)
    assert builders.is_prepared("digits", fresh)
    assert data.info.num_train == 1438
    batch = data.batch(0)
    assert batch["image"].shape == (32, 28, 28, 1) and batch["image"].dtype == np.float32
    assert (
        batch["label_masks"]["label"].shape == (32,)
        and batch["label_masks"]["label"].dtype == np.float32
    )
    assert batch["labels"]["label"].shape == (32,) and batch["labels"]["label"].dtype == np.int32
    assert data.indices(0).shape == (32,) and data.indices(0).dtype == np.int64
    assert set(batch) == {"image", "label_masks", "labels"}  # What the step reads, no more.


def _lookup(images: np.ndarray) -> dict[bytes, int]:
    return {im.tobytes(): i for i, im in enumerate(images)}


def test_real_mnist_prepared_offline_matches_idx(mnist):
    mnist_dir, data = mnist
    # tfds.load works offline on the prepared folder; the test split is exactly the IDX one.
    test_images = builders.read_idx(MNIST_RAW, "test_images")
    test_labels = builders.read_idx(MNIST_RAW, "test_labels")
    ds = tfds.load("mnist", split="test", data_dir=mnist_dir, batch_size=-1)
    tf_images, tf_labels = np.asarray(ds["image"]), np.asarray(ds["label"])
    assert tf_images.shape == (10000, 28, 28, 1) and tf_images.dtype == np.uint8
    by_bytes = _lookup(test_images)
    found = np.array([by_bytes[im.tobytes()] for im in tf_images[..., 0]])  # KeyError = absent
    np.testing.assert_array_equal(test_labels[found], tf_labels)
    assert len(set(found.tolist())) == len(by_bytes)  # every IDX image is there

    # The training data: all 60,000 IDX examples, and the first batches hold exactly the IDX
    # images (scaled to [0, 1]) with their labels. (tfds stores examples in hashed-key
    # order, so example i of the split is IDX example found[i].)
    train_images = builders.read_idx(MNIST_RAW, "train_images")
    train_labels = builders.read_idx(MNIST_RAW, "train_labels")
    assert data.info.num_train == 60000 and len(data.labeled_indices) == 600
    by_bytes = _lookup(train_images)
    found = np.array([by_bytes[im.tobytes()] for im in data.images[..., 0]])
    assert len(set(found.tolist())) == len(by_bytes) > 59_000  # (MNIST repeats a few images)
    np.testing.assert_array_equal(data.labels["label"], train_labels[found])
    for step in range(3):  # p(labelled) = 1 in the first 100 steps
        batch = data.batch(step)
        assert batch["label_masks"]["label"].sum() == 128
        idx = found[data.indices(step)]
        np.testing.assert_array_equal(
            np.round(batch["image"][..., 0] * 255).astype(np.uint8), train_images[idx]
        )
        np.testing.assert_array_equal(batch["labels"]["label"], train_labels[idx])
    # Stratified: 60 labelled per digit.
    assert np.bincount(train_labels[found[data.labeled_indices]]).tolist() == [60] * 10


def test_idx_reader_takes_plain_and_gzipped_files(tmp_path, tiny_idx_dir):
    for stem in builders.IDX_FILES.values():
        with gzip.open(os.path.join(tiny_idx_dir, stem + ".gz")) as src:
            (tmp_path / stem).write_bytes(src.read())
    assert builders.missing_idx_files(str(tmp_path)) == []
    plain = builders.read_idx(str(tmp_path), "test_images")
    assert plain.shape[:3] == (3, 28, 28)
    np.testing.assert_array_equal(plain, builders.read_idx(tiny_idx_dir, "test_images"))
    with gzip.open(os.path.join(tiny_idx_dir, "t10k-images-idx3-ubyte.gz")) as src:
        raw = np.frombuffer(src.read()[16:], np.uint8)
    np.testing.assert_array_equal(plain.reshape(-1), raw)


def test_missing_data_fails_fast_with_what_to_place_where(tmp_path, tiny_idx_dir):
    config = default.get_config()
    config.data.data_dir = str(tmp_path / "tfds")
    config.data.download = "never"  # (What 'auto' does: tests/test_downloads.py.)
    start = time.perf_counter()
    with pytest.raises(ip.DataNotFoundError) as e:
        create_train_data(config, None)
    assert time.perf_counter() - start < 5.0
    message = str(e.value)
    assert "config.data.data_dir: mnist is not prepared in " + str(tmp_path / "tfds") in message
    assert "train-images-idx3-ubyte[.gz]" in message and "t10k-labels-idx1-ubyte[.gz]" in message
    assert "python -m ssinfogan_jax.prepare_data --dataset=mnist" in message

    # A raw folder that lacks files: named, and still fast.
    raw = tmp_path / "raw"
    raw.mkdir()
    shutil.copy(os.path.join(tiny_idx_dir, "train-labels-idx1-ubyte.gz"), raw)
    config.data.raw_dir = str(raw)
    problems = validate_data_config(config, process_count=1, device_count=1)
    assert len(problems) == 1 and problems[0].startswith(f"config.data.raw_dir: {raw} lacks ")
    assert "train-images-idx3-ubyte, t10k-images-idx3-ubyte" in problems[0]
    with pytest.raises(ip.DataNotFoundError):
        create_train_data(config, None)

    # Other sets name the original downloads.
    config.data.name, config.data.raw_dir = "svhn_cropped", ""
    config.model.arch = "infogan_32"
    problems = validate_data_config(config, process_count=1, device_count=1)
    (problem,) = [p for p in problems if "place" in p]
    assert "train_32x32.mat" in problem and "test_32x32.mat" in problem
    with pytest.raises(ip.DataNotFoundError, match="cannot prepare celeb_a offline"):
        builders.prepare("celeb_a", str(raw), str(tmp_path / "tfds"))
    assert time.perf_counter() - start < 10.0


# ----------------------------------------------------------------------------------------------
# Mock data for the sets that exist nowhere offline.


@pytest.mark.parametrize(
    "name, labels",
    [
        ("svhn_cropped", {"label": 10}),
        ("cifar10", {"label": 10}),
        ("celeb_a", {"Smiling": 2, "Mouth_Slightly_Open": 2, "Attractive": 2, "Male": 2}),
    ],
)
def test_mock_data_batches(name, labels, tmp_path, monkeypatch):
    config = default.get_config()
    config.data.name = name
    config.model.arch = "infogan_32"
    config.data.data_dir = str(tmp_path)
    config.data.num_labeled = 20
    config.data.prefetch = 0
    config.batch_size = 16
    if name == "celeb_a":
        config.latents.codes = [default.code(a, "categorical", 2, label=a) for a in labels]
    # Outside mock_data the set is not prepared, and validation says so (unless it may be
    # downloaded).
    assert validate_data_config(config, process_count=1, device_count=1) == []
    config.data.download = "never"
    assert validate_data_config(config, process_count=1, device_count=1) != []
    with tfds.testing.mock_data(num_examples=60):
        # mock_data fakes the reading, not the prepared files that tfds would find.
        monkeypatch.setattr(builders, "is_prepared", lambda name, data_dir: True)
        assert validate_data_config(config, process_count=1, device_count=1) == []
        data = create_train_data(config, None)
        assert data.info.image_shape == (32, 32, 3) and data.info.image_range == (-1.0, 1.0)
        assert data.info.labels == labels and data.info.num_train == 60
        for step, labelled in [(0, True), (10_000, None)]:
            batch = data.batch(step)
            assert batch["image"].shape == (16, 32, 32, 3)
            assert batch["image"].dtype == np.float32
            assert -1.0 <= batch["image"].min() < -0.5 and 0.5 < batch["image"].max() <= 1.0
            assert set(batch["labels"]) == set(labels)
            assert set(batch["label_masks"]) == set(labels)
            for name, values in batch["labels"].items():
                assert values.shape == (16,) and values.dtype == np.int32
                mask = batch["label_masks"][name] == 1
                assert np.all((values[mask] >= 0) & (values[mask] < 10))
                assert np.all(values[~mask] == -1)
                if labelled:
                    assert mask.sum() == 16
        images, test_labels = source_of(config).load_float("test")
        assert images.shape == (60, 32, 32, 3) and set(test_labels) == set(labels)


def test_the_labelled_count_is_that_of_the_split_as_built(tmp_path, monkeypatch):
    """CelebA built from fewer files than the 162,770 the registry lists (mock_data's 60): the
    fraction is of the 60; a count the split cannot hold, or a fraction of it that rounds to
    none where the listed size gave labels, is one line (config_checks.ConfigError: exit 2)."""
    config = default.get_config()
    config.data.name = "celeb_a"
    config.model.arch = "infogan_32"
    config.data.data_dir = str(tmp_path / "tfds")
    config.data.num_labeled, config.data.labeled_fraction = -1, 0.05
    config.data.prefetch = 0
    config.batch_size = 16
    config.latents.codes = [default.code("smiling", "categorical", 2, label="Smiling")]
    config.data.celeba_attributes = ("Smiling",)
    with tfds.testing.mock_data(num_examples=60):
        monkeypatch.setattr(builders, "is_prepared", lambda name, data_dir: True)
        exp = experiment.from_config(config)
        assert exp.num_labeled == round(0.05 * 162_770)  # As checked, of the listed size.
        data = ip.create_train_data(exp, str(tmp_path / "work"))
        assert data.info.num_train == 60 and len(data.labeled_indices) == 3  # round(0.05 * 60)
        assert data.labeled_fraction == 3 / 60
        record = json.loads((tmp_path / "work" / labeled_subset.SUBSET_FILE).read_text())
        assert (record["num_train"], record["num_labeled"]) == (60, 3)
        assert sum(record["count_per_class"]["Smiling"].values()) == 3

        config.data.num_labeled = 61  # Fits the listed 162,770, not the 60 built.
        with pytest.raises(ConfigError) as error:
            create_train_data(config, None)
        assert str(error.value) == (
            "config.data.num_labeled: 61 is more than the 60 training examples of celeb_a as "
            "built; ask for at most 60 (or 0 for no labels)"
        )
        config.data.num_labeled, config.data.labeled_fraction = -1, 0.005  # 814 listed, 0 built
        with pytest.raises(ConfigError) as error:
            create_train_data(config, None)
        assert str(error.value) == (
            "config.data.labeled_fraction: 0.005 of the 60 training examples of celeb_a as "
            "built is 0 labelled examples, where the 162770 it lists gave 814 and the losses "
            "were set up for labels; set config.data.num_labeled to the count you want (0: the "
            "InfoGAN baseline)"
        )
        config.data.num_labeled = 0  # No labels asked for: the InfoGAN baseline, as built.
        assert len(create_train_data(config, None).labeled_indices) == 0


def _arrays(shape, n, seed):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
    return images, {"label": (np.arange(n) % 3).astype(np.int32)}


def _arrays_config(arch: str):
    config = default.get_config()
    default.colour_32(config)
    config.model.arch = arch
    config.latents.codes = [
        default.code("kind", "categorical", 3, label="label"),
        default.code("c_us", "continuous", 2),
    ]
    config.data.name = "shapes"  # What the arrays are called (the judge's key).
    config.data.num_labeled = 6
    config.data.prefetch = 0
    config.batch_size = 8
    return config


def test_arrays_of_the_nets_size_train_and_others_are_refused_with_one_line():
    """64x64x3 arrays with dcgan_64: batches at 64x64 in [-1, 1], a judge key that names the
    size; arrays of another shape than the net's: one line naming both."""
    data = {"train": _arrays((64, 64, 3), 24, 0), "test": _arrays((64, 64, 3), 9, 1)}
    exp = experiment.from_config(_arrays_config("dcgan_64"), data=data, device_count=1)
    assert exp.data.image_shape == (64, 64, 3) and exp.data.image_range == (-1.0, 1.0)
    assert exp.source.judge_key.startswith("shapes_arrays_")
    assert exp.source.judge_key.endswith("_64x64")
    train = ip.create_train_data(exp, None)
    assert train.info.num_train == 24 and len(train.labeled_indices) == 6
    batch = train.batch(0)
    assert batch["image"].shape == (8, 64, 64, 3)
    expected = data["train"][0][train.indices(0)].astype(np.float32) / 127.5 - 1.0
    np.testing.assert_allclose(batch["image"], expected, atol=1e-6)
    # 32x32x3 arrays keep the key they always had (no size in it).
    small = {"train": _arrays((32, 32, 3), 24, 0), "test": _arrays((32, 32, 3), 9, 1)}
    exp32 = experiment.from_config(_arrays_config("dcgan_32"), data=small, device_count=1)
    assert exp32.source.judge_key.count("_") == 2  # shapes_arrays_<digest>

    with pytest.raises(ConfigError) as error:
        experiment.from_config(_arrays_config("dcgan_64"), data=small, device_count=1)
    assert str(error.value).splitlines() == [
        "invalid config:",
        "  data['train']: images are 32x32x3, but the net (config.model.arch) makes 64x64x3; "
        "pass uint8 [N, 64, 64, 3] arrays (resize them), or set config.model.arch to a net of "
        "32x32x3 images",
    ]
    grey = {"train": _arrays((28, 28, 1), 24, 0), "test": _arrays((28, 28, 1), 9, 1)}
    with pytest.raises(ConfigError, match=r"images are 28x28x1, but the net .* makes 32x32x3"):
        experiment.from_config(_arrays_config("dcgan_32"), data=grey, device_count=1)


def test_celeba_crop_is_the_configured_box():
    config = default.get_config()
    config.data.name = "celeb_a"
    source = source_of(config)
    info = source.spec
    fn = source.preprocess_fn()
    image = np.zeros((218, 178, 3), np.uint8)
    top, left, h, w = config.data.celeba_crop
    image[top : top + h, left : left + w] = 200  # only the box is bright
    attributes = {a: True for a in registry.celeba_attributes()}
    out = fn({"image": image, "attributes": attributes})
    np.testing.assert_array_equal(out["image"].numpy(), np.full((32, 32, 3), 200, np.uint8))
    assert {k: int(v) for k, v in out["labels"].items()} == dict.fromkeys(info.labels, 1)


# ----------------------------------------------------------------------------------------------
# The labelled subset.


def test_stratified_subset_is_balanced_seeded_and_stable():
    strata = np.repeat(np.arange(10), 100)[np.random.default_rng(0).permutation(1000)]
    a = labeled_subset.select_labeled(strata, 105, "stratified", 1234)
    b = labeled_subset.select_labeled(strata, 105, "stratified", 1234)
    c = labeled_subset.select_labeled(strata, 105, "stratified", 1235)
    np.testing.assert_array_equal(a, b)
    assert len(a) == 105 and len(np.unique(a)) == 105 and not np.array_equal(a, c)
    assert sorted(np.bincount(strata[a]).tolist()) == [10] * 5 + [11] * 5
    # Stable across versions of this code: the same subset as when it was written.
    assert a[:6].tolist() == [2, 13, 27, 38, 42, 46]
    # A class too small gives all it has; the others make up the total.
    skewed = np.concatenate([np.zeros(3, np.int64), np.ones(500, np.int64)])
    s = labeled_subset.select_labeled(skewed, 40, "stratified", 1)
    assert np.bincount(skewed[s]).tolist() == [3, 37]


def test_random_subset_is_the_reference_split():
    chosen = labeled_subset.select_labeled(np.zeros(1000, np.int64), 10, "random", 1234)
    perm = np.random.default_rng(1234).permutation(1000)
    np.testing.assert_array_equal(chosen, np.sort(perm[990:]))  # the last n of one permutation


def test_subset_written_to_workdir_and_reread_on_resume(digits_dir, tmp_path, monkeypatch):
    config = digits_config(digits_dir, num_labeled=100)
    first = create_train_data(config, str(tmp_path))
    with open(tmp_path / labeled_subset.SUBSET_FILE) as f:
        record = json.load(f)
    assert record["num_labeled"] == 100 and record["selection"] == "stratified"
    assert record["count_per_class"] == {"label": {str(k): 10 for k in range(10)}}
    assert record["indices"] == first.labeled_indices.tolist()

    def must_not_choose(*args, **kwargs):
        raise AssertionError("the subset must be re-read, not chosen again")

    monkeypatch.setattr(labeled_subset, "select_labeled", must_not_choose)
    resumed = create_train_data(config, str(tmp_path))
    np.testing.assert_array_equal(resumed.labeled_indices, first.labeled_indices)
    for step in (0, 250, 1234):
        np.testing.assert_array_equal(resumed.indices(step), first.indices(step))
    config.data.num_labeled = 90
    with pytest.raises(ValueError, match="holds 100 labelled examples of digits"):
        create_train_data(config, str(tmp_path))


# ----------------------------------------------------------------------------------------------
# Labels never leak; the schedule.


def test_recolour_reorders_and_negates_channels_uniformly():
    image = np.random.default_rng(0).uniform(-1, 1, (4, 5, 3)).astype(np.float32)
    keys = jax.random.split(jax.random.PRNGKey(5), 1200)
    out = np.asarray(jax.jit(jax.vmap(lambda k: augment.recolour(k, image, (-1.0, 1.0))))(keys))
    variants = {
        (order, mirrored): (-1.0 + 1.0 - image[..., order]) if mirrored else image[..., order]
        for order in itertools.permutations(range(3))
        for mirrored in (False, True)
    }
    counts = dict.fromkeys(variants, 0)
    for seen in out:
        (match,) = [v for v, expected in variants.items() if np.array_equal(seen, expected)]
        counts[match] += 1
    # 12 variants, 100 expected each: binomial sd 9.6, so 60-140 holds unless one is missing.
    assert all(60 < n < 140 for n in counts.values()), counts
    # A grey image in [0, 1] can only be mirrored: 1 - x.
    grey = image[..., :1] / 2 + 0.5
    seen = {
        bool(np.array_equal(augment.recolour(k, grey, (0.0, 1.0)), 1.0 - grey)) for k in keys[:20]
    }
    assert seen == {False, True}


@pytest.mark.parametrize("mode", ["alternate", "mix"])
def test_no_unlabelled_label_ever_reaches_a_batch(digits_dir, mode):
    config = digits_config(digits_dir, batch_mode=mode, mix_labeled_share=0.25)
    data = create_train_data(config, None)
    _, true_labels = source_of(config).load("train")
    subset = set(data.labeled_indices.tolist())
    seen_labelled, masked = set(), 0
    for step in range(0, 3000, 3):
        batch = data.batch(step)
        mask = batch["label_masks"]["label"]
        assert set(np.unique(mask).tolist()) <= {0.0, 1.0}
        on, off = data.indices(step)[mask == 1], data.indices(step)[mask == 0]
        assert subset.issuperset(on.tolist()) and subset.isdisjoint(off.tolist())
        labels = batch["labels"]["label"]
        np.testing.assert_array_equal(labels[mask == 1], true_labels["label"][on])
        assert np.all(labels[mask == 0] == -1)
        seen_labelled.update(on.tolist())
        masked += int((mask == 0).sum())
        if mode == "mix":
            assert mask.sum() == 8  # round(0.25 * 32), every batch
            assert mask[:16].sum() == mask[16:].sum() == 4  # spread over the batch
    assert seen_labelled == subset and masked > 10_000


def test_schedule_reaches_exactly_the_labelled_fraction():
    schedule = sampler.Schedule(start=1.0, step=0.1, every=100, final=600 / 60000)
    p = schedule(np.arange(0, 2000, 100))
    np.testing.assert_allclose(p[:10], 1.0 - 0.1 * np.arange(10), atol=1e-12)
    assert np.all(p[10:] == 0.01) and schedule(10**9) == 600 / 60000
    assert schedule(99) == 1.0 and schedule(100) == pytest.approx(0.9)


def test_batches_follow_the_schedule(digits_dir):
    config = digits_config(digits_dir, num_labeled=144)  # fraction 144 / 1438
    data = create_train_data(config, None)
    assert data.p_labeled(0) == 1.0 and data.p_labeled(10**7) == 144 / 1438
    labelled = np.array([data.batch(s)["label_masks"]["label"][0] for s in range(20_000)])
    assert labelled[:100].all()  # p = 1 in the first 100 steps
    assert labelled[500:600].mean() == pytest.approx(0.5, abs=0.2)
    tail = labelled[1000:]
    assert abs(tail.mean() - 144 / 1438) < 4 * np.sqrt(0.1 * 0.9 / len(tail))
    for s in (0, 700, 5000):  # a batch is all labelled or all unlabelled
        assert (
            data.batch(s)["label_masks"]["label"].min()
            == data.batch(s)["label_masks"]["label"].max()
        )


def test_no_labels_means_every_batch_unlabelled(digits_dir):
    data = create_train_data(digits_config(digits_dir, num_labeled=0), None)
    assert data.p_labeled(0) == 0.0 and len(data.labeled_indices) == 0
    for step in range(0, 500, 7):
        batch = data.batch(step)
        assert batch["label_masks"]["label"].sum() == 0 and np.all(batch["labels"]["label"] == -1)
    full = create_train_data(digits_config(digits_dir, num_labeled=1438), None)
    assert all(full.batch(s)["label_masks"]["label"].all() for s in range(0, 500, 7))


def test_labeled_fraction_when_num_labeled_is_minus_one(digits_dir):
    config = digits_config(digits_dir, num_labeled=-1, labeled_fraction=0.1)
    data = create_train_data(config, None)
    assert len(data.labeled_indices) == 144  # round(0.1 * 1438)


# ----------------------------------------------------------------------------------------------
# Hosts, determinism.


def test_two_hosts_get_disjoint_shards_and_agree_on_every_decision(digits_dir):
    config = digits_config(digits_dir, num_labeled=100)
    hosts = [create_train_data(config, None, process_index=i, process_count=2) for i in (0, 1)]
    np.testing.assert_array_equal(hosts[0].labeled_indices, hosts[1].labeled_indices)
    seen = [set(), set()]
    for step in range(0, 2000, 5):
        b0, b1 = (h.batch(step) for h in hosts)
        assert b0["image"].shape == (16, 28, 28, 1)
        np.testing.assert_array_equal(b0["label_masks"]["label"], b1["label_masks"]["label"])
        seen[0].update(hosts[0].indices(step).tolist())
        seen[1].update(hosts[1].indices(step).tolist())
    assert seen[0].isdisjoint(seen[1])
    assert max(seen[0]) < 719 <= min(seen[1])  # host blocks [0, 719) and [719, 1438)
    # One host alone sees the same labelled subset as the two together.
    single = create_train_data(config, None)
    np.testing.assert_array_equal(single.labeled_indices, hosts[0].labeled_indices)


def test_two_hosts_split_the_train_split_as_built(tiny_idx_dir, tmp_path):
    """MNIST built from 5 training images (the registry lists 60,000): the hosts' blocks are
    of the 5, and both hold the same labelled subset of them."""
    config = default.get_config()
    config.data.data_dir = str(tmp_path / "tfds")
    config.data.raw_dir = tiny_idx_dir
    config.data.num_labeled = 2
    config.data.labeled_selection = "random"  # Not 10 classes' worth.
    config.data.labeled_seed = 1230  # Examples 1 and 4: one in each host's block.
    config.data.prefetch = 0
    config.batch_size = 4
    hosts = [create_train_data(config, None, process_index=i, process_count=2) for i in (0, 1)]
    assert [h.info.num_train for h in hosts] == [5, 5]
    assert [len(h.images) for h in hosts] == [2, 3]  # Blocks [0, 2) and [2, 5).
    for host in hosts:
        np.testing.assert_array_equal(host.labeled_indices, [1, 4])
    single = create_train_data(config, None)
    np.testing.assert_array_equal(single.images[:2], hosts[0].images)
    np.testing.assert_array_equal(single.images[2:], hosts[1].images)


def test_batch_is_a_pure_function_of_step(digits_dir):
    config = digits_config(digits_dir, prefetch=3)
    a = create_train_data(config, None)
    b = create_train_data(config, None)
    late = a.batch(20_000)  # random access first, then earlier steps
    for step in (0, 99, 100, 4095, 4096, 12_345):
        x, y = a.batch(step), b.batch(step)
        np.testing.assert_array_equal(a.indices(step), b.indices(step))
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["label_masks"]["label"], y["label_masks"]["label"])
    np.testing.assert_array_equal(late["image"], b.batch(20_000)["image"])
    # A resumed iterator yields what the uninterrupted one yields from that step on.
    it = b.iterate(0)
    whole = [next(it)["image"] for _ in range(60)]
    resumed = a.iterate(37)
    for step in range(37, 60):
        np.testing.assert_array_equal(next(resumed)["image"], whole[step])
    # Different seeds give different orders.
    config.seed = 2
    assert not np.array_equal(create_train_data(config, None).indices(500), b.indices(500))


def test_shift_images_translates_and_fills():
    images = np.arange(2 * 5 * 6, dtype=np.float32).reshape(2, 5, 6, 1)
    out = augment.shift_images(images, np.array([[1, -2], [0, 0]]), fill=-1.0)
    # Example 0 moved down 1 and left 2: out[y, x] = in[y - 1, x + 2], vacated pixels = fill.
    np.testing.assert_array_equal(out[0, 1:, :4], images[0, :4, 2:])
    assert np.all(out[0, 0] == -1) and np.all(out[0, :, 4:] == -1)
    np.testing.assert_array_equal(out[1], images[1])
    shifts = augment.random_shifts(seed=3, step=7, count=4000, max_shift=2)
    assert shifts.min() == -2 and shifts.max() == 2
    np.testing.assert_array_equal(shifts, augment.random_shifts(3, 7, 4000, 2))
    assert not np.array_equal(shifts, augment.random_shifts(3, 8, 4000, 2))


def test_in_graph_translate_matches_the_host_shift():
    images = np.random.default_rng(0).random((64, 7, 9, 2)).astype(np.float32)
    keys = jax.random.split(jax.random.PRNGKey(4), 64)
    moved = jax.jit(jax.vmap(lambda k, x: augment.translate(k, x, 2, -1.0)))(keys, images)
    shifts = np.stack([np.asarray(jax.random.randint(k, (2,), -2, 3)) for k in keys])
    np.testing.assert_array_equal(moved, augment.shift_images(images, shifts, fill=-1.0))
    assert {-2, 2} <= set(shifts.ravel().tolist())  # The whole range is drawn.
    np.testing.assert_array_equal(augment.translate(keys[0], images[0], 0, -1.0), images[0])


@pytest.mark.parametrize("mode", ["alternate", "mix"])
def test_labeled_max_shift_moves_only_labelled_examples(digits_dir, mode):
    plain = create_train_data(digits_config(digits_dir, batch_mode=mode), None)
    config = digits_config(digits_dir, batch_mode=mode, labeled_max_shift=2)
    shifted = create_train_data(config, None)
    moved = 0
    for step in range(0, 200, 7):
        x, y = plain.batch(step), shifted.batch(step)
        np.testing.assert_array_equal(plain.indices(step), shifted.indices(step))
        on = x["label_masks"]["label"] == 1
        np.testing.assert_array_equal(x["image"][~on], y["image"][~on])
        # Same pixels, moved: the ink is preserved except what left the 28x28 frame.
        assert np.all(y["image"][on].sum((1, 2, 3)) <= x["image"][on].sum((1, 2, 3)) + 1e-3)
        moved += int(np.any(x["image"][on] != y["image"][on], axis=(1, 2, 3)).sum())
        np.testing.assert_array_equal(y["image"], shifted.batch(step)["image"])  # pure in step
    assert moved > 100
    config.data.labeled_max_shift = 14
    assert any("labeled_max_shift" in p for p in validate_data_config(config))


def test_each_epoch_of_a_pool_visits_every_example_once():
    pool = sampler.Pool(10, seed=3, tag=1)
    stream = pool.take(0, 40)
    for e in range(4):
        assert sorted(stream[10 * e : 10 * e + 10].tolist()) == list(range(10))
    np.testing.assert_array_equal(pool.take(7, 9), stream[7:16])  # across an epoch boundary


# ----------------------------------------------------------------------------------------------
# Validation.


def test_validation_names_each_bad_field(digits_dir, tiny_idx_dir):
    config = digits_config(digits_dir)
    assert validate_data_config(config, process_count=1, device_count=1) == []
    config.data.num_labeled = 70000
    config.data.name = "mnist"
    config.data.raw_dir = tiny_idx_dir  # preparable, so no data problem
    assert validate_data_config(config, process_count=1, device_count=1) == [
        "config.data.num_labeled: 70000 is larger than the 60000 training examples of mnist"
    ]
    config.data.num_labeled = -5
    config.data.labeled_fraction = 1.5
    config.data.labeled_selection = "balanced"
    config.data.batch_mode = "sometimes"
    config.data.p_labeled_start = 1.2
    config.data.p_labeled_every = 0
    config.data.p_labeled_final = 2.0
    config.batch_size = 100
    config.latents.codes[0].size = 12
    config.latents.codes[1].label = "tilt"
    problems = validate_data_config(config, process_count=3, device_count=1)
    fields = [p.split(":")[0] for p in problems]
    assert fields == [
        "config.data.labeled_fraction",
        "config.data.num_labeled",
        "config.data.labeled_selection",
        "config.latents.codes[digit].size",
        "config.latents.codes[c_us].label",
        "config.data.batch_mode",
        "config.data.p_labeled_start",
        "config.data.p_labeled_final",
        "config.data.p_labeled_every",
        "config.batch_size",
    ], problems
    assert "12 differs from the 10 classes of label 'label'" in problems[3]
    assert "mnist has no label 'tilt'" in problems[4]
    assert problems[9] == "config.batch_size: 100 is not a positive multiple of the 3 processes"
    config = digits_config(digits_dir)
    config.batch_size = 36
    assert validate_data_config(config, process_count=2, device_count=8) == [
        "config.batch_size: 36 is not a positive multiple of the 8 devices"
    ]

    config = digits_config(digits_dir)
    config.data.name = "no_such_set"
    (problem,) = validate_data_config(config, process_count=1, device_count=1)
    assert problem.startswith("config.data.name: unknown data set 'no_such_set'")
    config = digits_config(digits_dir)
    config.data.name = "celeb_a"
    config.data.celeba_attributes = ("Smiling", "Grumpy")
    config.latents.codes = [default.code("smile", "categorical", 2, label="Smiling")]
    problems = validate_data_config(config, process_count=1, device_count=1)
    assert any(p.startswith("config.data.celeba_attributes: 'Grumpy'") for p in problems)
    # An attribute named only by a code is a label too; a name that is no attribute is not.
    config.data.celeba_attributes = ("Smiling",)
    config.latents.codes = [
        default.code("smile", "categorical", 2, label="Smiling"),
        default.code("glasses", "categorical", 2, label="Eyeglasses"),
        default.code("grin", "categorical", 2, label="Grin"),
    ]
    assert source_of(config).spec.labels == {"Smiling": 2, "Eyeglasses": 2}
    assert validate_data_config(config, process_count=1)[-1].startswith(
        "config.latents.codes[grin].label: celeb_a has no label 'Grin'"
    )
    with pytest.raises(ValueError, match=r"config\.data\.num_labeled: 70000"):
        bad = digits_config(digits_dir, num_labeled=70000)
        create_train_data(bad, None)
