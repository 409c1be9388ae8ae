"""A gs:// work dir end to end, against a real GCS emulator (PyPI gcp-storage-emulator).

`python -m ssinfogan_jax.main --workdir=gs://bucket/run` trains, is stopped by SIGTERM,
resumes, evaluates and samples; then the bucket is listed. Everything the project writes
goes to the bucket through its file layer (etils epath, here on gcsfs) and orbax (epath and
tensorstore), and nothing lands in a local `./gs:` folder. A storage outage (the emulator
stopped mid-run, and away at start) is one line and exit 3, and a rerun resumes.

What cannot be pointed at the emulator: TensorFlow's own GCS file system, whose endpoint is
compiled in. It carries tf.summary (so clu's TensorBoard writer) and tf.data (tfds). The run
therefore keeps TensorBoard events (config.tensorboard_dir) and the tfds data_dir local; on
real GCS both work with gs:// too.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import numpy as np
import pytest
from conftest import ROOT, main_command

pytest.importorskip("gcsfs", reason="gs:// through etils epath needs gcsfs ([test] extra)")
pytest.importorskip("gcp_storage_emulator.server", reason="the GCS emulator is in the [test] extra")
storage = pytest.importorskip("google.cloud.storage")
import gcs_emulator  # noqa: E402  (tests/gcs_emulator.py)
from google.auth.credentials import AnonymousCredentials  # noqa: E402

BUCKET, RUN = "bucket", "run"
# How a preempted run ends: 75 where this checkout defines exit codes, else 0. (Checked by
# file: an editable install elsewhere may lend the package modules this checkout lacks.)
PREEMPTED = 75 if os.path.exists(os.path.join(ROOT, "ssinfogan_jax", "exit_codes.py")) else 0


@pytest.fixture(scope="module")
def emulator():
    """The emulator on a free port, with an in-memory bucket (tests/gcs_emulator.py, the
    helper a user runs by hand: it adds the generation headers orbax needs); yields its URL."""
    server, url = gcs_emulator.start(port=0, bucket=BUCKET)
    yield url
    server.stop()


def _env(url: str, **extra: str) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=ROOT, **gcs_emulator.environment(url), **extra)


def _main(url, shared, local, *flags: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """The digits smoke run on gs://bucket/run; the session's tfds data and XLA cache (local)."""
    command = main_command(
        shared,
        f"gs://{BUCKET}/{RUN}",
        f"--config.tensorboard_dir={local / 'tensorboard'}",  # tf.summary: TF's file system.
        f"--config.eval.judge_dir=gs://{BUCKET}/classifiers",
        "--config.checkpoint_every_steps=2",
        "--config.log_every_steps=1",
        *flags,
    )
    # The working directory is a fresh folder, so a path mistaken for a local one shows there.
    return subprocess.Popen(
        command,
        cwd=local,
        env=_env(url, **(env or {})),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _finish(process: subprocess.Popen, code: int = 0, timeout: float = 300) -> str:
    output, _ = process.communicate(timeout=timeout)
    text = output.decode(errors="replace")
    assert process.returncode == code, text[-4000:]
    return text


def _client(url: str):
    return storage.Client(
        project="test", credentials=AnonymousCredentials(), client_options={"api_endpoint": url}
    )


def _names(client) -> list[str]:
    return sorted(blob.name for blob in client.list_blobs(BUCKET))


def _saved_steps(client, directory: str = "checkpoints") -> list[int]:
    """The committed steps: <step>/commit_success.txt, written last. Each item of a step has a
    marker of its own (<step>/meta/commit_success.txt), written before the step commits."""
    prefix = f"{RUN}/{directory}/"
    steps = {
        int(name[len(prefix) :].split("/")[0])
        for name in _names(client)
        if name.startswith(prefix) and name[len(prefix) :].count("/") == 1
        if name.endswith("/commit_success.txt")
    }
    return sorted(steps)


def test_train_sigterm_resume_eval_sample_on_a_gs_workdir(emulator, digits_shared, tmp_path):
    client, local = _client(emulator), tmp_path
    timings = {}

    # Train until the first checkpoint is in the bucket, then SIGTERM: a checkpoint, an exit.
    start = time.perf_counter()
    process = _main(emulator, digits_shared, local, "--config.num_train_steps=1000")
    try:
        deadline = time.time() + 600  # Generous: a loaded CI machine compiles slowly.
        while 2 not in _saved_steps(client):
            assert process.poll() is None, process.communicate()[0].decode()[-4000:]
            assert time.time() < deadline, "no checkpoint reached the bucket"
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        output = _finish(process, PREEMPTED)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "SIGTERM" in output
    assert f"Wrote the labelled subset to gs://{BUCKET}/{RUN}/labeled_subset.json" in output
    step = max(_saved_steps(client))  # The SIGTERM's save (a periodic one may precede it).
    assert step > 2
    timings["train + SIGTERM"] = time.perf_counter() - start

    # Resume from the bucket's checkpoint, with the bucket's labelled subset and classifier.
    start = time.perf_counter()
    final = step + 2
    output = _finish(
        _main(
            emulator,
            digits_shared,
            local,
            f"--config.num_train_steps={final}",
            "--config.eval_every_steps=1",
        )
    )
    assert f"Resumed from step {step} in gs://{BUCKET}/{RUN}" in output
    assert f"Read the labelled subset (100 examples) from gs://{BUCKET}/{RUN}/" in output
    assert f"Judge (independent classifier) from gs://{BUCKET}/classifiers/" in output
    assert "Training the judge" not in output
    timings["resume"] = time.perf_counter() - start

    start = time.perf_counter()
    _finish(_main(emulator, digits_shared, local, "--mode=eval"))
    timings["eval"] = time.perf_counter() - start
    start = time.perf_counter()
    _finish(_main(emulator, digits_shared, local, "--mode=sample", "--config.sample.per_value=2"))
    timings["sample"] = time.perf_counter() - start

    names = _names(client)
    print(f"\nBucket {BUCKET} after the runs ({len(names)} objects):\n  " + "\n  ".join(names))
    print("Seconds per run:", {k: round(v, 1) for k, v in timings.items()})
    in_run = {name[len(RUN) + 1 :] for name in names if name.startswith(f"{RUN}/")}
    for expected in (
        "config.json",
        "labeled_subset.json",
        "eval_history.jsonl",
        f"eval_{final}.json",
        f"checkpoints/{final}/commit_success.txt",
        f"checkpoints/{final}/state/manifest.ocdbt",
        "samples/samples.npz",
        "samples/digit.png",
        "samples/traversal_digit.png",
        "samples/traversal_c_us_0.png",
        "samples/traversal_c_us_1.png",
    ):
        assert expected in in_run, f"{expected} missing from gs://{BUCKET}/{RUN}: {names}"
    saved = _saved_steps(client)
    assert len(saved) == 2 and saved[-1] == final and 2 not in saved  # Pruned to the last 2.
    assert _saved_steps(client, "checkpoints_best")[0] in (final - 1, final)
    assert any(n.startswith("classifiers/") and n.endswith("/classifier.json") for n in names)
    assert any(n.startswith("classifiers/") and n.endswith("/variables.msgpack") for n in names)

    # What was written reads back: eval history (appended on the bucket), the eval, samples.
    bucket = client.bucket(BUCKET)
    history = bucket.blob(f"{RUN}/eval_history.jsonl").download_as_text().splitlines()
    assert [json.loads(line)["step"] for line in history] == [final - 1, final]
    assert json.loads(bucket.blob(f"{RUN}/eval_{final}.json").download_as_text())["step"] == final
    samples = np.load(io.BytesIO(bucket.blob(f"{RUN}/samples/samples.npz").download_as_bytes()))
    assert samples["images"].shape == (20, 28, 28, 1)
    png = bucket.blob(f"{RUN}/samples/digit.png").download_as_bytes()
    assert png.startswith(b"\x89PNG")

    # TensorBoard events went to the local folder; nothing went to a local "gs:" folder.
    assert any("tfevents" in f for f in os.listdir(local / "tensorboard"))
    assert not os.path.exists(local / "gs:") and not os.path.exists(os.path.join(ROOT, "gs:"))


def _fatal(output: str) -> str:
    """The run's one FATAL line; no traceback anywhere in its output."""
    lines = [line for line in output.splitlines() if line.startswith("FATAL")]
    assert len(lines) == 1 and "Traceback" not in output, output[-4000:]
    return lines[0]


def test_a_storage_outage_is_one_line_and_exit_3_and_a_rerun_resumes(digits_shared, tmp_path):
    """The bucket stops answering after the first checkpoint: the run exits 3 with one line
    (a bounded wait: the save's time limit, here 20 s, or gcsfs's retries, ~35 s), never a
    hang; a rerun while it is still away says so in one line at start; once it is back, a
    rerun resumes from what was saved before."""
    objects, local = tmp_path / "objects", tmp_path / "local"
    local.mkdir()
    server, url = gcs_emulator.start(port=0, bucket=BUCKET, data_dir=str(objects))
    port, client = int(url.rsplit(":", 1)[1]), _client(url)
    env = {"SSINFOGAN_SAVE_TIMEOUT_S": "20"}
    process = _main(url, digits_shared, local, "--config.num_train_steps=1000", env=env)
    try:
        deadline = time.time() + 600
        while 2 not in _saved_steps(client):
            assert process.poll() is None, process.communicate()[0].decode()[-4000:]
            assert time.time() < deadline, "no checkpoint reached the bucket"
            time.sleep(0.2)
        before, saved = _names(client), _saved_steps(client)
        server.stop()
        stopped = time.time()
        output = _finish(process, 3, timeout=300)  # A hang guard: the bound is far below.
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    line = _fatal(output)
    assert line.startswith("FATAL storage unreachable: saving step "), line
    assert f"once gs://{BUCKET}/{RUN} can be reached: it resumes" in line, line
    timings = {"outage -> exit": time.time() - stopped}

    # Still away at start: one line too (gcsfs's retries, then the exit).
    start = time.time()
    output = _finish(_main(url, digits_shared, local, "--config.num_train_steps=1000"), 3)
    line = _fatal(output)
    assert line.startswith("FATAL storage unreachable: Cannot connect to host 127.0.0.1:"), line
    timings["unreachable at start -> exit"] = time.time() - start
    print("Seconds:", {k: round(v, 1) for k, v in timings.items()})

    # Back: nothing of before was lost, and a rerun resumes from the last intact checkpoint.
    server, url = gcs_emulator.start(port=port, bucket=BUCKET, data_dir=str(objects))
    try:
        assert set(before) <= set(_names(client)) and _saved_steps(client) == saved
        output = _finish(
            _main(url, digits_shared, local, f"--config.num_train_steps={saved[-1] + 1}")
        )
        resumed = f"Resumed from step {saved[-1]} in gs://{BUCKET}/{RUN}"
        assert resumed in output, "\n".join([*_names(client), output])
        assert _saved_steps(client)[-1] == saved[-1] + 1
    finally:
        server.stop()


def test_the_storage_clients_reports_of_an_outage_are_dropped_and_others_kept():
    """What orbax, gcsfs and fsspec log when storage goes away (the very records met when the
    emulator stopped during a first save) is left to main's one line; the same loggers' other
    reports, and anyone's report of another error, still show."""
    import logging

    import aiohttp

    from ssinfogan_jax import reporting

    refused = aiohttp.ClientConnectorError(
        aiohttp.client_reqrep.ConnectionKey("127.0.0.1", 1, False, True, None, None, None),
        OSError(111, "Connect call failed ('127.0.0.1', 1)"),
    )

    def record(package, message, args=(), error=None):
        path = f"/site-packages/{package}/module.py"
        exc_info = (type(error), error, None) if error else None
        return logging.LogRecord(package, logging.ERROR, path, 1, message, args, exc_info)

    read = "Failed to read Metadata file: %s, error: %s"
    dropped = [
        record("orbax", read, ("gs://b/run/checkpoints/2/_CHECKPOINT_METADATA", refused)),
        record("orbax", "Failed to save", error=ValueError("anything in a save thread")),
        record("fsspec", "Consumer caught an error.", error=refused),
        record("gcsfs", "_request out of retries", error=TimeoutError("timed out")),
    ]
    kept = [
        record("orbax", read, ("gs://b/run/checkpoints/2/_CHECKPOINT_METADATA", KeyError("x"))),
        record("orbax", "Metadata file does not exist: %s", ("gs://b/x",)),
        record("fsspec", "Consumer caught an error.", error=ValueError("a bad range")),
        record("ssinfogan_jax", "saving failed", error=refused),
    ]
    assert [reporting.drop_storage_fault_reports(r) for r in dropped] == [False] * 4
    assert [reporting.drop_storage_fault_reports(r) for r in kept] == [True] * 4


# Saves twice and restores the latest, with a pytree of 200 arrays (a train state has hundreds):
# their writes update orbax's OCDBT manifest concurrently, with conditional writes that need
# the generation headers. Without the fix, such saves failed with `Malformed StorageGeneration`
# in some tries here and not in others (a race: more often under load), so the headers
# themselves are checked below.
_ORBAX_ROUND_TRIP = """
import numpy as np, orbax.checkpoint as ocp
manager = ocp.CheckpointManager(
    "gs://bucket/by_hand", options=ocp.CheckpointManagerOptions(max_to_keep=1)
)
for step in (1, 2):
    tree = {"w": np.arange(6.0).reshape(2, 3) * step}
    tree.update({f"b{i}": np.full((4,), float(i)) for i in range(199)})
    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(tree)))
manager.wait_until_finished()
restored = manager.restore(2, args=ocp.args.Composite(state=ocp.args.StandardRestore(tree)))
assert all((restored["state"][k] == v).all() for k, v in tree.items())
print("steps", manager.all_steps(), "w", restored["state"]["w"].ravel().tolist())
"""


def test_the_emulator_run_by_hand_prints_what_to_export_and_takes_orbax_saves(tmp_path):
    """`python tests/gcs_emulator.py` as docs/multi_host_tpu.md says: its `export` lines,
    sourced in another process, let orbax save to and restore from gs://bucket; SIGTERM stops
    it with exit 0."""
    helper = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "tests", "gcs_emulator.py"), "--port=0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        exports = [helper.stdout.readline() for _ in range(5)]
        variables = dict(line.removeprefix("export ").strip().split("=", 1) for line in exports)
        url = variables["STORAGE_EMULATOR_HOST"]
        assert variables == gcs_emulator.environment(url)
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
        child = subprocess.run(
            [sys.executable, "-c", _ORBAX_ROUND_TRIP],
            cwd=tmp_path,
            env=dict(os.environ, **variables),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert child.returncode == 0, child.stderr[-3000:]
        assert child.stdout.splitlines()[-1] == "steps [2] w [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]"
        names = sorted(b.name for b in _client(url).list_blobs(BUCKET))
        assert "by_hand/2/state/manifest.ocdbt" in names
        # The fix itself, on both download routes: the bytes come with the object's generation.
        blob = _client(url).bucket(BUCKET).get_blob("by_hand/2/state/manifest.ocdbt")
        quoted = urllib.parse.quote(blob.name, safe="")
        for route in ("storage/v1", "download/storage/v1"):
            with urllib.request.urlopen(f"{url}/{route}/b/{BUCKET}/o/{quoted}?alt=media") as r:
                assert r.headers["x-goog-generation"] == str(blob.generation), route
                assert r.headers["x-goog-metageneration"] == str(blob.metageneration), route
        assert not any(n.startswith("by_hand/1/") for n in names)  # Pruned (max_to_keep=1).
        assert not os.path.exists(tmp_path / "gs:")
    finally:
        helper.send_signal(signal.SIGTERM)
        _, err = helper.communicate(timeout=30)
    assert helper.returncode == 0, err
    assert f"serving gs://{BUCKET} at {url}" in err


def test_the_emulator_on_a_port_in_use_is_one_line_and_exit_2():
    server, url = gcs_emulator.start(port=0, bucket=BUCKET)
    try:
        port = url.rsplit(":", 1)[1]
        result = subprocess.run(
            [sys.executable, os.path.join(ROOT, "tests", "gcs_emulator.py"), f"--port={port}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        server.stop()
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"gcs_emulator: cannot listen on 127.0.0.1:{port}: ")
    assert line.endswith("pick another --port (0: any free one)")
