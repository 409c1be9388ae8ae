"""Start-up validation: each problem is reported on one line that names the config field."""

import json
import os

import jax
import pytest
from conftest import experiment_of, listing, run_main

from configs import celeba, digits, mnist
from ssinfogan_jax import config_checks, experiment
from ssinfogan_jax import default_config as default


@pytest.fixture(scope="module")
def digits_data_dir(digits_shared):
    return str(digits_shared / "tfds")


@pytest.fixture
def config(digits_data_dir):
    config = digits.get_config()
    config.data.data_dir = digits_data_dir
    return config


def _only_problem(config) -> str:
    problems = experiment.find_problems(config)
    assert len(problems) == 1, problems
    return problems[0]


def test_the_shipped_configs_have_no_problem_but_missing_data(config, tmp_path):
    assert experiment.find_problems(config) == []
    for cfg in (default.get_config(), celeba.get_config(), *map(mnist.get_config, MNIST_ARGS)):
        cfg.data.data_dir = str(tmp_path)  # Nothing prepared there.
        assert experiment.find_problems(cfg) == []  # Reads no data.
        assert experiment.data_source(cfg).problems() == []  # It would be downloaded.
        cfg.data.download = "never"
        problems = experiment.data_source(cfg).problems()  # Checked when the data loads.
        assert len(problems) == 1 and problems[0].startswith("config.data.data_dir:"), problems


MNIST_ARGS = (None, "infogan", "runlocal")


def test_mnist_infogan_preset_is_the_unsupervised_baseline_with_consistency():
    config = mnist.get_config("infogan")
    weights = experiment_of(config).weights
    assert config.data.num_labeled == 0 and config.loss.lambda_consistency == 1.0
    assert weights.q_ss_on_fakes and weights.q_ss_on_fakes_start == 0
    with pytest.raises(ValueError, match="unknown argument 'infogn'"):
        mnist.get_config("infogn")


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("num_labeled", -5, "config.data.num_labeled: -5 is negative"),
        ("num_labeled", 5_000, "config.data.num_labeled: 5000 is larger than the 1438"),
        ("labeled_fraction", 1.5, "config.data.labeled_fraction: 1.5 is not in [0, 1]"),
        ("name", "imagenette2", "config.data.name"),
    ],
)
def test_data_fields(config, field, value, expected):
    config.data[field] = value
    assert _only_problem(config).startswith(expected)


def test_num_labeled_zero_is_the_infogan_baseline_not_an_error(config):
    config.data.num_labeled = 0
    assert experiment.find_problems(config) == []


def test_code_size_differs_from_the_labels_classes(config):
    config.latents.codes[0].size = 7
    message = _only_problem(config)
    assert message.startswith("config.latents.codes[digit].size: 7 differs from the 10 classes")


def test_label_the_data_set_does_not_have(config):
    config.latents.codes[0].label = "Smiling"
    assert _only_problem(config).startswith("config.latents.codes[digit].label:")


def test_batch_not_divisible_by_the_device_count(config, monkeypatch):
    monkeypatch.setattr(jax, "device_count", lambda: 3)
    config.batch_size = 64
    with pytest.raises(config_checks.ConfigError) as error:
        experiment.from_config(config)  # Checks against JAX's device count.
    (message,) = str(error.value).splitlines()[1:]
    assert message.strip() == "config.batch_size: 64 is not a positive multiple of the 3 devices"


def test_unknown_architecture(config):
    config.model.arch = "resnet50"
    assert _only_problem(config).startswith("config.model.arch: unknown architecture 'resnet50'")


def test_unknown_conv_impl(config):
    config.model.conv_impl = "cudnn"
    assert _only_problem(config) == (
        "config.model.conv_impl: 'cudnn', expected one of auto, flax, cpu_fast"
    )
    for impl in ("auto", "flax", "cpu_fast"):
        config.model.conv_impl = impl
        assert experiment.find_problems(config) == []


def test_architecture_that_does_not_fit_the_data(config):
    config.model.arch = "infogan_32"
    message = _only_problem(config)
    assert message.startswith("config.model.arch: infogan_32 makes (32, 32, 3) images")


def test_consistency_shift_too_large_for_the_images(config):
    config.loss.lambda_consistency = 1.0
    config.loss.consistency_max_shift = 14
    assert _only_problem(config).startswith("config.loss.consistency_max_shift: 14 must be below")
    config.loss.lambda_consistency = 0.0  # Off: the shift is not used, so not checked.
    assert experiment.find_problems(config) == []


def test_q_ss_shift_needs_a_trunk_of_its_own_and_fits_the_images(config):
    config.loss.q_ss_max_shift = 2
    assert _only_problem(config).startswith(
        "config.loss.q_ss_max_shift: translates what Q_ss reads only with model.q_ss_trunk='own'"
    )
    config.model.q_ss_trunk = "own"
    assert experiment.find_problems(config) == []
    config.loss.q_ss_max_shift = 14
    assert _only_problem(config).startswith("config.loss.q_ss_max_shift: 14 must be below")


def test_q_ss_recolouring_needs_a_trunk_of_its_own(config):
    config.loss.q_ss_recolour = True
    assert _only_problem(config).startswith(
        "config.loss.q_ss_recolour: recolours what Q_ss reads only with model.q_ss_trunk='own'"
    )
    config.model.q_ss_trunk = "own"
    assert experiment.find_problems(config) == []


def test_missing_raw_data_folder(config, tmp_path):
    config.data.name = "mnist"
    config.data.data_dir = str(tmp_path)
    config.data.raw_dir = str(tmp_path / "nowhere")
    (problem,) = experiment.data_source(config).problems()
    assert problem.startswith("config.data.raw_dir:")


def test_misspelt_key_in_a_config_file_names_the_close_match(config):
    config.data.num_labelled = 100
    message = _only_problem(config)
    assert (
        message == "config.data.num_labelled: unknown field; did you mean config.data.num_labeled?"
    )


def test_several_problems_are_all_reported(config):
    config.model.arch = "nope"
    config.optimizer.d_learning_rate = -1.0
    config.instance_noise.decay = 0.0
    with pytest.raises(config_checks.ConfigError) as error:
        experiment.from_config(config, process_count=1, device_count=1)
    lines = str(error.value).splitlines()[1:]
    assert [line.strip().split(":")[0] for line in lines] == [
        "config.model.arch",
        "config.optimizer.d_learning_rate",
        "config.instance_noise.decay",
    ]


def test_misspelt_command_line_override_gives_a_clean_message(digits_shared, tmp_path):
    result = run_main(digits_shared, tmp_path, "--config.data.num_labelled=5", timeout=300)
    assert result.returncode == 2
    assert "FATAL config error" in result.stderr and "num_labeled" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_value_on_the_command_line_stops_before_training(digits_shared, tmp_path):
    result = run_main(digits_shared, tmp_path, "--config.data.num_labeled=-4", timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "config.data.num_labeled: -4 is negative" in result.stderr
    assert "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "checkpoints")


def _fields(node, prefix: str = "") -> list[str]:
    names = []
    for key, value in node.items():
        if isinstance(value, type(node)):
            names += _fields(value, f"{prefix}{key}.")
        else:
            names.append(f"{prefix}{key}")
    return names


# A value that each checked field must reject, and the config it is tried on.
BAD_VALUES = {
    "seed": -1,
    "data.download": "always",
    "data.name": "mnsit",
    "data.num_labeled": -2,
    "data.labeled_fraction": 1.5,
    "data.labeled_selection": "best",
    "data.labeled_seed": -1,
    "data.test_share": 1.5,
    "data.batch_mode": "both",
    "data.p_labeled_start": 1.5,
    "data.p_labeled_step": -0.1,
    "data.p_labeled_every": 0,
    "data.p_labeled_final": 2.0,
    "data.mix_labeled_share": 1.5,
    "data.labeled_max_shift": 14,
    "data.labeled_max_rotation": 200.0,
    "data.labeled_max_scale": 1.0,
    "data.prefetch": -1,
    "data.celeba_attributes": ("Smiling", "Smilling"),
    "data.celeba_crop": (0, 0, 300, 10),
    "model.arch": "resnet",
    "model.dtype": "float16",
    "model.conv_impl": "cudnn",
    "model.q_ss_dropout": 1.0,
    "model.q_ss_trunk": "separate",
    "latents.codes": [default.code("digit", "categorical", 1)],
    "latents.noise_size": -1,
    "latents.noise_distribution": "laplace",
    "latents.continuous_range": 0.0,
    "loss.lambda_ss_d": -1.0,
    "loss.lambda_us_d": float("nan"),
    "loss.lambda_ss_g": -1.0,
    "loss.lambda_us_g": float("inf"),
    "loss.q_ss_on_fakes_start": -1,
    "loss.lambda_consistency": -1.0,
    "loss.consistency_max_shift": -1,
    "loss.q_ss_max_shift": -1,
    "optimizer.g_learning_rate": 0.0,
    "optimizer.d_learning_rate": -1e-4,
    "optimizer.q_ss_learning_rate": -1e-3,
    "optimizer.g_ema_decay": 1.0,
    "optimizer.b1": 1.0,
    "optimizer.b2": -0.1,
    "optimizer.eps": 0.0,
    "instance_noise.stddev": -0.1,
    "instance_noise.decay": 0.0,
    "batch_size": 0,
    "parallel": "pjit",
    "num_train_steps": 0,
    "steps_per_dispatch": 0,
    "log_every_steps": 0,
    "checkpoint_every_steps": 0,
    "max_checkpoints_to_keep": 0,
    "eval_every_steps": -1,
    "images_every_steps": -1,
    "eval.samples_per_value": 0,
    "eval.judge_steps": 0,
    "eval.judge_batch_size": 0,
    "eval.judge_seed": -1,
    "eval.judge_max_shift": -2.0,
    "eval.judge_ensemble": 0,
    "sample.checkpoint": "first",
    "sample.per_value": 0,
    "sample.traversal_rows": 0,
    "sample.traversal_values": 1,
}
CELEBA_ONLY = ("data.celeba_attributes", "data.celeba_crop")


def test_every_field_has_a_check_that_fires_or_a_reason(config):
    fields = _fields(default.get_config())
    checked = {name for name, *_ in config_checks.RANGES}
    checked |= {name for name, _ in config_checks.CHOICES} | set(config_checks.CHECKED_ELSEWHERE)
    assert set(config_checks.UNCHECKED).isdisjoint(checked)
    assert sorted(checked | set(config_checks.UNCHECKED)) == sorted(fields)
    assert sorted(BAD_VALUES) == sorted(checked)
    for name, bad in BAD_VALUES.items():
        cfg = celeba.get_config() if name in CELEBA_ONLY else digits.get_config()
        cfg.data.data_dir = config.data.data_dir
        node, leaf = cfg, name.split(".")[-1]
        for part in name.split(".")[:-1]:
            node = node[part]
        node[leaf] = bad
        problems = experiment.find_problems(cfg)
        where = "config.latents.codes[" if name == "latents.codes" else f"config.{name}:"
        assert any(p.startswith(where) for p in problems), (name, bad, problems)


def test_stratified_labels_fewer_than_classes(config):
    config.data.num_labeled = 7
    assert _only_problem(config).startswith(
        "config.data.num_labeled: 7 stratified labels cannot cover the 10 classes"
    )
    config.data.labeled_selection = "random"
    assert experiment.find_problems(config) == []


def test_judge_ensemble_below_one_or_fractional_is_refused_in_one_line(config):
    for bad in (0, -3):  # A fraction is refused by ml_collections (an int field).
        config.eval.judge_ensemble = bad
        assert _only_problem(config) == f"config.eval.judge_ensemble: {bad} is not in [1, inf)"
    config.eval.judge_ensemble = 3
    assert experiment.find_problems(config) == []
    saved = config_checks.record(config)
    config.eval.judge_ensemble = 1  # An eval.* field: may change on resume.
    assert config_checks.compare_with_saved(saved, config) == (
        {"eval.judge_ensemble": [3, 1]},
        [],
    )


def test_saved_config_comparison_allows_cadences_and_names_the_rest(config):
    saved = config_checks.record(config)
    steps = config.num_train_steps
    config.num_train_steps = 2 * steps
    config.eval.samples_per_value = 4
    config.latents.noise_size = 10
    config.optimizer.b1 = 0.9
    allowed, problems = config_checks.compare_with_saved(saved, config)
    assert allowed == {"num_train_steps": [steps, 2 * steps], "eval.samples_per_value": [128, 4]}
    assert problems == ["config.latents.noise_size: 62 -> 10", "config.optimizer.b1: 0.5 -> 0.9"]
    del saved["model"]["dtype"]  # A record older than the field: its default is what it ran.
    assert config_checks.compare_with_saved(saved, config)[1] == problems
    # A record older than an evaluation setting that the config now sets: allowed, from None.
    del saved["eval"]["judge_max_shift"]
    config.eval.judge_max_shift = 2.0
    allowed, later = config_checks.compare_with_saved(saved, config)
    assert allowed["eval.judge_max_shift"] == [None, 2.0] and later == problems


def test_the_judges_old_field_names_are_refused_with_the_new_name(config, digits_shared, tmp_path):
    config.eval.classifier_steps = 5  # A config file of before the rename.
    assert _only_problem(config) == (
        "config.eval.classifier_steps: renamed; use config.eval.judge_steps"
    )
    workdir = tmp_path / "run"
    result = run_main(digits_shared, workdir, "--config.eval.classifier_dir=/tmp/j", timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [
        "FATAL --config.eval.classifier_dir was renamed: use --config.eval.judge_dir (the "
        "judge's settings are config.eval.judge_*)"
    ]
    assert not workdir.exists()


def test_a_record_with_the_judges_old_names_compares_under_the_new_ones(config):
    saved = config_checks.record(config)
    for new in list(saved["eval"]):
        if new.startswith("judge_"):
            saved["eval"]["classifier_" + new.removeprefix("judge_")] = saved["eval"].pop(new)
    assert "judge_steps" not in saved["eval"] and saved["eval"]["classifier_steps"] == 300
    assert config_checks.compare_with_saved(saved, config) == ({}, [])
    config.eval.judge_steps = 7
    assert config_checks.compare_with_saved(saved, config) == ({"eval.judge_steps": [300, 7]}, [])


@pytest.mark.parametrize(
    "flags, line",
    [
        (("--config.data.test_share=1.5",), "config.data.test_share: 1.5 is not in [0.0, 1.0)"),
        (
            ("--config.data.num_labeled=-1", "--config.data.labeled_fraction=2"),
            "config.data.labeled_fraction: 2.0 is not in [0, 1]",
        ),
        (("--config.best_metric=bogus",), "config.best_metric='bogus' is not an eval metric"),
    ],
    ids=["test_share", "fraction", "best_metric"],
)
def test_a_range_gap_is_one_problem_line_and_writes_nothing(digits_shared, tmp_path, flags, line):
    """test_share is checked for every data set (digits has no use for it, yet 1.5 is a typo);
    a bad fraction with num_labeled=-1 says so once, not also as a count; an unknown
    best_metric stops the run before it trains (issue 37 defect 7)."""
    workdir = tmp_path / "run"
    result = run_main(digits_shared, workdir, *flags, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [x.strip() for x in result.stderr.strip().splitlines() if x != "FATAL invalid config:"]
    assert len(lines) == 1 and lines[0].removeprefix("FATAL ").startswith(line), result.stderr
    assert not workdir.exists()


def test_a_folders_bad_test_share_is_its_only_problem(tmp_path):
    from configs import folder as folder_config
    from ssinfogan_jax.data import make_example_folder

    out = str(tmp_path / "shapes")
    csv_path = make_example_folder.make_folder(out, num_images=48, seed=1)
    config = folder_config.get_config()
    config.data.images_dir, config.data.labels_csv = out, csv_path
    config.data.data_dir = str(tmp_path / "tfds")
    config.data.test_share = 1.0
    assert _only_problem(config) == "config.data.test_share: 1.0 is not in [0.0, 1.0)"


@pytest.mark.parametrize(
    "flag, line",
    [
        (
            "--config.batch_size=100000000",
            "config.batch_size: a train step of 100000000 examples (100000000 per device) needs",
        ),
        (
            "--config.latents.noise_size=100000000",
            "config.latents.noise_size: G and D hold 102,413M numbers for these latents",
        ),
    ],
    ids=["batch_size", "noise_size"],
)
def test_a_step_that_cannot_fit_in_memory_is_refused_before_anything_is_written(
    digits_shared, tmp_path, flag, line
):
    """Issue 37 defect 5: an estimate from the networks' shapes against the device's memory
    (here the host's RAM), before config.json; the line says what would fit."""
    workdir = tmp_path / "run"
    result = run_main(digits_shared, workdir, flag, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0] == "FATAL invalid config:", result.stderr[-2000:]
    assert lines[1].strip().startswith(line) and "GiB" in lines[1], lines[1]
    assert listing(workdir) == {}


def test_the_memory_estimate_errs_low_and_passes_the_shipped_configs(config):
    limit, _ = config_checks.device_memory()
    layout = experiment.latents_lib.LatentLayout.from_config(config.latents)
    m = config.model
    variables, per_example = config_checks.network_bytes(
        m.arch, layout, (m.dtype, m.conv_impl, m.d_batch_norm, m.q_ss_trunk)
    )
    # infogan_mnist: 13.4M float32 numbers; 322 KB of layer outputs per example on the CPU.
    assert variables == 53_483_576 and 100_000 < per_example < 1_000_000
    fits = (limit - 3 * variables) // per_example
    config.batch_size = int(fits)
    assert experiment.find_problems(config) == []
    config.batch_size = int(fits) + 1
    (problem,) = experiment.find_problems(config)
    assert problem.endswith(f"use a batch_size of at most {int(fits):,}"), problem


def test_until_a_first_checkpoint_a_rerun_may_change_any_field(digits_shared, tmp_path):
    """A first run that stopped before its first save (here: the config.json an unrunnable
    batch size left before it was refused at start-up) does not hold its work dir."""
    from conftest import digits_config

    from ssinfogan_jax import run_record

    workdir = tmp_path / "run"
    workdir.mkdir()
    bad = digits_config(digits_shared, batch_size=100_000_000)
    (workdir / "config.json").write_text(bad.to_json_best_effort(indent=2))
    before = listing(workdir)
    result = run_main(digits_shared, workdir, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    after = listing(workdir)
    assert set(before) < set(after) and "checkpoints/6/_CHECKPOINT_METADATA" in after, after
    saved = json.loads((workdir / "config.json").read_text())
    assert saved["batch_size"] == digits.get_config("runlocal").batch_size
    # Once a checkpoint exists, the same change is refused.
    with pytest.raises(config_checks.ConfigError, match=r"config\.batch_size: 16 -> 100000000"):
        run_record.saved_config(bad, str(workdir))
    assert run_record.has_checkpoint(str(workdir))
