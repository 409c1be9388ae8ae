"""config.data.download: tfds's own download when a set is not prepared, and its failures.

Nothing here reaches the network: the download is either replaced by a recorder, or runs for
real down to tfds's HTTP call, which is replaced by a failing one.
"""

import errno
import gzip
import io
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import requests
from tensorflow_datasets.core.download import downloader

from ssinfogan_jax import default_config as default
from ssinfogan_jax import experiment
from ssinfogan_jax.data import builders
from ssinfogan_jax.data.tf_setup import tfds

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# tfds's real download step, taken before conftest's guard replaces it in each test.
REAL_DOWNLOAD = tfds.download.DownloadManager._download


@pytest.fixture
def recorded_downloads(monkeypatch):
    """tfds's download_and_prepare replaced by a recorder: [(builder, download_config)]."""
    calls = []

    def record(self, *, download_config=None, **kwargs):
        calls.append((self, download_config))

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", record)
    monkeypatch.setattr(builders, "_unreachable_hosts", lambda name: {})  # No probe either.
    return calls


def _mnist_config(data_dir, **data):
    config = default.get_config()
    config.data.data_dir = str(data_dir)
    config.data.update(data)
    return config


def test_auto_downloads_with_tfds_into_the_data_dir(tmp_path, recorded_downloads, caplog):
    config = _mnist_config(tmp_path / "tfds")
    assert config.data.download == "auto"  # The default.
    assert (
        experiment.data_source(config).problems() == []
    )  # Not prepared, but it may be downloaded.
    caplog.set_level("INFO")
    builders.ensure_prepared("mnist", config.data.data_dir, "", config.data.download)
    ((builder, download_config),) = recorded_downloads
    assert builder.name == "mnist"
    assert os.fspath(builder.data_dir).startswith(str(tmp_path / "tfds" / "mnist"))
    assert download_config.try_download_gcs is False  # The original files, not a GCS copy.
    assert download_config.manual_dir is None
    (line,) = [
        r.getMessage() for r in caplog.records if "downloading it with tfds" in r.getMessage()
    ]
    assert line.startswith(f"mnist is not prepared in {tmp_path / 'tfds'}: downloading")


def test_never_fails_fast_and_says_how_to_prepare_offline(tmp_path, recorded_downloads):
    config = _mnist_config(tmp_path / "tfds", download="never")
    (problem,) = experiment.data_source(config).problems()
    with pytest.raises(builders.DataNotFoundError) as error:
        experiment.data_source(config).load_float("test")
    assert str(error.value) == problem
    assert problem.startswith(
        f"config.data.data_dir: mnist is not prepared in {tmp_path / 'tfds'} and "
        "config.data.download is 'never'; place train-images-idx3-ubyte[.gz]"
    )
    assert "python -m ssinfogan_jax.prepare_data --dataset=mnist" in problem
    assert recorded_downloads == []


def test_a_raw_dir_wins_over_a_download(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    raw.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 5), ("t10k", 3)):
        with gzip.open(raw / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
            f.write(np.array([0x803, n, 28, 28], ">u4").tobytes())
            f.write(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8).tobytes())
        with gzip.open(raw / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(np.array([0x801, n], ">u4").tobytes() + bytes(range(n)))

    def refuse(name, data_dir):
        pytest.fail(f"downloaded {name} although a raw_dir was given")

    monkeypatch.setattr(builders, "download_and_prepare", refuse)
    config = _mnist_config(tmp_path / "tfds", raw_dir=str(raw), download="auto")
    images, labels = experiment.data_source(config).load_float("test")
    assert images.shape == (3, 28, 28, 1)
    assert sorted(labels["label"]) == [0, 1, 2]  # (tfds stores them shuffled by key.)


def _no_network(monkeypatch) -> list:
    """The socket layer fails as on a machine without network (no name resolves, no route):
    the only thing patched; everything above it runs for real. Returns the hosts asked for."""
    hosts = []

    def no_name(host, *args, **kwargs):
        hosts.append(host)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    def no_route(self, address):
        hosts.append(address[0])
        raise OSError(errno.ENETUNREACH, "Network is unreachable")

    monkeypatch.setattr(socket, "getaddrinfo", no_name)
    monkeypatch.setattr(socket.socket, "connect", no_route)
    return hosts


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_an_unreachable_host_fails_fast_in_one_line_and_leaves_nothing(tmp_path, monkeypatch, name):
    """Issue 33: offline, tfds retried for 214-228 s, printed ~55 retry warnings, cut its
    line mid-word and left empty folders and .tmp files in the data dir."""
    monkeypatch.setattr(tfds.download.DownloadManager, "_download", REAL_DOWNLOAD)
    hosts = _no_network(monkeypatch)
    data_dir = tmp_path / "tfds"
    data_dir.mkdir()
    (data_dir / "other_set").mkdir()  # Someone else's: stays.
    config = _mnist_config(data_dir, name=name)
    start = time.perf_counter()
    with pytest.raises(builders.DataNotFoundError) as error:
        experiment.data_source(config).load_float("test")
    assert time.perf_counter() - start < 20
    host = {"mnist": "storage.googleapis.com", "cifar10": "www.cs.toronto.edu"}[name]
    assert set(hosts) == {host}
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(
        f"config.data.download: cannot download {name} into {data_dir}: its host does not "
        f"answer ({host}: Temporary failure in name resolution); check the network (or proxy) "
        "and rerun, or prepare it offline: "
    )
    assert message.endswith("config.data.download='never' to stop instead of downloading")
    assert f"--dataset={name} --raw_dir=/path/to/raw --data_dir={data_dir}" in message
    left = sorted(str(p.relative_to(data_dir)) for p in data_dir.rglob("*"))
    assert left == ["other_set"]


def test_a_download_that_fails_midway_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    """The host answers the probe, then tfds's HTTP request fails: its folders and temporary
    files go, and the line is whole (cut at a word where long)."""
    monkeypatch.setattr(tfds.download.DownloadManager, "_download", REAL_DOWNLOAD)
    monkeypatch.setattr(builders, "_unreachable_hosts", lambda name: {})
    urls = []

    def fails(url, **kwargs):
        urls.append(url)
        raise requests.exceptions.ConnectionError(
            f"HTTPSConnectionPool(host='storage.googleapis.com', port=443): Max retries "
            f"exceeded with url: {url} " + "(Caused by NameResolutionError: no address known) " * 9
        )

    monkeypatch.setattr(downloader, "_open_with_requests", fails)
    data_dir = tmp_path / "tfds"
    config = _mnist_config(data_dir)
    with pytest.raises(builders.DataNotFoundError) as error:
        experiment.data_source(config).load_float("test")
    assert urls and all(u.startswith("https://") for u in urls)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(
        f"config.data.download: downloading mnist with tfds into {data_dir} failed "
        "(ConnectionError: HTTPSConnectionPool(host='storage.googleapis.com'"
    )
    # Cut at a word where long (issue 33: "kno);"), and said so.
    reason = re.search(r"\(ConnectionError: (.*?)\); check the network", message).group(1)
    assert reason.endswith(" ...") and len(reason) <= 304
    assert ("(Caused by NameResolutionError: no address known) " * 9).startswith(
        reason[reason.index("(Caused") : -len(" ...")] + " "
    )
    assert f"--dataset=mnist --raw_dir=/path/to/raw --data_dir={data_dir}" in message
    assert not builders.is_prepared("mnist", str(data_dir))
    # tfds's folders and temporary files are gone; prepare_once's lock file stays (it is
    # taken before the download starts, and kept between attempts).
    left = sorted(str(p.relative_to(data_dir)) for p in data_dir.rglob("*"))
    assert left == ["mnist", "mnist/.prepare.lock"]


_INTERRUPTED_PREPARE = """
import sys, time
from ssinfogan_jax.data import builders

examples = builders.Digits._generate_examples

def slow(self, split):
    for i, example in enumerate(examples(self, split)):
        if i == 100:
            open(sys.argv[2], "w").close()  # Half written: the test kills us now.
            time.sleep(600)
        yield example

builders.Digits._generate_examples = slow
builders.prepare("digits", "", sys.argv[1])
"""


def test_an_interrupted_preparation_is_never_taken_as_prepared(tmp_path):
    """A preparation killed half-way (SIGKILL: no clean-up) leaves tfds's `incomplete.*`
    folder; the set is not prepared, and the next use prepares it afresh."""
    data_dir, marker = tmp_path / "tfds", tmp_path / "half_written"
    process = subprocess.Popen(
        [sys.executable, "-c", _INTERRUPTED_PREPARE, str(data_dir), str(marker)], cwd=ROOT
    )
    deadline = time.time() + 120
    while not marker.exists():
        assert process.poll() is None and time.time() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    left = os.listdir(data_dir / "digits")
    assert len(left) == 1 and left[0].startswith("incomplete.") and left[0].endswith("_1.0.0")
    assert not builders.is_prepared("digits", str(data_dir))

    config = default.get_config()
    config.data.name, config.data.data_dir = "digits", str(data_dir)
    assert experiment.data_source(config).problems() == []
    images, _ = experiment.data_source(config).load_float("test")
    assert len(images) == 359 and builders.is_prepared("digits", str(data_dir))


def test_config_check_names_the_download_choices():
    config = default.get_config()
    config.data.download = "always"
    (problem,) = experiment.find_problems(config)
    assert problem == "config.data.download: 'always', expected one of auto, never"


# ----------------------------------------------------------------------------------------------
# celeb_a from Google Drive (which refuses it), and the other sets from their own hosts.

VIRUS_SCAN_PAGE = (
    b"<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>"
    b'<form id="download-form" action="https://drive.usercontent.google.com/download" '
    b'method="get"><input type="hidden" name="id" value="0B7EVK8r0v71pZjFTYXZWM3FlRnM">'
    b'<input type="hidden" name="export" value="download"><input type="hidden" '
    b'name="confirm" value="t"></form></body></html>'
)
QUOTA_PAGE = (
    b"<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head><body>"
    b"Too many users have viewed or downloaded this file recently." + b" " * 2000 + b"</html>"
)


def _drive_answers(monkeypatch, answer):
    """requests' transport (the network call itself) replaced: each request is answered by
    `answer(url)` -> (headers, body), status 200. Returns the URLs requested."""
    monkeypatch.setattr(tfds.download.DownloadManager, "_download", REAL_DOWNLOAD)
    urls = []

    def send(self, request, **kwargs):
        urls.append(request.url)
        headers, body = answer(request.url)
        response = requests.Response()
        response.status_code, response.url, response.request = 200, request.url, request
        response.headers = requests.structures.CaseInsensitiveDict(headers)
        response.raw = io.BytesIO(body)
        return response

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", send)
    monkeypatch.setattr(builders, "_unreachable_hosts", lambda name: {})  # Drive answers.
    return urls


def _celeba_refused(data_dir) -> str:
    with pytest.raises(builders.DataNotFoundError) as error:
        builders.ensure_prepared(
            "celeb_a", str(data_dir), "", "auto", process_index=0, process_count=1
        )
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(
        f"config.data.download: tfds could not download celeb_a from Google Drive into {data_dir} ("
    )
    assert message.endswith(
        "Drive has refused this download for years (tensorflow/datasets #1482, #5342). Fetch "
        "img_align_celeba.zip, list_attr_celeba.txt, list_eval_partition.txt from "
        "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html into a folder and run `python -m "
        f"ssinfogan_jax.prepare_data --dataset=celeb_a --raw_dir=DIR --data_dir={data_dir}`, or "
        "set config.data.raw_dir to that folder"
    )
    assert not builders.is_prepared("celeb_a", str(data_dir))
    return message


def test_celeba_drive_sending_an_html_page_for_the_zip_is_one_line(tmp_path, monkeypatch):
    """Drive answers every file with its quota page, named as the file: tfds's checksum check
    fails on the first one to arrive, and the line says what came instead of what."""
    urls = _drive_answers(
        monkeypatch,
        lambda url: ({"Content-Disposition": 'attachment; filename="file"'}, QUOTA_PAGE),
    )
    message = _celeba_refused(tmp_path / "tfds")
    wanted = {
        "img_align_celeba.zip": "1.34 GiB",
        "list_attr_celeba.txt": "25.48 MiB",
        "list_eval_partition.txt": "2.70 MiB",
        "list_landmarks_align_celeba.txt": "11.59 MiB",
        "identity_CelebA.txt": "3.27 MiB",
    }
    match = re.search(
        r"\(Drive sent an HTML page of ([\d.]+ KiB) where (\S+) \(([^)]+)\) should", message
    )
    assert match, message
    assert match[1] == f"{len(QUOTA_PAGE) / 1024:.2f} KiB" and wanted[match[2]] == match[3]
    assert urls and all(u.startswith("https://drive.google.com/uc?export=download") for u in urls)
    assert len(urls) == len(set(urls)) <= 5  # One request per file: no retries.


def test_celeba_drive_confirmation_page_is_one_line(tmp_path, monkeypatch):
    """Drive's virus-scan page instead of the file (no attachment): tfds follows its form
    (with bs4 installed) to another HTML page, or stops for want of bs4; one line either way."""
    urls = _drive_answers(
        monkeypatch,
        lambda url: ({}, VIRUS_SCAN_PAGE if "drive.google.com" in url else QUOTA_PAGE),
    )
    message = _celeba_refused(tmp_path / "tfds")
    assert (
        "Drive answered with a confirmation page, which tfds follows only with bs4" in message
        or "Drive sent an HTML page of" in message
    ), message
    assert len(urls) <= 10  # At most the page and its form's target per file.


@pytest.mark.parametrize("name", ["svhn_cropped", "cifar10"])
def test_auto_still_downloads_svhn_and_cifar10_with_tfds(tmp_path, recorded_downloads, name):
    builders.ensure_prepared(
        name, str(tmp_path / "tfds"), "", "auto", process_index=0, process_count=1
    )
    ((builder, download_config),) = recorded_downloads
    assert type(builder) is tfds.builder_cls(name)  # tfds's own, fetching from its hosts.
    assert download_config.manual_dir is None and download_config.try_download_gcs is False
