"""A local GCS emulator that orbax can save to: for your own tests of a gs:// work dir.

    python tests/gcs_emulator.py [--port=9023] [--bucket=bucket] [--data-dir=DIR]

Starts PyPI's gcp-storage-emulator (`pip install -e '.[test]'`) with one fix, prints the
environment variables that point the project's storage clients at it (`export ...` lines on
stdout, so `... > env.sh` then `source env.sh` in another shell works), and serves until Ctrl-C
or SIGTERM. Then run, in a shell with those variables:

    python -m ssinfogan_jax.main --config=configs/digits.py:runlocal --workdir=gs://bucket/run \
        --config.tensorboard_dir=/tmp/tb

The fix: real GCS sends an object's generation with its bytes (`x-goog-generation`); the emulator
does not, and tensorstore needs it for the conditional writes of orbax's OCDBT manifests. Without
it, saving a train state fails with `Malformed StorageGeneration` (not every time: a race).

What cannot reach the emulator: TensorFlow's own GCS file system (its endpoint is compiled in),
i.e. tf.summary (keep `config.tensorboard_dir` local) and tfds reading gs:// (keep
`config.data.data_dir` local). Objects live in memory unless --data-dir is given.
tests/test_gcs_workdir.py uses this module for its fixture.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import threading

from gcp_storage_emulator import server as emulator_server
from gcp_storage_emulator.handlers import objects as emulator_objects

_original_download = emulator_objects.download


def _download_with_generation(request, response, storage, *args, **kwargs):
    """The emulator's download, plus the object's generation headers that real GCS sends."""
    try:
        obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
        response["x-goog-generation"] = str(obj["generation"])
        response["x-goog-metageneration"] = str(obj["metageneration"])
    except Exception:  # Not found: the emulator's own handler answers 404.
        pass
    return _original_download(request, response, storage, *args, **kwargs)


def patch_emulator() -> None:
    """Makes every download route of the emulator send the generation headers (idempotent).

    `objects.get` (the JSON API's `alt=media`, what tensorstore uses) calls the module's
    `download`; the routing table holds its own references for the other download routes.
    """
    emulator_objects.download = _download_with_generation
    for _, handlers in emulator_server.HANDLERS:
        for method, handler in handlers.items():
            if handler is _original_download:
                handlers[method] = _download_with_generation


def environment(url: str) -> dict[str, str]:
    """The variables that send this project's gs:// reads and writes to the emulator at `url`."""
    return {
        # google-cloud-storage and gcsfs (etils epath's backend for gs:// once EPATH_USE_TF is
        # false; otherwise epath takes TensorFlow's file system, which cannot reach the emulator).
        "STORAGE_EMULATOR_HOST": url,
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",  # Read at import; else lookups stall 60 s.
        "EPATH_USE_TF": "false",
        # tensorstore (orbax's array writer), without a credential lookup.
        "TENSORSTORE_GCS_HTTP_URL": url,
        "GOOGLE_AUTH_TOKEN_FOR_TESTING": "dummy",
    }


def start(
    port: int = 0, bucket: str = "bucket", host: str = "127.0.0.1", data_dir: str | None = None
) -> tuple[emulator_server.Server, str]:
    """Starts the patched emulator with `bucket` made; returns (server, its URL). Port 0 picks
    a free one. Objects are in memory unless `data_dir` is given (then a restart on the same
    port and folder serves them again). Stop it with `server.stop()`."""
    patch_emulator()
    # The server binds in its own thread, where a failure would leave `start` waiting forever:
    # bind here first, so a port in use is an OSError here.
    with socket.socket() as probe:
        # As the server binds (http.server): a restart on the port of a stopped emulator,
        # whose closed connections wait out TCP's TIME_WAIT, is no conflict.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
        port = probe.getsockname()[1]
    server = emulator_server.create_server(
        host, port, in_memory=data_dir is None, default_bucket=bucket, data_dir=data_dir
    )
    server.start()
    return server, f"http://{host}:{port}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9023, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--bucket", default="bucket", help="the bucket to create")
    parser.add_argument("--data-dir", default=None, help="keep objects here (default: memory)")
    args = parser.parse_args(argv)
    try:
        server, url = start(args.port, args.bucket, args.host, args.data_dir)
    except OSError as e:
        print(
            f"gcs_emulator: cannot listen on {args.host}:{args.port}: {e.strerror}; "
            "pick another --port (0: any free one)",
            file=sys.stderr,
        )
        return 2
    for name, value in environment(url).items():
        print(f"export {name}={value}")
    sys.stdout.flush()
    print(
        f"gcs_emulator: serving gs://{args.bucket} at {url} (with the generation-header fix); "
        "export the variables above where your code runs; Ctrl-C stops it",
        file=sys.stderr,
    )
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
