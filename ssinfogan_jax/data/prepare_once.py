"""Prepared once for a pod: one process builds a data set into a shared folder, the others wait.

    prepare_once.run(folder, tag, prepare=fn, is_prepared=fn, process_index=i, process_count=n)

Process 0 prepares; every other process waits until the set is prepared and process 0 says it
is complete, then reads it. They talk through small JSON files next to the prepared folder
(`{folder}/{tag}.{kind}`, written whole), which works on any file system the processes share,
gs:// included:

    preparing   process 0 started (host, pid, time); removed when it ends
    prepared    process 0 finished: the completion marker (kept)
    failed      process 0 failed, with its one-line message (kept until its next attempt)

A waiter returns when the set is prepared and either the completion marker is there or nobody
is preparing (a set prepared before, by prepare_data or tfds itself); it stops with process 0's
message when process 0 fails, and with a clear line after `timeout_s`. A local folder that
process 0 never claims within `grace_s` is not process 0's (a per-host disk on a multi-host
job): the processes that share it then prepare it themselves, one at a time (an flock), so the
run still works, as it did before this module. On a local folder process 0 holds the same lock
while it prepares.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from collections.abc import Callable, Iterator

from absl import logging

from ssinfogan_jax import fileio

TIMEOUT_S = 3600.0  # How long a process waits for process 0 to prepare a set.
POLL_S = 5.0  # How often it looks.
GRACE_S = 60.0  # A local folder process 0 has not claimed by then is another host's own.
FRESH_S = 30.0  # A failure recorded this long before a waiter started is from an earlier run.


def _paths(folder: str, tag: str) -> dict[str, fileio.Path]:
    return {
        kind: fileio.Path(folder, f"{tag}.{kind}") for kind in ("preparing", "prepared", "failed")
    }


def _record(process_index: int, **extra) -> dict:
    return dict(
        process_index=process_index,
        host=socket.gethostname(),
        pid=os.getpid(),
        time=time.time(),
        **extra,
    )


def _read(path: fileio.Path) -> dict | None:
    """The marker's record, or None when it is absent (or half-visible on an object store)."""
    try:
        return fileio.read_json(path)
    except (OSError, ValueError):
        return None


def _remove(path: fileio.Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def _ready(is_prepared: Callable[[], bool]) -> bool:
    try:
        return is_prepared()
    except Exception:  # A set being written (e.g. its dataset_info.json half copied) is not.
        return False


@contextlib.contextmanager
def _local_lock(folder: str) -> Iterator[None]:
    """An exclusive flock on `{folder}/.prepare.lock` for a local folder (nothing on gs://);
    released when this process ends, however it ends."""
    if fileio.is_remote(folder):
        yield
        return
    fileio.makedirs(folder)
    with open(os.path.join(folder, ".prepare.lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def run(
    folder: str,
    tag: str,
    *,
    prepare: Callable[[], None],
    is_prepared: Callable[[], bool],
    process_index: int,
    process_count: int,
    what: str,
    remedy: str,
    error: type[Exception],
    timeout_s: float = TIMEOUT_S,
    poll_s: float = POLL_S,
    grace_s: float = GRACE_S,
) -> None:
    """Makes `is_prepared()` true, calling `prepare()` in process 0 only (see the module doc).

    `folder`: where the markers go (beside the prepared set, shared by the processes); `tag`
    names them (the set's version). `what` names the set in messages, `remedy` says how to
    prepare it beforehand; failures of waiters raise `error` (one line).
    """
    if process_index == 0 or process_count <= 1:
        _prepare_as_process_0(folder, tag, prepare, is_prepared, process_count)
        return
    paths = _paths(folder, tag)
    start = time.time()
    claimed, next_log = None, start + 60
    while True:
        claim = _read(paths["preparing"])
        claimed = claim or claimed
        if _ready(is_prepared) and (paths["prepared"].exists() or claim is None):
            logging.info("%s is prepared in %s (waited %.0f s).", what, folder, time.time() - start)
            return
        failed = _read(paths["failed"])
        if failed and failed.get("time", 0) >= start - FRESH_S:
            raise error(f"process 0 could not prepare {what}: {failed.get('message', '?')}")
        waited = time.time() - start
        if claimed is None and waited > grace_s and not fileio.is_remote(folder):
            logging.info("%s: process 0 has not claimed %s; preparing it here.", what, folder)
            with _local_lock(folder):
                if not _ready(is_prepared):
                    prepare()
            return
        if waited > timeout_s:
            if claimed is None:
                state = (
                    f"process 0 never started preparing it there ({paths['preparing'].name} "
                    "never appeared): is the data_dir shared by every process? On a pod use a "
                    "gs:// data_dir"
                )
            else:
                state = f"process 0 started on {claimed.get('host', '?')} and has not finished"
            raise error(
                f"process {process_index} waited {waited:.0f} s for process 0 to prepare {what} "
                f"in {folder}: {state}; {remedy}, then run again"
            )
        if time.time() >= next_log:
            logging.info(
                "Waiting for process 0 to prepare %s in %s (%.0f s).", what, folder, waited
            )
            next_log += 60
        time.sleep(poll_s)


def _prepare_as_process_0(folder, tag, prepare, is_prepared, process_count) -> None:
    paths = _paths(folder, tag)
    shared = process_count > 1
    if _ready(is_prepared):
        if shared and not paths["prepared"].exists():  # Prepared by prepare_data, or tfds.
            _mark(paths["prepared"], _record(0, note="found prepared"))
            _remove(paths["preparing"])  # Of an attempt killed after tfds finished.
        return
    if shared:
        _remove(paths["failed"])
        _remove(paths["prepared"])  # From a build that has since been deleted.
        _mark(paths["preparing"], _record(0))
    try:
        with _local_lock(folder):
            if not _ready(is_prepared):  # A process of this host's own may have, meanwhile.
                prepare()
    except Exception as e:
        if shared:
            _mark(paths["failed"], _record(0, message=" ".join(str(e).split())))
            _remove(paths["preparing"])
        raise
    if shared:
        _mark(paths["prepared"], _record(0))
        _remove(paths["preparing"])


def _mark(path: fileio.Path, record: dict) -> None:
    """Writes a marker; a folder that cannot be written (read-only) only costs the waiters
    their early news, so it is logged, not raised."""
    try:
        fileio.write_json(path, record)
    except OSError as e:
        logging.warning("Cannot write %s (%s); the other processes go by the data alone.", path, e)
