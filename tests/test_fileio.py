"""The file layer on local paths (tests/test_gcs_workdir.py runs it on a GCS emulator)."""

import errno
import os
import stat

from ssinfogan_jax import fileio


def test_writes_are_whole_and_make_their_folder(tmp_path):
    path = tmp_path / "a" / "b" / "record.json"
    fileio.write_json(path, {"step": 3}, indent=2)
    assert fileio.read_json(path) == {"step": 3}
    fileio.write_bytes(path, b"new")
    assert fileio.read_bytes(path) == b"new"
    assert os.listdir(path.parent) == ["record.json"]  # No temporary file left behind.
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask  # As open() would make it.


def test_append_line_adds_to_the_end(tmp_path):
    path = tmp_path / "logs" / "history.jsonl"
    fileio.append_line(path, '{"step": 1}')
    fileio.append_line(str(path), '{"step": 2}')
    assert fileio.read_text(path) == '{"step": 1}\n{"step": 2}\n'


def test_urls_are_remote():
    assert fileio.is_remote("gs://bucket/run") and not fileio.is_remote("/tmp/run")


def test_a_full_disk_is_recognised_in_each_library_s_wording():
    tensorstore = ValueError(
        'RESOURCE_EXHAUSTED: Error writing "x/0" in OCDBT database at local file "/d/": Failed '
        "to write 24240128 bytes to file 11: No space left on device [os_error_code='28']"
    )
    assert fileio.disk_full_reason(tensorstore) == "No space left on device"
    assert fileio.disk_full_reason(OSError(errno.EDQUOT, "Disk quota exceeded", "/d/x")) == (
        "Disk quota exceeded"
    )
    try:  # As checkpointing wraps it.
        raise RuntimeError("saving step 6 failed") from tensorstore
    except RuntimeError as wrapped:
        assert fileio.disk_full_reason(wrapped) == "No space left on device"
    assert fileio.disk_full_reason(ValueError("RESOURCE_EXHAUSTED: too many requests")) is None
    assert fileio.disk_full_reason(OSError(errno.EACCES, "Permission denied")) is None
