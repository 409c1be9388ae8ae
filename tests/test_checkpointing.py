"""Checkpoints: round trip, best kept apart, corrupt or incompatible ones reported, NaN refused."""

import os
import threading
import time

import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from ssinfogan_jax import checkpointing


def _state(scale: float = 1.0, size: int = 10):
    return {
        "params": {"w": scale * jnp.arange(size, dtype=jnp.float32), "b": jnp.ones((3, 3))},
        "step": jnp.int32(7),
    }


def _files(root: str) -> dict[str, bytes]:
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                out[path] = f.read()
    return out


def test_round_trip_restores_values_dtypes_and_meta(tmp_path):
    ckpt = checkpointing.Checkpointer(str(tmp_path))
    ckpt.save(5, _state(2.0), {"num_labeled": 100})
    ckpt.wait_until_finished()
    state, meta = ckpt.restore(_state(0.0))
    np.testing.assert_array_equal(state["params"]["w"], 2.0 * np.arange(10))
    assert state["step"].dtype == jnp.int32 and int(state["step"]) == 7
    assert meta == {"step": 5, "num_labeled": 100}
    assert ckpt.latest_step() == 5


def test_keeps_only_the_latest_and_separately_the_best(tmp_path):
    ckpt = checkpointing.Checkpointer(str(tmp_path), max_to_keep=2, best_metric="acc")
    for step, acc in [(1, 0.5), (2, 0.9), (3, 0.7), (4, 0.6)]:
        ckpt.save(step, _state(step))
        ckpt.save_best(step, _state(step), {"acc": acc})
    ckpt.wait_until_finished()
    assert sorted(os.listdir(tmp_path / checkpointing.LATEST_DIR)) == ["3", "4"]
    best, meta = ckpt.restore(_state(), which="best")
    assert meta["step"] == 2 and meta["metrics"] == {"acc": 0.9}
    np.testing.assert_array_equal(best["params"]["w"], 2.0 * np.arange(10))


def test_non_finite_state_is_never_written(tmp_path):
    ckpt = checkpointing.Checkpointer(str(tmp_path))
    ckpt.save(1, _state())
    broken = _state()
    broken["params"]["w"] = broken["params"]["w"].at[3].set(jnp.nan)
    with pytest.raises(FloatingPointError, match="step 2"):
        ckpt.save(2, broken)
    ckpt.wait_until_finished()
    assert ckpt.latest_step() == 1
    state, _ = ckpt.restore(_state(0.0))
    assert np.isfinite(state["params"]["w"]).all()


def test_corrupt_checkpoint_is_reported_with_path_and_step_and_left_untouched(tmp_path):
    ckpt = checkpointing.Checkpointer(str(tmp_path))
    ckpt.save(3, _state())
    ckpt.wait_until_finished()
    step_dir = tmp_path / checkpointing.LATEST_DIR / "3"
    manifest = step_dir / "state" / "manifest.ocdbt"
    manifest.write_bytes(b"not a manifest")
    before = _files(str(tmp_path))
    with pytest.raises(checkpointing.CheckpointError) as error:
        checkpointing.Checkpointer(str(tmp_path)).restore(_state())
    assert "step 3" in str(error.value) and str(step_dir) in str(error.value)
    assert _files(str(tmp_path)) == before


def test_incompatible_checkpoint_names_the_mismatch(tmp_path):
    ckpt = checkpointing.Checkpointer(str(tmp_path))
    ckpt.save(3, _state(size=10))
    ckpt.wait_until_finished()
    with pytest.raises(checkpointing.CheckpointError, match="step 3"):
        ckpt.restore(_state(size=12))


def test_missing_checkpoint_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        checkpointing.Checkpointer(str(tmp_path)).restore(_state())


def test_a_wait_for_a_save_that_never_ends_is_a_storage_outage(tmp_path, monkeypatch):
    """A save whose finalizing hangs (storage gone past orbax's own limit, e.g. tensorstore's
    retries): the wait gives up after SAVE_TIMEOUT_S + WAIT_MARGIN_S as a storage outage with
    the intact checkpoints, and close() then returns at once instead of waiting again."""
    checkpointer = checkpointing.Checkpointer(str(tmp_path / "run"))
    state = {"w": np.arange(3.0)}
    checkpointer.save(1, state)
    checkpointer.wait_until_finished()
    monkeypatch.setattr(checkpointing, "SAVE_TIMEOUT_S", 1)  # The wait's limit: 1 + 1 s.
    monkeypatch.setattr(checkpointing, "WAIT_MARGIN_S", 1)
    release = threading.Event()
    monkeypatch.setattr(ocp.CheckpointManager, "wait_until_finished", lambda self: release.wait(60))
    start = time.monotonic()
    with pytest.raises(checkpointing.StorageUnreachableError) as error:
        checkpointer.save(2, state)  # Waits for step 1's save first, as orbax would.
    assert str(error.value).startswith(
        f"storage unreachable: a save to {tmp_path / 'run' / 'checkpoints'} failed (the save "
        "did not finish within 2 s); intact checkpoints: [1]; run the same command again"
    ), error.value
    checkpointer.wait_until_finished()  # Not tried again,
    checkpointer.close()  # nor by orbax's close.
    assert time.monotonic() - start < 10
    release.set()
