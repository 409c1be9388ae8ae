"""The one file layer: every file the project reads or writes, local or on a bucket (gs://).

    path = fileio.Path(workdir, "samples", "digit.png")     # an etils.epath.Path
    fileio.write_bytes(path, data); fileio.read_bytes(path)
    fileio.write_json(path, record); fileio.read_json(path)
    fileio.append_line(path, line)                           # eval_history.jsonl
    fileio.disk_full_reason(error)                           # "No space left on device" or None
    fileio.storage_unreachable_reason(error)                 # a refused connection, or None

A local path and a gs:// URL behave alike: parent folders are made as needed, and a file is
written whole or not at all (locally through a temporary file and a rename; an object store
publishes an object only when its upload completes, so there it is written in place, since a
"rename" on GCS is a copy and a delete). Images and arrays are encoded in memory and written
in one call (`images.save_image`, `sampling.write_samples`).

What does not go through here: orbax's checkpoints (orbax uses epath and tensorstore itself),
TensorBoard events (clu's writer is tf.summary: TensorFlow's own file system) and tfds's data
sets (tf.data).
"""

from __future__ import annotations

import errno
import json
import os
import sys
import uuid
from typing import Any

from etils import epath

from ssinfogan_jax import exit_codes

Path = epath.Path
PathLike = epath.PathLike

_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# gcsfs (epath's client for gs:// where TensorFlow's is not used) sets no timeout of its own: a
# connection that is never answered would wait for the OS's. Its retries (6 tries, about 35 s)
# then bound an outage.
CONNECT_TIMEOUT_S = 20


def _bound_gcsfs_connects() -> None:
    """Gives gcsfs's requests a connect timeout, through fsspec's defaults for gs://."""
    try:
        import aiohttp
        import fsspec.config
    except ImportError:  # No gcsfs here: gs:// goes through TensorFlow's file system.
        return
    timeout = aiohttp.ClientTimeout(sock_connect=CONNECT_TIMEOUT_S)
    fsspec.config.conf.setdefault("gs", {}).setdefault("requests_timeout", timeout)


_bound_gcsfs_connects()


def is_remote(path: PathLike) -> bool:
    """True for a URL such as gs://bucket/x (an object store: no appends, no cheap renames)."""
    return "://" in os.fspath(path)


def makedirs(path: PathLike) -> Path:
    """Makes the folder `path` and its parents (a no-op on an object store); returns it."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_bytes(path: PathLike, data: bytes) -> Path:
    """Writes `data` to `path` whole (a reader never sees part of it); returns the path. A
    SIGTERM meanwhile waits for the write's end (exit_codes.deferred)."""
    with exit_codes.deferred():
        return _write_bytes(Path(path), data)


def _write_bytes(path: Path, data: bytes) -> Path:
    if is_remote(path):
        path.write_bytes(data)
        return path
    makedirs(path.parent)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"  # Created with the umask's mode.
    try:
        with open(tmp, "xb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text(path: PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def read_bytes(path: PathLike) -> bytes:
    return Path(path).read_bytes()


def read_text(path: PathLike) -> str:
    return Path(path).read_text(encoding="utf-8")


def write_json(path: PathLike, record: Any, **dump_kwargs) -> Path:
    """`record` as JSON (json.dumps's keyword arguments, e.g. indent=2)."""
    return write_text(path, json.dumps(record, **dump_kwargs))


def read_json(path: PathLike) -> Any:
    return json.loads(read_text(path))


def exists(path: PathLike) -> bool:
    return Path(path).exists()


def append_line(path: PathLike, line: str) -> Path:
    """Appends `line` and a newline to the text file `path` (made if absent).

    An object cannot be appended to: on a bucket the file is read and written back whole,
    which is fine for the small logs this is for (one line per evaluation).
    """
    path = Path(path)
    if not is_remote(path):
        makedirs(path.parent)
        with exit_codes.deferred(), open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
        return path
    before = read_text(path) if path.exists() else ""
    return write_text(path, before + line + "\n")


def disk_full_reason(error: BaseException) -> str | None:
    """The OS's words for a full disk or an exceeded quota (ENOSPC, EDQUOT), if that is what
    `error`, or an error it was raised from, reports; else None.

    Only Python's own file calls raise an OSError with the errno: tensorstore (orbax's writer)
    raises a ValueError ("RESOURCE_EXHAUSTED: ... No space left on device [os_error_code='28']")
    and TensorFlow an OpError, each carrying the OS's message, which is what is looked for.
    """
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in _DISK_FULL_ERRNOS:
            return os.strerror(error.errno)
        for code in _DISK_FULL_ERRNOS:
            if os.strerror(code) in str(error):
                return os.strerror(code)
        error = error.__cause__
    return None


# What the storage clients raise where storage cannot be reached: Python's own (a refused or
# reset connection, a timeout: orbax's commit timeout too), aiohttp's (gcsfs), requests' and
# google-auth's (google-cloud-storage), and tensorstore's status codes in a ValueError (orbax's
# arrays), after each client's retries.
_UNREACHABLE_TYPES = (ConnectionError, TimeoutError)
_UNREACHABLE_CLIENT_TYPES = {
    "aiohttp": ("ClientConnectionError", "ServerTimeoutError"),
    "requests": ("ConnectionError", "Timeout"),
    "google.auth.exceptions": ("TransportError",),
}
_UNREACHABLE_STATUSES = ("UNAVAILABLE: ", "DEADLINE_EXCEEDED: ")


def storage_unreachable_reason(error: BaseException) -> str | None:
    """What the storage client said, shortened, if `error` (or an error it was raised from)
    reports storage that cannot be reached after the client's retries; else None."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        text = " ".join(str(error).split())
        unreachable = isinstance(error, _UNREACHABLE_TYPES) or any(
            status in text for status in _UNREACHABLE_STATUSES
        )
        for module, names in _UNREACHABLE_CLIENT_TYPES.items():
            if (loaded := sys.modules.get(module)) is not None:
                types = tuple(getattr(loaded, name) for name in names if hasattr(loaded, name))
                unreachable = unreachable or isinstance(error, types)
        if unreachable:
            text = text or type(error).__name__
            return text if len(text) <= 160 else text[:157] + "..."
        error = error.__cause__ or error.__context__
    return None
