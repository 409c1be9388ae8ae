"""Shared small fixtures: configs, batches, host copies, fast compiles, and the digits smoke
run through `python -m ssinfogan_jax.main` (one data set, judge and XLA cache per session)."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from configs import digits
from ssinfogan_jax import default_config as default

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The digits smoke run (configs/digits.py:runlocal): checkpoints at 3 and 6. The shared run
# below also evaluates every DIGITS_EVAL_EVERY steps.
DIGITS_STEPS = 6
DIGITS_EVAL_EVERY = 2
# The judge of every digits run here: its accuracy is not under test, and 5 steps train it in
# seconds where runlocal's 50 take most of a minute.
DIGITS_CLASSIFIER_STEPS = 5


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch):
    """Any attempt by tfds to fetch a URL (or a prepared copy on GCS) fails the test at once."""

    def refuse(*args, **kwargs):
        # pytest.fail raises a BaseException: no `except Exception` on the way turns it into
        # an ordinary download failure.
        pytest.fail(f"a test tried to download: {args[1:]} {kwargs}")

    monkeypatch.setattr(tfds.download.DownloadManager, "_download", refuse)
    monkeypatch.setattr(tfds.core.utils.gcs_utils, "exists", lambda path: False)


@pytest.fixture(scope="module")
def fast_compile():
    """Cheap XLA compiles, for tests whose assertions do not depend on optimisation level."""
    previous = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)


def small_config(batch_size: int = 8, **loss_overrides) -> ml_collections.ConfigDict:
    """The reference MNIST config with a small batch."""
    config = default.get_config()
    config.batch_size = batch_size
    for key, value in loss_overrides.items():
        config.loss[key] = value
    return config


def rich_config(batch_size: int = 8) -> ml_collections.ConfigDict:
    """Every kind of code: supervised and free, categorical and continuous."""
    config = small_config(batch_size)
    config.latents.codes = [
        default.code("digit", "categorical", 10, label="label"),
        default.code("thickness", "continuous", 1, label="thickness"),
        default.code("style", "categorical", 3),
        default.code("c_us", "continuous", 2),
    ]
    config.latents.noise_size = 20
    return config


def make_batch(
    config: ml_collections.ConfigDict, mask, seed: int = 0, image_shape=(28, 28, 1)
) -> dict:
    """A batch with random images in [0, 1]; labels for every supervised code, the sentinel
    (-1, or 0 for a continuous label) where its mask is 0. `mask`: one [B] mask for every
    label, or {label: [B]}."""
    rng = np.random.default_rng(seed)
    per_label = mask if isinstance(mask, dict) else None
    labels, masks = {}, {}
    for c in config.latents.codes:
        if not c.label:
            continue
        mask = np.asarray(per_label[c.label] if per_label else mask, np.float32)
        masks[c.label] = mask
        batch_size = mask.shape[0]
        if c.kind == "categorical":
            value = rng.integers(0, c.size, batch_size).astype(np.int32)
            labels[c.label] = np.where(mask > 0, value, -1).astype(np.int32)
        else:
            value = rng.uniform(-1, 1, (batch_size, c.size)).astype(np.float32)
            labels[c.label] = np.where(mask[:, None] > 0, value, 0.0).astype(np.float32)
    batch_size = len(next(iter(masks.values()))) if masks else len(np.asarray(mask))
    image = rng.uniform(0, 1, (batch_size, *image_shape)).astype(np.float32)
    return {"image": image, "label_masks": masks, "labels": labels}


def to_host(tree):
    """A numpy copy (survives donation of the device buffers)."""
    return jax.tree.map(np.asarray, tree)


def trees_equal(a, b) -> bool:
    """Bitwise equality of two pytrees of arrays (NaN equal to NaN)."""
    leaves_a, tree_a = jax.tree.flatten(a)
    leaves_b, tree_b = jax.tree.flatten(b)
    if tree_a != tree_b:
        return False
    return all(
        np.array_equal(np.asarray(x), np.asarray(y), equal_nan=True)
        for x, y in zip(leaves_a, leaves_b, strict=True)
    )


def experiment_of(config: ml_collections.ConfigDict):
    """The config's Experiment without the start-up checks (test configs invent labels)."""
    from ssinfogan_jax import experiment

    return experiment.from_config(config, check=False)


def create_models(config: ml_collections.ConfigDict):
    """(layout, G, D) of a config."""
    exp = experiment_of(config)
    return (exp.layout, *exp.models())


@pytest.fixture(scope="session")
def digits_shared(tmp_path_factory) -> pathlib.Path:
    """The offline digits prepared once per session, in a folder that also holds what every
    digits run shares: the independent classifier (`classifiers`, trained by the first run that
    needs it) and the persistent XLA cache (`xla`)."""
    from ssinfogan_jax.data import builders

    root = tmp_path_factory.mktemp("digits_shared")
    builders.prepare("digits", "", str(root / "tfds"))
    return root


def main_command(shared: pathlib.Path, workdir, *flags: str) -> list[str]:
    """`python -m ssinfogan_jax.main` on the digits smoke run with the session's data, judge and
    XLA cache. A flag in `flags` replaces the default of the same name (e.g.
    `--config.compilation_cache_dir=...`); the others are appended."""
    command = {
        "--config": f"--config={ROOT}/configs/digits.py:runlocal",
        "--workdir": f"--workdir={workdir}",
        "--config.data.data_dir": f"--config.data.data_dir={shared / 'tfds'}",
        "--config.eval.judge_dir": f"--config.eval.judge_dir={shared / 'classifiers'}",
        "--config.eval.judge_steps": (f"--config.eval.judge_steps={DIGITS_CLASSIFIER_STEPS}"),
        "--config.compilation_cache_dir": f"--config.compilation_cache_dir={shared / 'xla'}",
    }
    for flag in flags:
        command[flag.split("=")[0]] = flag
    return [sys.executable, "-m", "ssinfogan_jax.main", *command.values()]


def run_main(
    shared: pathlib.Path, workdir, *flags: str, timeout: float = 1500, env=None
) -> subprocess.CompletedProcess:
    """`main_command` run to its end; stdout and stderr captured apart, as text."""
    return subprocess.run(
        main_command(shared, workdir, *flags),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_main(shared: pathlib.Path, workdir, *flags: str, **popen_kwargs) -> subprocess.Popen:
    """`main_command` started in the background, stderr merged into stdout (a pipe)."""
    popen_kwargs = {"cwd": ROOT, **popen_kwargs}
    return subprocess.Popen(
        main_command(shared, workdir, *flags),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        **popen_kwargs,
    )


def digits_config(shared: pathlib.Path, **overrides) -> ml_collections.ConfigDict:
    """The config `main_command` runs, for in-process runs, without the compilation cache (an
    in-process run must not reconfigure the test process); `overrides` set top-level fields."""
    config = digits.get_config("runlocal")
    config.data.data_dir = str(shared / "tfds")
    config.eval.judge_dir = str(shared / "classifiers")
    config.eval.judge_steps = DIGITS_CLASSIFIER_STEPS
    config.compilation_cache_dir = ""
    for key, value in overrides.items():
        config[key] = value
    return config


@pytest.fixture(scope="session")
def digits_run(digits_shared, tmp_path_factory) -> pathlib.Path:
    """A finished smoke run through main: checkpoints at steps 3 and 6, evaluations at 2, 4
    and 6. Tests copy it (`copy_run`) before touching it."""
    workdir = tmp_path_factory.mktemp("digits_run") / "run"
    result = run_main(digits_shared, workdir, f"--config.eval_every_steps={DIGITS_EVAL_EVERY}")
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def copy_run(run: pathlib.Path, tmp_path: pathlib.Path) -> pathlib.Path:
    """A copy of a finished run's work dir under tmp_path."""
    workdir = tmp_path / "run"
    shutil.copytree(run, workdir)
    return workdir


def listing(workdir) -> dict[str, int]:
    """Every file under a folder with its size ({} if it does not exist)."""
    return {
        os.path.relpath(os.path.join(d, f), workdir): os.path.getsize(os.path.join(d, f))
        for d, _, files in os.walk(workdir)
        for f in files
    }


def saved_state(workdir) -> tuple[int, dict]:
    """(step, state) of a run's latest checkpoint, read as saved: no template, nothing compiled
    (the state is a dict: generator, discriminator, rng, step)."""
    import orbax.checkpoint as ocp

    from ssinfogan_jax import checkpointing

    manager = ocp.CheckpointManager(os.path.join(workdir, checkpointing.LATEST_DIR))
    try:
        step = manager.latest_step()
        restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    finally:
        manager.close()
    return step, restored.state
