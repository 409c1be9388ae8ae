"""Shared small fixtures: configs, batches, host copies, fast compiles."""

from __future__ import annotations

import jax
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from configs import default


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
