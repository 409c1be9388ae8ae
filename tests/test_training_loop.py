"""The training application end to end on the offline digits: exact resume after SIGKILL, a
corrupt checkpoint is reported, and sample mode writes what it promises. (SIGTERM's save and
exit, and a NaN's stop with the last good checkpoint kept: tests/test_failures.py.)"""

import json
import os
import signal
import time

import jax
import numpy as np
import pytest
from conftest import (
    DIGITS_STEPS,
    copy_run,
    digits_config,
    saved_state,
    start_main,
)
from PIL import Image

from ssinfogan_jax import checkpointing, latents, loop, train
from ssinfogan_jax import experiment as experiment_lib

# In-process runs here check files, shapes and ranges, not numbers: cheap compiles.
pytestmark = pytest.mark.usefixtures("fast_compile")

K = 3  # The shared run's first checkpoint: the kill comes after it; the resume makes 2K.


def _finish(process, timeout: float = 400, code: int = 0) -> str:
    output, _ = process.communicate(timeout=timeout)
    text = output.decode(errors="replace")
    assert process.returncode == code, text[-3000:]
    return text


def _wait_for(path, process, timeout: float = 400) -> None:
    deadline = time.time() + timeout
    while not os.path.exists(path):
        assert process.poll() is None, process.communicate()[0].decode()[-3000:]
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def _assert_bitwise_equal(a, b):
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_resume_after_sigkill_equals_an_uninterrupted_run(digits_shared, digits_run, tmp_path):
    assert DIGITS_STEPS == 2 * K  # digits_run is the uninterrupted run.
    killed = start_main(digits_shared, tmp_path, "--config.num_train_steps=1000")
    _wait_for(tmp_path / checkpointing.LATEST_DIR / str(K), killed)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert saved_state(tmp_path)[0] == K

    _finish(start_main(digits_shared, tmp_path, f"--config.num_train_steps={2 * K}"))
    resumed_step, resumed = saved_state(tmp_path)
    straight_step, straight = saved_state(digits_run)
    assert resumed_step == straight_step == int(resumed["step"]) == 2 * K
    # Params, batch-norm statistics, both Adam states, step and RNG key: bit for bit.
    _assert_bitwise_equal(resumed, straight)


def test_a_corrupt_checkpoint_is_reported_and_not_replaced(digits_shared, digits_run, tmp_path):
    workdir = copy_run(digits_run, tmp_path)
    manifest = workdir / checkpointing.LATEST_DIR / str(DIGITS_STEPS) / "state" / "manifest.ocdbt"
    manifest.write_bytes(b"garbage")
    listing = sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*"))
    with pytest.raises(checkpointing.CheckpointError) as error:
        config = digits_config(digits_shared, num_train_steps=3 * K)
        loop.train_and_evaluate(config, str(workdir))
    message = str(error.value)
    assert f"step {DIGITS_STEPS}" in message and str(manifest.parent.parent) in message
    assert sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*")) == listing
    assert manifest.read_bytes() == b"garbage"


def test_sample_mode_writes_images_and_codes(digits_shared, digits_run, tmp_path):
    workdir = copy_run(digits_run, tmp_path)
    config = digits_config(digits_shared)
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


def test_a_run_with_a_moving_average_of_g_resumes_and_samples_from_it(digits_shared, tmp_path):
    config = digits_config(digits_shared, num_train_steps=3, checkpoint_every_steps=3)
    config.optimizer.g_ema_decay = 0.999
    loop.train_and_evaluate(config, str(tmp_path))
    step, saved = saved_state(tmp_path)
    assert step == 3 and set(saved["generator_ema"]) == {"params", "batch_stats"}
    config.num_train_steps = 4  # Resumes into the same layout.
    loop.train_and_evaluate(config, str(tmp_path))
    step, resumed = saved_state(tmp_path)
    kernel = lambda tree: np.asarray(tree["params"]["Dense_0"]["kernel"])
    assert step == 4 and not np.array_equal(
        kernel(resumed["generator_ema"]), kernel(saved["generator_ema"])
    )
    assert not np.array_equal(kernel(resumed["generator_ema"]), kernel(resumed["generator"]))
    written = loop.sample(config, str(tmp_path))
    _, state, _ = loop.restore(config, str(tmp_path))
    assert isinstance(state, train.EmaTrainState)
    samples = np.load(written["samples"])
    generator, _ = experiment_lib.from_config(config, check=False).models()
    z = {k: samples[k] for k in ("digit", "c_us", "noise")}
    layout = latents.LatentLayout.from_config(config.latents)
    expected = generator.apply(
        train.generator_variables(state), latents.generator_input(layout, z), train=False
    )
    np.testing.assert_allclose(samples["images"], np.asarray(expected), atol=1e-5)


def test_training_on_arrays_equals_training_through_tfds_and_resumes_exactly(
    digits_shared, tmp_path
):
    """The digits passed as in-memory arrays (in tfds's stored order) train bit for bit as
    the same run through tfds; on arrays, a run stopped at step 3 and resumed equals it too."""
    config = digits_config(digits_shared)
    through_tfds = tmp_path / "tfds_run"
    loop.train_and_evaluate(config, str(through_tfds))
    source = experiment_lib.data_source(config)
    arrays = {split: source.load(split) for split in ("train", "test")}
    assert arrays["train"][0].dtype == np.uint8 and arrays["train"][0].shape == (1438, 28, 28, 1)

    on_arrays = tmp_path / "arrays_run"
    loop.train_and_evaluate(digits_config(digits_shared, num_train_steps=3), str(on_arrays), arrays)
    assert saved_state(on_arrays)[0] == 3
    loop.train_and_evaluate(config, str(on_arrays), data=arrays)

    (step, state), (tfds_step, tfds_state) = saved_state(on_arrays), saved_state(through_tfds)
    assert step == tfds_step == DIGITS_STEPS
    _assert_bitwise_equal(state, tfds_state)
    subset = lambda run: json.loads((run / "labeled_subset.json").read_text())["indices"]
    assert subset(on_arrays) == subset(through_tfds)
    # The judge is cached apart (the arrays' digest names it; the tfds run's may come from the
    # session's first run, compiled otherwise): what does not read its features agrees.
    last = lambda run: json.loads((run / "eval_history.jsonl").read_text().splitlines()[-1])
    features = ("frechet_distance", "sample_spread")
    arrays_row, tfds_row = last(on_arrays), last(through_tfds)
    assert {k: v for k, v in arrays_row.items() if k not in features} == {
        k: v for k, v in tfds_row.items() if k not in features
    }
