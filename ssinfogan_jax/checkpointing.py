"""Checkpoints with orbax: the latest every N steps, and the best by a metric, kept apart.

Layout under the work dir:
  checkpoints/<step>/{state, meta}        the latest few (resume from here)
  checkpoints_best/<step>/{state, meta}   the single best by `best_metric`

`state` is the whole train state (both networks' parameters, batch-norm statistics, Adam
states, step and base RNG key); `meta` is JSON (step, metrics, anything the loop wants to
check on resume). Saving is asynchronous; call `wait_until_finished` before exiting.

A checkpoint that cannot be restored is reported with its path and step, and the older intact
ones (`CheckpointError`); nothing is deleted or silently replaced by a fresh start. A save that
fails is reported with its own step (not the step of the save that found out) and the intact
checkpoints; a full disk has its own `DiskFullError`. Nothing is created in the work dir until
the first save, so reading a mistyped work dir leaves no trace.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from ssinfogan_jax import exit_codes, fileio

LATEST_DIR = "checkpoints"
BEST_DIR = "checkpoints_best"
# In a checkpoint's meta: the step's evaluation was due and not done (a SIGTERM came first or
# cut it short); the resume evaluates that step before it trains. CUT_SHORT: what the
# preemption's line adds then.
EVAL_PENDING = "eval_pending"
CUT_SHORT = " (its evaluation was not done: the resume does it first)"


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be restored into the expected state, or a save failed."""


class NoCheckpointError(FileNotFoundError):
    """The work dir holds no checkpoint of the kind asked for."""


class DiskFullError(CheckpointError):
    """A save failed for a full disk (or quota); the checkpoints saved before are intact."""


class StorageUnreachableError(CheckpointError):
    """A save or a restore could not reach the work dir's storage (a bucket that stopped
    answering) within its time limit; the checkpoints saved before are intact."""


# The longest a save may take to reach storage (orbax's commit of an async save, where
# tensorstore's own retries would go on for about 15 minutes) before the run stops with
# StorageUnreachableError. gcsfs, the other storage client (epath's for gs://), gives up
# after its 6 tries (about 35 s). Together they bound a storage outage to about 2 minutes.
SAVE_TIMEOUT_S = int(os.environ.get("SSINFOGAN_SAVE_TIMEOUT_S", "90"))
# A wait for a save (or orbax's close, which waits too) that outlasts the save's own limit by
# this much is given up as a storage outage: past its commit, a save finalizes (metadata, the
# merged OCDBT manifest, old checkpoints removed) with calls that orbax's limit does not bound.
WAIT_MARGIN_S = 60


def storage_unreachable_advice(workdir: str) -> str:
    """What to do about a storage outage under `workdir`, for the end of a one-line message."""
    return f"run the same command again once {workdir} can be reached: it resumes"


def disk_full_advice(workdir: str) -> str:
    """What to do about a full disk under `workdir`, for the end of a one-line message."""
    return (
        f"free space there, or copy {workdir} to a disk with room and pass the copy as "
        "--workdir; running again resumes from the last intact checkpoint, if any"
    )


def _cause(e: BaseException, limit: int = 200) -> str:
    """The first line of an exception, shortened: orbax's messages run to many lines."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


@jax.jit
def _all_finite(tree) -> jax.Array:
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def _is_finite(tree) -> bool:
    return bool(_all_finite(tree))


class Checkpointer:
    """The latest and best checkpoints of one run.

    Args:
      workdir: the run's directory (local path or gs://).
      max_to_keep: how many latest checkpoints to keep.
      best_metric: the metric that ranks best checkpoints ('' = no best checkpoint).
      best_mode: 'max' or 'min'.
      read_only: only restore (eval, sample); saving is refused.
    """

    def __init__(
        self,
        workdir: str,
        max_to_keep: int = 2,
        best_metric: str = "",
        best_mode: str = "max",
        read_only: bool = False,
    ):
        self.workdir = workdir
        self.best_metric = best_metric
        self.read_only = read_only
        # create=False: the directories appear with the first save, not when a run starts.
        async_options = ocp.AsyncOptions(timeout_secs=SAVE_TIMEOUT_S)
        self._latest = ocp.CheckpointManager(
            os.path.join(workdir, LATEST_DIR),
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, create=False, async_options=async_options
            ),
        )
        # The step of each manager's last save until it is waited for: orbax reports a failed
        # background save when the next save or wait finds it, and the message names this step.
        self._unfinished: dict[str, int | None] = {LATEST_DIR: None, BEST_DIR: None}
        self._stuck = False  # A wait outlasted its limit: the storage is gone (see _bounded).
        self._best = None
        if best_metric:
            self._best = ocp.CheckpointManager(
                os.path.join(workdir, BEST_DIR),
                options=ocp.CheckpointManagerOptions(
                    max_to_keep=1,
                    create=False,
                    async_options=async_options,
                    best_fn=lambda metrics: metrics[best_metric],
                    best_mode=best_mode,
                ),
            )

    @staticmethod
    def _save_args(state, meta: dict) -> ocp.args.Composite:
        if jax.process_count() > 1:
            # Each host holds its own replica (host-local arrays, which orbax refuses across
            # processes): save host copies, identical on every host.
            state = jax.device_get(state)
        return ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))

    def save(self, step: int, state, meta: dict | None = None) -> None:
        """Saves the latest checkpoint (async). Refuses a state with NaN or inf.

        Raises CheckpointError when the save cannot start or an earlier one failed (a full
        disk, a write error).
        """
        self._check_writable(step)
        if not _is_finite(state):
            raise FloatingPointError(f"refusing to checkpoint a non-finite state at step {step}")
        args = self._save_args(state, {"step": step, **(meta or {})})
        self._wait(LATEST_DIR)  # orbax waits there anyway; an earlier failure keeps its step.
        self._guard(step, LATEST_DIR, lambda: self._latest.save(step, args=args))
        self._unfinished[LATEST_DIR] = step

    def save_best(self, step: int, state, metrics: dict[str, float], meta: dict | None = None):
        """Offers the state as the best checkpoint; kept if its metric beats the kept one."""
        if self._best is None:
            return
        self._check_writable(step)
        if not _is_finite(state):
            raise FloatingPointError(f"refusing to checkpoint a non-finite state at step {step}")
        metrics = {k: float(v) for k, v in metrics.items()}
        meta = {"step": step, "metrics": metrics, **(meta or {})}
        args = self._save_args(state, meta)
        self._wait(BEST_DIR)
        self._guard(step, BEST_DIR, lambda: self._best.save(step, args=args, metrics=metrics))
        self._unfinished[BEST_DIR] = step

    def _check_writable(self, step: int) -> None:
        if self.read_only:
            raise CheckpointError(f"{self.workdir} was opened read-only; not saving step {step}")

    def _guard(self, step: int | None, kind: str, fn) -> None:
        """Runs a save (or a wait for one); any failure becomes a CheckpointError with the path
        (DiskFullError for a full disk)."""
        try:
            fn()
        except FloatingPointError:
            raise
        except Exception as e:  # orbax and tensorstore raise many types for one failed write.
            where = os.path.join(self.workdir, kind)
            what = f"saving step {step} to {where}" if step is not None else f"a save to {where}"
            try:
                intact = self.all_steps()
            except Exception:  # The directory itself may be what failed.
                intact = "unknown"
            if reason := fileio.storage_unreachable_reason(e):
                raise StorageUnreachableError(
                    f"storage unreachable: {what} failed ({reason}); intact checkpoints: "
                    f"{intact or 'none'}; {storage_unreachable_advice(self.workdir)}"
                ) from e
            if reason := fileio.disk_full_reason(e):
                kept = (
                    f"intact checkpoints: {intact}, left untouched"
                    if intact
                    else "no earlier checkpoint"
                )
                advice = disk_full_advice(self.workdir)
                raise DiskFullError(f"disk full: {what} failed ({reason}); {kept}; {advice}") from e
            raise CheckpointError(
                f"{what} failed ({_cause(e)}); intact checkpoints: {intact or 'none'}. Free "
                "space or fix the directory, then run again to resume."
            ) from e

    def _wait(self, kind: str) -> None:
        """Waits for the pending save of `kind` (LATEST_DIR or BEST_DIR); raises if it failed
        or outlasted its limit (then no wait is tried again: `_stuck`)."""
        if self._stuck:
            return
        manager = self._latest if kind == LATEST_DIR else self._best
        wait = lambda: self._bounded(manager.wait_until_finished)
        self._guard(self._unfinished[kind], kind, wait)
        self._unfinished[kind] = None

    def _bounded(self, fn) -> None:
        """fn() (an orbax wait) in a thread of its own, for at most SAVE_TIMEOUT_S +
        WAIT_MARGIN_S; TimeoutError (a storage outage, to `_guard`) past that, the thread left
        to its retries."""
        done, outcome = threading.Event(), {}

        def run():
            try:
                fn()
            except BaseException as e:  # Handed to the caller's thread.
                outcome["error"] = e
            finally:
                done.set()

        threading.Thread(target=run, name="checkpoint-wait", daemon=True).start()
        limit = SAVE_TIMEOUT_S + WAIT_MARGIN_S
        if not done.wait(limit):
            self._stuck = True
            raise TimeoutError(f"the save did not finish within {limit} s")
        if "error" in outcome:
            raise outcome["error"]

    def latest_step(self, which: str = "latest") -> int | None:
        return self._manager(which).latest_step()

    def all_steps(self, which: str = "latest") -> list[int]:
        """The steps of `which` on disk, oldest first."""
        return sorted(self._manager(which).all_steps())

    def reached_preemption(self, step: int) -> bool:
        """True at the step that every host has agreed to save after a preemption notice
        (orbax's multi-host sync); always False without `jax.distributed`. Call it at every
        step, on every host."""
        return self._latest.reached_preemption(step)

    def restore(self, template, which: str = "latest", step: int | None = None) -> tuple[Any, dict]:
        """Restores (state, meta) from the latest (or a given) step of `which`.

        Args:
          template: a state of the expected structure, shapes and dtypes (e.g. a fresh one).
          which: 'latest' or 'best'.
          step: a step of that directory; default its latest.
        Raises:
          NoCheckpointError: no checkpoint there.
          CheckpointError: one exists but cannot be read or does not match the template.
        """
        manager = self._manager(which)
        step = manager.latest_step() if step is None else step
        if step is None:
            raise NoCheckpointError(
                f"no checkpoint in {manager.directory}: check --workdir, or train first"
            )
        path = os.path.join(str(manager.directory), str(step))
        older = [s for s in self.all_steps(which) if s < step]
        advice = (
            f"older checkpoints there: {older} (move {path} away to resume from step {older[-1]})"
            if older
            else "no older checkpoint there (move it away to start over, or use a fresh --workdir)"
        )
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        try:
            restored = manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
                ),
            )
        except Exception as e:  # orbax raises many types; all mean "this one is unusable".
            if reason := fileio.storage_unreachable_reason(e):
                raise StorageUnreachableError(
                    f"storage unreachable: restoring step {step} from {path} failed ({reason}); "
                    f"{storage_unreachable_advice(self.workdir)}"
                ) from e
            raise CheckpointError(
                f"checkpoint step {step} in {path} cannot be restored ({_cause(e)}); it was "
                f"left untouched; {advice}"
            ) from e
        state = restored.state
        mismatch = _structure_mismatch(template, state)
        if mismatch:
            raise CheckpointError(
                f"checkpoint step {step} in {path} does not match this config: {mismatch}; "
                f"it was left untouched; {advice}"
            )
        return state, dict(restored.meta)

    def _manager(self, which: str) -> ocp.CheckpointManager:
        if which == "latest":
            return self._latest
        if which == "best" and self._best is not None:
            return self._best
        raise ValueError(f"unknown checkpoint kind {which!r} (or no best metric configured)")

    def wait_until_finished(self) -> None:
        """Blocks until pending saves are written, the best's even when the latest's failed;
        CheckpointError (the first) if one of them failed."""
        failures = []
        for kind in (LATEST_DIR, BEST_DIR) if self._best is not None else (LATEST_DIR,):
            try:
                self._wait(kind)
            except CheckpointError as e:
                failures.append(e)
        if failures:
            raise failures[0]

    def close(self) -> None:
        """Closes the managers, within the waits' limit, unless a wait outlasted it (orbax's
        close would wait for that save again). Never raises: orbax's close raises a failed
        save's error again, which `wait_until_finished` reports (with its step) first."""
        if self._stuck:
            return
        for manager in (self._latest, self._best):
            try:
                if manager is not None:
                    self._bounded(manager.close)
            except Exception as e:  # Reported by the wait before; here only in the debug log.
                logging.debug("closing %s: %s", manager.directory, e)


def _structure_mismatch(template, restored) -> str:
    """'' if shapes and dtypes agree leaf by leaf, else the first difference."""
    t_leaves = jax.tree_util.tree_leaves_with_path(template)
    r_leaves = jax.tree.leaves(restored)
    if len(t_leaves) != len(r_leaves):
        return f"{len(r_leaves)} arrays, expected {len(t_leaves)}"
    for (path, t), r in zip(t_leaves, r_leaves, strict=True):
        if np.shape(t) != np.shape(r) or np.asarray(t).dtype != np.asarray(r).dtype:
            name = jax.tree_util.keystr(path)
            return (
                f"{name} is {np.shape(r)} {np.asarray(r).dtype}, expected {np.shape(t)} {t.dtype}"
            )
    return ""


class PreemptionNotice:
    """The decision to stop for a preemption notice (SIGTERM), taken jointly by all hosts.

    One process: the SIGTERM handler of `exit_codes` (main installs it at start; installed
    here for the loop's duration where the loop runs without main) notes the signal, read at
    every step. With `jax.distributed`, JAX's preemption service catches SIGTERM on whichever
    host receives it and the hosts agree on a step to save, a step after every host's current
    one (orbax's `reached_preemption`); each host asks at every step and all of them stop at
    that step. (Before the loop, and inside an evaluation, the service only notes the signal:
    the hosts stop together at the loop's next step.)

    Inside the block the signal is only noted (`exit_codes.deferred`): the loop acts on it at
    a step, except in what it marks `exit_codes.interruptible` (an evaluation).
    """

    def __init__(self, checkpointer: Checkpointer):
        self._checkpointer = checkpointer
        self._installed, self._previous = False, None
        # A finished or saved loop has nothing left to stop: no Terminated on leaving.
        self._deferred = exit_codes.deferred(then_raise=False)

    def __enter__(self):
        # Under jax.distributed the preemption service owns SIGTERM: a Python handler would
        # replace its handler and the other hosts would never hear of the notice.
        own = not jax.distributed.is_initialized() and not exit_codes.sigterm_handler_installed()
        if own and threading.current_thread() is threading.main_thread():
            self._installed, self._previous = True, exit_codes.install_sigterm_handler()
        self._deferred.__enter__()
        return self

    def should_stop(self, step: int) -> bool:
        """Call once per step, on every host."""
        stop = self._checkpointer.reached_preemption(step) or exit_codes.sigterm_received()
        if stop:
            exit_codes.sigterm_acted_on()  # The loop saves and raises Preempted instead.
        return stop

    def __exit__(self, *exc):
        self._deferred.__exit__(*exc)
        if self._installed:
            exit_codes.restore_sigterm_handler(self._previous or signal.SIG_DFL)
