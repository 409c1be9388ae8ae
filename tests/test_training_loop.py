"""The training application end to end on the offline digits: exact resume after SIGKILL,
SIGTERM saves, a NaN stops without a broken checkpoint, a corrupt checkpoint is reported, and
sample mode writes what it promises."""

import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from conftest import experiment_of
from PIL import Image

from configs import digits
from ssinfogan_jax import checkpointing, exit_codes, input_pipeline, loop, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
K = 4  # Steps before the kill; the uninterrupted run makes 2K.


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """Data, the independent classifier and the XLA cache, shared by every run here."""
    root = tmp_path_factory.mktemp("shared")
    input_pipeline.prepare("digits", "", str(root / "tfds"))
    return root


def _config(shared, **overrides):
    config = digits.get_config("runlocal")
    config.data.data_dir = str(shared / "tfds")
    config.eval.classifier_dir = str(shared / "classifiers")
    config.compilation_cache_dir = ""  # In-process runs must not reconfigure this process.
    for key, value in overrides.items():
        node = config
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return config


def _main(shared, workdir, *flags: str) -> subprocess.Popen:
    args = [
        sys.executable,
        "-m",
        "ssinfogan_jax.main",
        "--config=configs/digits.py:runlocal",
        f"--workdir={workdir}",
        f"--config.data.data_dir={shared / 'tfds'}",
        f"--config.eval.classifier_dir={shared / 'classifiers'}",
        f"--config.compilation_cache_dir={shared / 'xla'}",
        f"--config.checkpoint_every_steps={K}",
        "--config.log_every_steps=1",
        *flags,
    ]
    return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _finish(process: subprocess.Popen, timeout: float = 400, code: int = 0) -> str:
    output, _ = process.communicate(timeout=timeout)
    text = output.decode(errors="replace")
    assert process.returncode == code, text[-3000:]
    return text


def _wait_for(path, process: subprocess.Popen, timeout: float = 400) -> None:
    deadline = time.time() + timeout
    while not os.path.exists(path):
        assert process.poll() is None, process.communicate()[0].decode()[-3000:]
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def _restore(shared, workdir, which="latest"):
    template = train.create_train_state(jax.random.PRNGKey(0), experiment_of(_config(shared)))
    ckpt = checkpointing.Checkpointer(str(workdir), best_metric="cond_acc_direct")
    try:
        return ckpt.restore(template, which=which)
    finally:
        ckpt.close()


def _assert_bitwise_equal(a, b):
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def straight_run(shared, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("straight")
    _finish(_main(shared, workdir, f"--config.num_train_steps={2 * K}"))
    return workdir


def test_resume_after_sigkill_equals_an_uninterrupted_run(shared, straight_run, tmp_path):
    killed = _main(shared, tmp_path, "--config.num_train_steps=1000")
    _wait_for(tmp_path / checkpointing.LATEST_DIR / str(K), killed)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert _restore(shared, tmp_path)[1]["step"] == K

    _finish(_main(shared, tmp_path, f"--config.num_train_steps={2 * K}"))
    resumed, meta = _restore(shared, tmp_path)
    straight, straight_meta = _restore(shared, straight_run)
    assert meta["step"] == straight_meta["step"] == 2 * K
    # Params, batch-norm statistics, both Adam states, step and RNG key: bit for bit.
    _assert_bitwise_equal(resumed, straight)


def test_sigterm_saves_a_checkpoint_and_exits_for_a_resume(shared, tmp_path):
    process = _main(shared, tmp_path, "--config.num_train_steps=100000")
    _wait_for(tmp_path / checkpointing.LATEST_DIR / str(K), process)
    process.send_signal(signal.SIGTERM)
    output = _finish(process, timeout=120, code=exit_codes.PREEMPTED)
    assert "SIGTERM" in output and "preempted: saved step" in output
    state, meta = _restore(shared, tmp_path)
    assert K < meta["step"] < 100000
    assert int(state.step) == meta["step"]


def test_a_nan_stops_the_run_and_keeps_the_last_good_checkpoint(shared, tmp_path, monkeypatch):
    batch = input_pipeline.TrainData.batch

    def poisoned(self, step):
        result = batch(self, step)
        if step >= 4:  # Consumed by iteration 5.
            result["image"] = np.full_like(result["image"], np.nan)
        return result

    monkeypatch.setattr(input_pipeline.TrainData, "batch", poisoned)
    config = _config(shared, log_every_steps=1, checkpoint_every_steps=3, num_train_steps=6)
    with pytest.raises(FloatingPointError) as error:
        loop.train_and_evaluate(config, str(tmp_path))
    assert "step 5" in str(error.value) and "last good checkpoint is step 3" in str(error.value)
    assert os.listdir(tmp_path / checkpointing.LATEST_DIR) == ["3"]
    state, _ = _restore(shared, tmp_path)
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state.generator.params))


def test_a_corrupt_checkpoint_is_reported_and_not_replaced(shared, straight_run, tmp_path):
    workdir = tmp_path / "run"
    subprocess.run(["cp", "-r", str(straight_run), str(workdir)], check=True)
    manifest = workdir / checkpointing.LATEST_DIR / str(2 * K) / "state" / "manifest.ocdbt"
    manifest.write_bytes(b"garbage")
    listing = sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*"))
    with pytest.raises(checkpointing.CheckpointError) as error:
        loop.train_and_evaluate(_config(shared, num_train_steps=3 * K), str(workdir))
    assert f"step {2 * K}" in str(error.value) and str(manifest.parent.parent) in str(error.value)
    assert sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*")) == listing
    assert manifest.read_bytes() == b"garbage"


def test_sample_mode_writes_images_and_codes(shared, straight_run, tmp_path):
    workdir = tmp_path / "run"
    subprocess.run(["cp", "-r", str(straight_run), str(workdir)], check=True)
    config = _config(shared)
    config.sample.per_value = 3
    written = loop.sample(config, str(workdir))
    samples = np.load(written["samples"])
    assert samples["images"].shape == (30, 28, 28, 1) and samples["images"].dtype == np.float32
    assert 0.0 <= samples["images"].min() and samples["images"].max() <= 1.0
    np.testing.assert_array_equal(samples["digit"], np.repeat(np.arange(10), 3))
    assert samples["c_us"].shape == (30, 2) and np.abs(samples["c_us"]).max() <= 1.0
    assert samples["noise"].shape == (30, 62)
    grid = np.asarray(Image.open(written["digit"]))
    assert grid.shape[0] > 10 * 28 and grid.shape[1] > 3 * 28
    for name in ("traversal_digit", "traversal_c_us_0", "traversal_c_us_1"):
        assert Image.open(written[name]).size[0] > 0
