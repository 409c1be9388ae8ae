"""Your own images: a folder and a CSV, from checks to batches to a run through main."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from configs import folder as folder_config
from ssinfogan_jax import experiment, input_pipeline, loop
from ssinfogan_jax.data import folder, labeled_subset, make_example_folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARES = {"shape": 0.5, "filled": 0.4, "size": 0.4}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """48 generated 40x48 RGB images; about half carry each label."""
    out = str(tmp_path_factory.mktemp("shapes"))
    csv_path = make_example_folder.make_folder(out, num_images=48, seed=1, shares=SHARES)
    return out, csv_path


def config_for(images_dir, csv_path, data_dir, arg=None):
    config = folder_config.get_config(arg)
    config.data.images_dir = images_dir
    config.data.labels_csv = csv_path
    config.data.data_dir = str(data_dir)
    config.batch_size = 8
    return config


def copy_folder(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return str(dst), os.path.join(str(dst), "labels.csv")


def rewrite_csv(path, edit):
    with open(path) as f:
        rows = list(csv.reader(f))
    rows = edit(rows)
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)


def problems(config):
    return experiment.find_problems(config)


# --- Reading the CSV ---------------------------------------------------------------------------


def test_kinds_classes_and_blank_cells_are_read_from_the_csv(shapes, tmp_path):
    out, csv_path = shapes
    source = folder.read_source(config_for(out, csv_path, tmp_path).data)
    kinds = {n: (label.kind, label.classes) for n, label in source.labels.items()}
    assert kinds == {
        "shape": ("categorical", ("circle", "square", "triangle")),
        "filled": ("binary", ("false", "true")),
        "size": ("continuous", ()),
    }
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    for name in ("shape", "filled"):
        values = source.values[name]
        assert values.dtype == np.int32
        for row, value in zip(rows, values, strict=True):
            if row[name]:
                assert source.labels[name].classes[value] == row[name]
            else:
                assert value == -1
    size = source.values["size"]
    filled = np.array([bool(r["size"]) for r in rows])
    assert np.isnan(size[~filled]).all() and np.isfinite(size[filled]).all()
    assert size[filled].min() == -1.0 and size[filled].max() == 1.0  # [low, high] -> [-1, 1].
    # No split column: a seeded share of the rows carrying any label is the test split.
    assert source.split_from == "seeded share"
    carries = np.array([any(r[k] for k in SHARES) for r in rows])
    assert source.is_test.sum() == round(0.2 * carries.sum())
    assert carries[source.is_test].all()


def test_kinds_and_class_order_can_be_overridden(shapes, tmp_path):
    out, csv_path = shapes
    config = config_for(out, csv_path, tmp_path)
    config.data.label_kinds = "size=continuous"
    config.data.label_classes = "shape=triangle|circle|square"
    source = folder.read_source(config.data)
    assert source.labels["shape"].classes == ("triangle", "circle", "square")
    assert folder.infer_kind(["1", "2", "7"]) == "categorical"
    assert folder.infer_kind(["0.5", "2"]) == "continuous"
    assert folder.infer_kind(["Yes", "no"]) == "binary"
    assert folder.infer_kind(["cat", "2"]) == "categorical"


def test_codes_come_from_the_csv_and_the_class_map_is_kept(shapes, tmp_path):
    out, csv_path = shapes
    exp = experiment.from_config(config_for(out, csv_path, tmp_path))
    codes = {c.name: (c.kind, c.size, c.label) for c in exp.layout.codes}
    assert codes == {
        "shape": ("categorical", 3, "shape"),
        "filled": ("categorical", 2, "filled"),
        "size": ("continuous", 1, "size"),
        "c_us": ("continuous", 2, ""),
    }
    assert exp.data.labels == {"shape": 3, "filled": 2, "size": 0}
    assert exp.data.image_shape == (32, 32, 3)
    assert exp.source.judge_key.endswith("_32x32")  # A judge per folder.
    gray = experiment.from_config(config_for(out, csv_path, tmp_path, "gray"))
    assert gray.data.image_shape == (28, 28, 1) and gray.data.image_range == (0.0, 1.0)


# --- Bad input: one clear line each -------------------------------------------------------------


def test_files_missing_from_the_folder_and_the_reverse_are_counted(shapes, tmp_path):
    out, _ = copy_folder(shapes[0], tmp_path / "f")
    csv_path = os.path.join(out, "labels.csv")
    os.remove(os.path.join(out, "images", "00003.png"))
    os.remove(os.path.join(out, "images", "00007.png"))
    Image.new("RGB", (4, 4)).save(os.path.join(out, "images", "extra.png"))
    found = problems(config_for(out, csv_path, tmp_path))
    assert len(found) == 2, found
    assert "2 of its 48 files are not PNG/JPEG files" in found[0]
    assert "images/00003.png, images/00007.png" in found[0]
    assert "1 images in" in found[1] and "images/extra.png" in found[1]
    # Unlisted images may instead be unlabelled training examples.
    config = config_for(out, csv_path, tmp_path)
    config.data.unlisted_images = "unlabeled"
    assert len(problems(config)) == 1


def test_a_label_with_one_class_a_missing_named_class_and_an_unknown_column(shapes, tmp_path):
    out, csv_path = copy_folder(shapes[0], tmp_path / "f")

    def one_class(rows):
        return [rows[0]] + [[*r[:1], "circle" if r[1] else "", *r[2:]] for r in rows[1:]]

    rewrite_csv(csv_path, one_class)
    [line] = problems(config_for(out, csv_path, tmp_path))
    assert "label 'shape' has 1 labelled classes among the training rows" in line

    config = config_for(out, csv_path, tmp_path)
    config.data.label_classes = "shape=circle|hexagon"
    [line] = problems(config)
    assert "label 'shape' has no cell with class hexagon" in line

    # Codes written by hand: every label column must be some code's label.
    config = config_for(*shapes, tmp_path)
    config.latents.codes_from_data = False
    config.latents.codes = [folder_config.default_config.code("filled", "categorical", 2, "filled")]
    found = problems(config)
    assert any("column 'shape' is neither 'file', 'split' nor the label" in p for p in found)
    assert any("column 'size'" in p for p in found)


def test_unreadable_images_and_mixed_modes_stop_the_build_and_leave_nothing(shapes, tmp_path):
    out, csv_path = copy_folder(shapes[0], tmp_path / "f")
    data_dir = tmp_path / "tfds"
    with open(os.path.join(out, "images", "00004.png"), "wb") as f:
        f.write(b"not a png")
    Image.new("L", (48, 40)).save(os.path.join(out, "images", "00005.png"))
    config = config_for(out, csv_path, data_dir)
    assert problems(config) == []  # The listing is fine; the contents are checked at build.
    with pytest.raises(folder.FolderError) as e:
        experiment.from_config(config).source.prepare()
    lines = e.value.problems
    assert len(lines) == 2
    assert "1 images cannot be read: images/00004.png" in lines[0]
    assert "mixed colour modes: 1 L (e.g. images/00005.png), 46 RGB" in lines[1]
    assert not os.path.exists(data_dir / folder.BUILDER_NAME)


# --- Conversion and the cache -------------------------------------------------------------------


def test_conversion_crops_resizes_and_keeps_an_image_of_the_right_shape():
    wide = Image.fromarray(
        np.arange(40 * 60 * 3, dtype=np.uint32).astype(np.uint8).reshape(40, 60, 3)
    )
    assert folder.convert(wide, (32, 32, 3)).shape == (32, 32, 3)
    assert folder.convert(wide, (28, 28, 1)).shape == (28, 28, 1)
    exact = np.random.default_rng(0).integers(0, 256, (28, 28), np.uint8)
    np.testing.assert_array_equal(
        folder.convert(Image.fromarray(exact), (28, 28, 1))[..., 0], exact
    )


def test_the_tfds_set_is_built_once_and_rebuilt_when_the_csv_changes(shapes, tmp_path):
    out, csv_path = copy_folder(shapes[0], tmp_path / "f")
    config = config_for(out, csv_path, tmp_path / "tfds")
    exp = experiment.from_config(config)
    exp.source.prepare()
    source = folder.read_source(exp.config.data)
    built = folder.builder(source, (32, 32, 3), str(tmp_path / "tfds"))
    assert built.is_prepared()
    stamp = os.path.getmtime(built.data_dir)
    exp.source.prepare()  # Reused.
    assert os.path.getmtime(built.data_dir) == stamp
    images, _ = exp.source.load_float("train")
    assert images.shape == (exp.data.num_train, 32, 32, 3) and images.dtype == np.float32
    assert -1.0 <= images.min() and images.max() <= 1.0
    rewrite_csv(csv_path, lambda rows: rows[:1] + rows[1:][::-1])  # Same rows, new order.
    changed = folder.read_source(config.data)
    assert changed.digest != source.digest
    assert not folder.builder(changed, (32, 32, 3), str(tmp_path / "tfds")).is_prepared()


# --- Batches: a mask per label ------------------------------------------------------------------


def test_batches_carry_a_mask_per_label_and_never_a_label_outside_it(shapes, tmp_path):
    out, csv_path = shapes
    config = config_for(out, csv_path, tmp_path / "tfds")
    config.data.batch_mode = "mix"
    config.data.mix_labeled_share = 0.5
    config.data.labeled_max_shift = 0
    exp = experiment.from_config(config)
    data = input_pipeline.create_train_data(exp, str(tmp_path / "work"))
    source = folder.read_source(exp.config.data)
    train_rows = source.rows("train")
    any_mask_seen = {name: 0 for name in source.labels}
    for step in range(30):
        batch = data.batch(step)
        assert set(batch["label_masks"]) == set(source.labels)
        rows = train_rows[data.indices(step)]
        slots = np.zeros(8, bool)
        for name, mask in batch["label_masks"].items():
            on = mask == 1
            any_mask_seen[name] += int(on.sum())
            truth = source.values[name][rows]
            labels = batch["labels"][name]
            if source.labels[name].num_classes:
                np.testing.assert_array_equal(labels[on], truth[on])
                assert (labels[~on] == -1).all()
                assert (truth[on] >= 0).all()  # Only filled cells are labels.
            else:
                np.testing.assert_array_equal(labels[on], truth[on])
                assert np.isnan(labels[~on]).all()
            slots |= on
        assert slots.sum() == 4  # Labelled slots carry at least one label.
    assert all(any_mask_seen.values())
    # The labelled pool: exactly the training rows with any filled cell.
    carries = np.zeros(len(train_rows), bool)
    for name in source.labels:
        v = source.values[name][train_rows]
        carries |= v >= 0 if v.dtype.kind == "i" else ~np.isnan(v)
    np.testing.assert_array_equal(data.labeled_indices, np.flatnonzero(carries))
    record = json.load(open(tmp_path / "work" / "labeled_subset.json"))
    assert record["split_from"] == "seeded share" and record["num_test"] == exp.data.num_test
    label_map = json.load(open(tmp_path / "work" / folder.LABEL_MAP_FILE))
    assert label_map["shape"]["classes"] == ["circle", "square", "triangle"]


def test_num_labeled_subsamples_each_label(shapes, tmp_path):
    out, csv_path = shapes
    config = config_for(out, csv_path, tmp_path)
    config.data.num_labeled = 3
    exp = experiment.from_config(config)
    per_label = labeled_subset.choose_per_label(exp.subset, exp.source.load_labels("train"))
    source = folder.read_source(config.data)
    train = source.rows("train")
    for name, kept in per_label.items():
        assert len(kept) == 3
        values = source.values[name][train[kept]]
        assert (values >= 0).all() if values.dtype.kind == "i" else np.isfinite(values).all()
    assert exp.num_labeled == len(np.unique(np.concatenate(list(per_label.values()))))


# --- Through main ------------------------------------------------------------------------------


def _folder_run(workdir, images_dir, labels_csv, tmp_path) -> list[str]:
    """main's arguments for configs/folder.py:runlocal on a folder, prepared in <tmp_path>/tfds."""
    return [
        "--config=configs/folder.py:runlocal",
        f"--workdir={workdir}",
        f"--config.data.images_dir={images_dir}",
        f"--config.data.labels_csv={labels_csv}",
        f"--config.data.data_dir={tmp_path / 'tfds'}",
    ]


def _main(args, env_extra=None):
    env = dict(os.environ, JAX_PLATFORMS="cpu", **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-m", "ssinfogan_jax.main", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_bad_input_exits_2_with_one_line_and_writes_nothing(shapes, tmp_path):
    out, csv_path = copy_folder(shapes[0], tmp_path / "f")
    os.remove(os.path.join(out, "images", "00001.png"))
    workdir = tmp_path / "work"
    result = _main(_folder_run(workdir, out, csv_path, tmp_path))
    assert result.returncode == 2, result.stderr[-2000:]
    fatal = [line for line in result.stderr.splitlines() if "are not PNG/JPEG files" in line]
    assert len(fatal) == 1 and "1 of its 48 files" in fatal[0]
    assert not workdir.exists()


def test_a_short_run_through_main(shapes, tmp_path):
    out, csv_path = shapes
    workdir = tmp_path / "work"
    result = _main(
        [
            *_folder_run(workdir, out, csv_path, tmp_path),
            "--config.batch_size=8",
            "--config.num_train_steps=2",
            "--config.eval.judge_steps=5",
            "--config.eval.samples_per_value=2",
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # The end summary names the headline (the mean over the judged codes) and the metrics.
    assert "(cond_acc_direct_mean)" in result.stdout and "eval_history.jsonl" in result.stdout
    for name in ("labeled_subset.json", folder.LABEL_MAP_FILE, "config.json", "eval_history.jsonl"):
        assert (workdir / name).exists(), name
    label_map = json.loads((workdir / folder.LABEL_MAP_FILE).read_text())
    assert list(label_map) == ["shape", "filled", "size"]


def _commands(markdown: str, first: str) -> list[str]:
    """The shell commands of the code block of `markdown` (a path under ROOT) that holds
    `first`: continuation lines joined, trailing comments dropped."""
    with open(os.path.join(ROOT, markdown)) as f:
        text = f.read()
    block, lines = [], text.splitlines()
    start = next(i for i, line in enumerate(lines) if first in line)
    for line in lines[start:]:
        if not line.startswith("    "):
            break
        block.append(line.strip())
    return [
        " ".join(cmd.split("  #")[0].split())
        for cmd in " ".join(block).replace("\\ ", " ").split("python -m ")
        if cmd.strip()
    ]


def test_the_own_images_commands_of_the_readme_and_docs_run_verbatim(tmp_path):
    """The README's own-images commands, then docs/own_data.md's sample command, as printed
    (with /tmp/ moved under tmp_path and a few steps appended): the example's labels are
    filled in independently per column, so no test row carries them all."""
    readme = _commands("README.md", "make_example_folder")
    docs = _commands("docs/own_data.md", "make_example_folder")
    assert len(readme) == 2 and docs[:2] == readme and "--mode=sample" in docs[2], (readme, docs)
    fast = [
        f"--config.data.data_dir={tmp_path / 'tfds'}",
        "--config.compilation_cache_dir=",
        "--config.batch_size=8",
        "--config.num_train_steps=2",
        "--config.checkpoint_every_steps=2",
        "--config.eval.judge_steps=5",
        "--config.eval.samples_per_value=2",
        "--config.sample.per_value=2",
    ]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    for i, command in enumerate([*readme, docs[2]]):
        argv = command.replace("/tmp/", f"{tmp_path}/").split()
        argv = [sys.executable, "-m", *argv, *(fast if i else [])]
        result = subprocess.run(
            argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, (argv, result.stderr[-3000:])
    workdir = tmp_path / "shapes_run"
    shapes = str(tmp_path / "shapes")
    config = config_for(shapes, f"{shapes}/labels.csv", tmp_path / "tfds")
    test = experiment.data_source(config).load_labels("test")
    full = np.logical_and.reduce(
        [v >= 0 if v.dtype.kind == "i" else ~np.isnan(v) for v in test.values()]
    )
    assert len(full) == 143 and not full.any()  # The trigger: no test row carries every label.
    history = [
        json.loads(line) for line in (workdir / "eval_history.jsonl").read_text().splitlines()
    ]
    assert [row["step"] for row in history] == [2]
    assert {"q_ss_test_acc/shape", "q_ss_test_acc/filled", "cond_corr/size"} <= set(history[0])
    judges = os.listdir(tmp_path / "tfds" / "ssinfogan_classifiers")
    assert len(judges) == 1 and "filled+shape+size" in judges[0], judges
    assert (workdir / "samples" / "shape.png").exists() and (
        workdir / "samples" / "shape.json"
    ).exists()


def test_a_stray_word_in_a_column_of_numbers_is_refused_unless_the_kind_is_given(shapes, tmp_path):
    out, csv_path = copy_folder(shapes[0], tmp_path / "f")
    with open(csv_path) as f:
        rows = list(csv.reader(f))
    column = rows[0].index("size")
    index = next(i for i, row in enumerate(rows) if i and row[column])
    numbers = sum(1 for row in rows[1:] if row[column]) - 1
    rows[index][column] = "big"
    rewrite_csv(csv_path, lambda _: rows)
    line = index + 1  # 1-based, the header is line 1.
    workdir = tmp_path / "work"
    result = _main(_folder_run(workdir, out, csv_path, tmp_path))
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    fatal = [line for line in result.stderr.splitlines() if "FATAL" in line or "config." in line]
    assert fatal == [
        "FATAL invalid config:",
        f"  config.data.labels_csv ({csv_path}): line {line}, column 'size': 'big' is not a "
        f"number, but the column's other {numbers} filled cells are; correct or blank the cell, "
        "or set config.data.label_kinds='size=categorical' if the column is meant to be classes",
    ], result.stderr[-2000:]
    assert not workdir.exists() and not (tmp_path / "tfds").exists()
    # Given explicitly, the kind stands: 'big' is one more class.
    config = config_for(out, csv_path, tmp_path / "tfds")
    config.data.label_kinds = "size=categorical"
    source = folder.read_source(config.data)
    assert source.labels["size"].kind == "categorical" and "big" in source.labels["size"].classes
    # Many words among numbers are a categorical column, as before.
    assert folder.stray_cell("c", ["1", "2", "x", "y"]) is None
    assert folder.stray_cell("c", ["1", "", "2", "x"]).startswith("line 5, column 'c': 'x'")


# --- Beyond 32x32 ------------------------------------------------------------------------------


def test_a_folder_of_64x64_images_trains_dcgan_64_and_each_size_has_its_build(
    tmp_path, fast_compile
):
    """configs/folder.py:64 on 64x64 PNGs: the images kept exactly at the net's size, a 32x32
    build beside it (each pixel the mean of a 2x2 block), a judge key per size; then a short
    run through loop.train_and_evaluate: G's grid and the judge at 64x64."""
    out = str(tmp_path / "shapes64")
    csv_path = make_example_folder.make_folder(out, 24, seed=1, shares=SHARES, size=(64, 64))
    data_dir = tmp_path / "tfds"
    config = config_for(out, csv_path, data_dir, "64,runlocal")
    big = experiment.from_config(config)
    small = experiment.from_config(config_for(out, csv_path, data_dir, "runlocal"))
    assert big.arch.image_shape == big.data.image_shape == (64, 64, 3)
    assert small.data.image_shape == (32, 32, 3) and big.data.image_range == (-1.0, 1.0)
    digest = folder.read_source(config.data).digest[:16]
    assert big.source.judge_key == f"folder_{digest}_64x64"
    assert small.source.judge_key == f"folder_{digest}_32x32"
    for exp in (big, small):
        exp.source.prepare()
    builds = sorted(p.name for p in (data_dir / folder.BUILDER_NAME).iterdir())
    assert [name.rsplit("_", 1)[1] for name in builds] == ["32x32x3", "64x64x3"], builds
    source = folder.read_source(config.data)
    (images64, _), (images32, _) = big.source.load("train"), small.source.load("train")
    assert images64.shape == (20, 64, 64, 3) and images32.shape == (20, 32, 32, 3)
    for image64, image32, row in zip(images64, images32, source.rows("train"), strict=True):
        png = np.asarray(Image.open(os.path.join(out, source.files[row])))
        np.testing.assert_array_equal(image64, png)
        blocks = png.reshape(32, 2, 32, 2, 3).mean(axis=(1, 3))
        assert np.abs(image32 - blocks).max() <= 1.0  # PIL's fixed-point box filter.

    config.num_train_steps = 2
    config.eval.judge_steps = 5
    config.eval.samples_per_value = 2
    config.eval.judge_dir = str(tmp_path / "judges")
    workdir = tmp_path / "work"
    metrics = loop.train_and_evaluate(config, str(workdir))
    assert {"cond_acc_direct/shape", "cond_acc_direct/filled", "cond_corr/size"} <= set(metrics)
    # A row per class of `shape`, 64-pixel cells with 2-pixel gaps.
    assert Image.open(workdir / "images" / "step_2" / "samples_shape.png").size[1] == 3 * 66 + 2
    (judge,) = (tmp_path / "judges").iterdir()
    assert judge.name.startswith(f"folder_{digest}_64x64_")
    spec = json.loads((judge / "classifier.json").read_text())["spec"]
    assert spec["image_shape"] == [64, 64, 3]
    record = json.loads((workdir / "labeled_subset.json").read_text())
    assert record["num_train"] == 20 and record["source"] == source.digest
