"""The launch scripts as a user runs them: they parse, lint clean, and print exact commands."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ["tpu_vm.sh", "multi_gpu.sh", "local_two_processes.sh"]


def _run(script: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", os.path.join(ROOT, "launch", script), *args],
        capture_output=True,
        text=True,
        check=check,
        timeout=30,
    )


def _lines(script: str, *args: str) -> list[str]:
    return _run(script, "--dry-run", *args).stdout.splitlines()


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_parse(script):
    subprocess.run(["bash", "-n", os.path.join(ROOT, "launch", script)], check=True)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_pass_shellcheck(script):
    result = subprocess.run(  # -x: follow the shared launch/lib.sh they source.
        ["shellcheck", "-x", os.path.join("launch", script)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout


def test_tpu_vm_dry_run():
    lines = _lines(
        "tpu_vm.sh",
        "--name=ss-v4-32",
        "--zone=us-central2-b",
        "--accelerator-type=v4-32",
        "--config=configs/celeba.py",
        "--workdir=gs://bucket/celeba1",
        "--",
        "--config.batch_size=256",
    )
    tpu = "gcloud compute tpus tpu-vm"
    assert lines == [
        f"{tpu} describe ss-v4-32 --zone=us-central2-b",
        "# only if the describe above fails:",
        f"{tpu} create ss-v4-32 --zone=us-central2-b --accelerator-type=v4-32 "
        "--version=tpu-ubuntu2204-base",
        f"git -C {ROOT} archive --format=tar.gz --output=/tmp/ssinfogan_jax-src.tar.gz HEAD",
        f"{tpu} scp /tmp/ssinfogan_jax-src.tar.gz ss-v4-32:ssinfogan_jax-src.tar.gz "
        "--zone=us-central2-b --worker=all",
        f"{tpu} ssh ss-v4-32 --zone=us-central2-b --worker=all '--command=rm -rf ~/ssinfogan_jax"
        " && mkdir -p ~/ssinfogan_jax && tar -xzf ~/ssinfogan_jax-src.tar.gz -C ~/ssinfogan_jax"
        ' && cd ~/ssinfogan_jax && python3 -m pip install -q -U "jax[tpu]" -e .\'',
        f"{tpu} ssh ss-v4-32 --zone=us-central2-b --worker=all '--command=cd ~/ssinfogan_jax && "
        "python3 -m ssinfogan_jax.main --config=configs/celeba.py --workdir=gs://bucket/celeba1 "
        "--mode=train --config.batch_size=256'",
    ]


def test_tpu_vm_needs_a_gcs_workdir():
    result = _run("tpu_vm.sh", "--dry-run", "--name=a", "--zone=b", "--workdir=/tmp/x", check=False)
    assert result.returncode == 2
    assert "gs://" in result.stderr


def test_multi_gpu_dry_run_one_host_and_multi_host():
    assert _lines("multi_gpu.sh", "--workdir=/tmp/run", "--gpus=0,1") == [
        "env CUDA_VISIBLE_DEVICES=0,1 python3 -m ssinfogan_jax.main --config=configs/mnist.py "
        "--workdir=/tmp/run --mode=train"
    ]
    assert _lines(
        "multi_gpu.sh",
        "--install",
        "--config=configs/celeba.py",
        "--workdir=/shared/run",
        "--coordinator=10.0.0.1:12345",
        "--num-processes=2",
        "--process-id=1",
    ) == [
        f"python3 -m pip install -U 'jax[cuda12]' -e {ROOT}",
        "python3 -m ssinfogan_jax.main --config=configs/celeba.py --workdir=/shared/run "
        "--mode=train --coordinator_address=10.0.0.1:12345 --num_processes=2 --process_id=1",
    ]
    result = _run("multi_gpu.sh", "--dry-run", "--workdir=/x", "--coordinator=a:1", check=False)
    assert result.returncode == 2
    assert "give all of" in result.stderr


def test_local_two_processes_dry_run():
    lines = _lines(
        "local_two_processes.sh",
        "--workdir=/tmp/two",
        "--devices-per-process=2",
        "--port=23456",
        "--",
        "--config.num_train_steps=3",
    )
    threads = max(os.cpu_count() or 1, 4)
    expected = (
        "env JAX_PLATFORMS=cpu XLA_FLAGS=--xla_force_host_platform_device_count=2 "
        f"PJRT_NPROC={threads} python3 -m "
        "ssinfogan_jax.main --config=configs/mnist.py --workdir=/tmp/two --mode=train "
        "--coordinator_address=127.0.0.1:23456 --num_processes=2 --process_id={} "
        "--config.num_train_steps=3"
    )
    assert lines == [expected.format(0), expected.format(1)]
