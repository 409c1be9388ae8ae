"""What a run prints and logs for a person (issue 33 parts 3-5): the quick start's few lines,
TensorBoard's train/ and eval/ sections, the PNGs, metric names that say what they measure."""

from __future__ import annotations

import glob
import json
import re

import numpy as np
import pytest
from conftest import experiment_of, main_command, rich_config

from ssinfogan_jax import default_config as default
from ssinfogan_jax import reporting


def _run(shared, workdir, tmp_path, *flags):
    """The digits smoke run through main with a judge of its own folder (announced, trained)."""
    import subprocess

    from conftest import DIGITS_CLASSIFIER_STEPS, ROOT

    command = [
        arg
        for arg in main_command(shared, workdir, *flags)
        if not arg.startswith(("--config.eval.classifier_", "--config.eval.judge_"))
    ]
    command += [
        f"--config.eval.judge_dir={tmp_path / 'judges'}",
        f"--config.eval.judge_steps={DIGITS_CLASSIFIER_STEPS}",
    ]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1500)


def test_a_first_run_prints_a_few_useful_lines(digits_shared, tmp_path):
    workdir = tmp_path / "run"
    result = _run(digits_shared, workdir, tmp_path, "--config.eval_every_steps=2")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = (result.stderr + result.stdout).splitlines()
    assert len(lines) <= 25, "\n".join(lines)
    text = "\n".join(lines)
    assert not re.search(r"^[IWE]\d{4} ", text, re.M), text  # No absl- or C++-format line.
    for noise in ("Hyperparameters", "oneDNN", "dataset_info", "steps_per_sec", "d_loss"):
        assert noise not in text, noise
    # The judge trains first, and the first line says so with an estimate.
    assert lines[0].startswith("First the judge") and re.search(r"about \d+m\d\ds", lines[0])
    assert "Training the judge" not in text  # Said once, by the first line.
    progress = [line for line in lines if line.startswith("step ")]
    assert len(progress) == 3, progress  # log_every 2 of 6 steps.
    assert all(re.search(r"[\d.]+ steps/s, ETA \d+m\d\ds$", line) for line in progress)
    summary = result.stdout.splitlines()
    assert summary[0].startswith("Finished at step 6 in ")
    (accuracy,) = re.findall(
        r"^direct conditional accuracy: ([\d.]+)% of samples show the digit their code asks "
        r"for \(cond_acc_direct/digit\)$",
        result.stdout,
        re.M,
    )
    history = [json.loads(row) for row in (workdir / "eval_history.jsonl").read_text().splitlines()]
    assert history[-1]["step"] == 6
    assert float(accuracy) == pytest.approx(100 * history[-1]["cond_acc_direct/digit"], abs=0.05)
    places = dict(line.split(": ", 1) for line in summary[2:])
    pngs = sorted(p.split("/")[-1] for p in glob.glob(f"{places['samples'].strip()}/*.png"))
    assert pngs == ["samples_digit.png", "traversal_c_us.png", "traversal_digit.png"]
    assert (workdir / "checkpoints_best" / "6").is_dir()
    assert places["best checkpoint"].strip() == str(workdir / "checkpoints_best" / "6")
    assert places["TensorBoard"].strip() == f"tensorboard --logdir={workdir}"
    # Grids at every evaluation (2, 4, 6), each a PNG in the work dir.
    assert sorted(p.name for p in (workdir / "images").iterdir()) == [
        "step_2",
        "step_4",
        "step_6",
    ]
    tags = _tensorboard_tags(workdir)
    train = {t.split("/", 1)[1] for t in tags if t.startswith("train/")}
    evaluated = {t.split("/", 1)[1] for t in tags if t.startswith("eval/")}
    assert {"d_loss", "q_ss_real_acc/digit"} <= train
    assert {"cond_acc_direct/digit", "mi_lower_bound"} <= evaluated
    assert "mi_lower_bound" in train  # Once a shared tag: now two sections.
    assert "q_ss_real_acc/digit:count" not in train  # A weight, not a metric.

    verbose = _run(digits_shared, tmp_path / "verbose", tmp_path, "--verbose")
    assert verbose.returncode == 0, verbose.stderr[-3000:]
    assert "[Hyperparameters]" in verbose.stderr and "Load dataset info" in verbose.stderr


def _tensorboard_tags(workdir) -> set[str]:
    import tensorflow as tf

    tags = set()
    for path in glob.glob(f"{workdir}/events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags |= {value.tag for value in event.summary.value}
    return tags


def test_q_ss_training_accuracy_counts_labelled_examples_only():
    # Two steps of 8 labelled examples, 7 right then 4 right, and two unlabelled steps (whose
    # accuracy reads 0): 11 of 16, not the mean over steps (0.34375, the labelled fraction's
    # shadow).
    history = [
        {"q_ss_real_acc/digit": np.float32(7 / 8), "q_ss_real_acc/digit:count": np.float32(8)},
        {"q_ss_real_acc/digit": np.float32(0.0), "q_ss_real_acc/digit:count": np.float32(0)},
        {
            "q_ss_real_acc/digit": np.array([0.5, 0.0], np.float32),
            "q_ss_real_acc/digit:count": np.array([8, 0], np.float32),
        },
    ]
    for m in history:
        m["d_loss"] = np.float32(1.0)
    summary = reporting.summarize(history)
    assert summary == {"q_ss_real_acc/digit": pytest.approx(11 / 16), "d_loss": 1.0}
    # A window without a labelled example has no Q_ss accuracy (not 0).
    assert reporting.summarize(history[1:2]) == {"d_loss": 1.0}


def test_the_train_step_reports_q_ss_accuracy_with_its_labelled_count(fast_compile):
    import jax
    from conftest import make_batch, small_config

    from ssinfogan_jax import train

    config = small_config()
    exp = experiment_of(config)
    state = train.create_train_state(jax.random.PRNGKey(0), exp)
    step = train.make_train_step(exp)
    mask = np.array([1, 1, 1, 0, 0, 0, 0, 0], np.float32)
    _, metrics = step(state, make_batch(config, mask))
    assert float(metrics["q_ss_real_acc/digit:count"]) == 3.0


def test_several_codes_show_no_bare_cond_acc_direct_and_best_metric_follows():
    from ssinfogan_jax import config_checks
    from ssinfogan_jax.evaluation import evaluator as evaluator_lib

    config = rich_config()
    config.latents.codes.insert(1, default.code("odd", "categorical", 2, label="odd"))
    exp = experiment_of(config)
    names = evaluator_lib.possible_metric_names(exp.layout)
    assert "cond_acc_direct" not in names and "cond_acc_direct_mean" in names
    assert reporting.best_metric(exp) == "cond_acc_direct_mean"  # The default's meaning.
    single = experiment_of(rich_config())
    assert "cond_acc_direct" in evaluator_lib.possible_metric_names(single.layout)
    assert reporting.best_metric(single) == "cond_acc_direct"
    config.best_metric = "cond_acc"
    with pytest.raises(config_checks.ConfigError, match="best_metric='cond_acc' is not an eval"):
        reporting.best_metric(experiment_of(config))
    headline = reporting.headline({"cond_acc_direct/digit": 0.9, "cond_acc_direct/odd": 0.7,
                                   "cond_acc_direct_mean": 0.8})  # fmt: skip
    assert headline[:2] == ("cond_acc_direct_mean", 0.8) and "mean over 2 codes" in headline[2]


def test_a_run_without_labels_is_judged_and_kept_by_the_best_map():
    from conftest import small_config

    labelled, unlabelled = small_config(), small_config()
    unlabelled.data.num_labeled = 0
    assert reporting.best_metric(experiment_of(labelled)) == "cond_acc_direct"
    assert reporting.best_metric(experiment_of(unlabelled)) == "cond_acc_mapped"
    metrics = {"cond_acc_direct": 0.1, "cond_acc_direct/digit": 0.1,
               "cond_acc_mapped": 0.93, "cond_acc_mapped/digit": 0.93}  # fmt: skip
    assert reporting.headline(metrics)[:2] == ("cond_acc_direct/digit", 0.1)
    head = reporting.headline(metrics, labelled=False)
    assert head[:2] == ("cond_acc_mapped/digit", 0.93)
    assert reporting.headline_text(*head).startswith(
        "mapped conditional accuracy: 93.0% of samples show one digit per code value"
    )
    lines = reporting.summary_lines(metrics, 6, "/tmp/run", labelled=False)
    assert lines[1] == reporting.headline_text(*head)


def test_an_unknown_best_metric_is_one_line_before_anything_is_written(digits_shared, tmp_path):
    workdir = tmp_path / "run"
    result = _run(digits_shared, workdir, tmp_path, "--config.best_metric=accuracy")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        line for line in result.stderr.splitlines() if line.startswith("FATAL config.best_metric")
    ], result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert not workdir.exists()


def test_progress_gives_steps_per_second_and_an_eta_in_minutes_and_seconds():
    now = [0.0]
    progress = reporting.Progress(600, 0, clock=lambda: now[0])
    now[0] = 10.0
    assert progress.line(100) == "step 100/600 ( 17%): 10.0 steps/s, ETA 0m50s"
    with progress.paused():  # An evaluation: not in steps/s.
        now[0] = 100.0
    now[0] = 105.0
    assert progress.line(300) == "step 300/600 ( 50%): 40.0 steps/s, ETA 0m08s"
    assert reporting.duration(3725) == "1h02m"


def test_grids_carry_their_row_and_column_labels():
    from ssinfogan_jax.evaluation import images

    x = np.zeros((3, 2, 10, 12, 1), np.float32)  # 3 rows of 2 black cells.
    grid = images.make_grid(x)
    labelled = images.with_labels(grid, (10, 12), rows=["cat", "dog", "bird"])
    margin = labelled.shape[1] - grid.shape[1]
    assert labelled.shape[0] == grid.shape[0] and margin > 10
    np.testing.assert_array_equal(labelled[:, margin:], grid)  # The pictures untouched.
    for r in range(3):  # Ink (dark pixels) in the margin beside every row, none between.
        band = labelled[2 + r * 12 : 2 + r * 12 + 10, :margin]
        assert (band < 128).any(), r
    heads = images.with_labels(grid, (10, 12), cols=images.value_labels(np.array([-1.0, 2.0])))
    top = heads.shape[0] - grid.shape[0]
    assert top > 8 and (heads[:top] < 128).any() and heads.shape[1] == grid.shape[1]
    assert images.value_labels(np.array([-1.0, 2.0])) == ["-1.0", "+2.0"]
    assert images.value_labels(np.arange(3)) == ["0", "1", "2"]


def test_sample_mode_indexes_each_sample_by_its_code_and_value(tmp_path):
    import jax
    from PIL import Image

    from ssinfogan_jax.evaluation import sampling

    config = rich_config()
    config.latents.codes.insert(1, default.code("odd", "categorical", 2, label="odd"))
    exp = experiment_of(config)

    def generate(latents):
        return np.zeros((len(latents["noise"]), 28, 28, 1), np.float32)

    written = sampling.write_samples(
        generate,
        exp.layout,
        jax.random.PRNGKey(0),
        str(tmp_path),
        (0.0, 1.0),
        per_value=3,
        class_names={"odd": ["even", "odd"]},
    )
    samples = np.load(written["samples"])
    assert list(samples["varied_code"]) == ["digit"] * 30 + ["odd"] * 6
    np.testing.assert_array_equal(
        samples["varied_value"], np.concatenate([np.repeat(np.arange(10), 3), [0, 0, 0, 1, 1, 1]])
    )
    for code in ("digit", "odd"):  # The index says what the code arrays hold.
        rows = samples["varied_code"] == code
        np.testing.assert_array_equal(samples[code][rows], samples["varied_value"][rows])
    assert list(samples["value_name"][30:]) == ["even"] * 3 + ["odd"] * 3
    assert list(samples["value_name"][:3]) == ["0"] * 3
    plain = 2 + 3 * 30  # A grid of 3 columns without labels.
    assert Image.open(written["odd"]).size[0] > plain  # The label margin.
    assert Image.open(written["traversal_odd"]).size[1] > 2 + 8 * 30  # The value heads.
