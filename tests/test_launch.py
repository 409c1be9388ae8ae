"""The launch scripts as a user runs them: they parse, lint clean, and print exact commands."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ["tpu_vm.sh", "multi_gpu.sh", "local_two_processes.sh"]
TPU = "gcloud compute tpus tpu-vm"


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


def _install_command(extra: str) -> str:
    """The install command that tpu_vm.sh sends to each worker (built in launch/lib.sh)."""
    lib = os.path.join(ROOT, "launch", "lib.sh")
    return subprocess.run(
        ["bash", "-c", f'source "{lib}" && install_command {extra}'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def _remote_command(line: str) -> str:
    """The --command=... string of a printed `gcloud ... ssh` line, as the worker receives it."""
    (command,) = [a for a in shlex.split(line) if a.startswith("--command=")]
    return command.removeprefix("--command=")


def test_tpu_vm_dry_run():
    lines = _lines(
        "tpu_vm.sh",
        "--name=ss-v4-32",
        "--zone=us-central2-b",
        "--accelerator-type=v4-32",
        "--config=configs/celeba.py",
        "--workdir=gs://bucket/celeba1",
        "--spot",
        "--",
        "--config.batch_size=256",
    )
    where = "ss-v4-32 --zone=us-central2-b"
    assert lines[:12] == [
        f"{TPU} describe {where} '--format=value(state)'",
        "# if it does not exist:",
        f"{TPU} create {where} --accelerator-type=v4-32 --version=tpu-ubuntu2204-base --spot",
        "# if it is PREEMPTED: delete it, then the create above:",
        f"{TPU} delete {where} --quiet",
        "# if it is STOPPED:",
        f"{TPU} start {where}",
        "# if it is READY: reuse it; in any other state: stop, saying what to run",
        f"git -C {ROOT} archive --format=tar.gz --output=/tmp/ssinfogan_jax-src.tar.gz HEAD",
        f"{TPU} scp /tmp/ssinfogan_jax-src.tar.gz ss-v4-32:ssinfogan_jax-src.tar.gz "
        "--zone=us-central2-b --worker=all",
        lines[10],
        lines[11],
    ]
    setup, train = _remote_command(lines[10]), _remote_command(lines[11])
    assert lines[10].startswith(f"{TPU} ssh {where} --worker=all '--command=")
    # Refuses while a worker still trains, unpacks, then exactly the tested install command.
    assert setup.startswith("if pgrep -f 'ssinfogan_jax[.]main' >/dev/null; then")
    assert setup.endswith(
        "rm -rf ~/ssinfogan_jax && mkdir -p ~/ssinfogan_jax && tar -xzf "
        "~/ssinfogan_jax-src.tar.gz -C ~/ssinfogan_jax && cd ~/ssinfogan_jax && "
        + _install_command("tpu")
    )
    assert "--python 3.11" in setup and "-c constraints.txt -e '.[tpu]'" in setup
    assert lines[11].startswith(f"{TPU} ssh {where} --worker=all '--command=")
    assert train == (
        "mkdir -p ~/ssinfogan_logs && cd ~/ssinfogan_jax && setsid -f nohup bash -c "
        "'~/ssinfogan_venv/bin/python -m ssinfogan_jax.main --config=configs/celeba.py "
        "--workdir=gs://bucket/celeba1 --mode=train --config.batch_size=256; "
        'echo "[tpu_vm.sh] exit code $? at $(date)"\' '
        ">>~/ssinfogan_logs/worker-$(hostname).log 2>&1 </dev/null "
        '&& echo "$(hostname): training started, log ~/ssinfogan_logs/worker-$(hostname).log"'
    )
    assert lines[12:] == [
        "# Training runs detached on every worker. Follow worker 0 (the one that logs progress):",
        f"#   {TPU} ssh {where} --worker=0 '--command=tail -n 100 -f "
        "~/ssinfogan_logs/worker-*.log'",
        "# After a preemption, run the same command again; it resumes from gs://bucket/celeba1.",
    ]


def _stub(path, body: str) -> None:
    with open(path, "w") as f:
        f.write("#!/usr/bin/env bash\n" + body)
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)


def test_tpu_vm_training_command_runs_detached_and_logs_its_exit_code(tmp_path):
    """The worker's training command, run here: returns at once, the run outlives it, the log
    gets the run's output and exit code. The venv's python is a stub that exits 75."""
    lines = _lines("tpu_vm.sh", "--name=a", "--zone=b", "--workdir=gs://c/d", "--", "--x=a b")
    (train,) = [_remote_command(x) for x in lines if "setsid" in x]
    (tmp_path / "ssinfogan_jax").mkdir()
    (tmp_path / "ssinfogan_venv" / "bin").mkdir(parents=True)
    _stub(tmp_path / "ssinfogan_venv" / "bin" / "python", 'sleep 2; echo "args: $*"; exit 75\n')
    env = dict(os.environ, HOME=str(tmp_path))
    start = time.monotonic()
    result = subprocess.run(
        ["bash", "-c", train], env=env, capture_output=True, text=True, timeout=10
    )
    assert time.monotonic() - start < 1.5, "the ssh command must not wait for the training"
    assert result.returncode == 0 and "training started, log" in result.stdout
    (log,) = (tmp_path / "ssinfogan_logs").iterdir()
    assert log.name == f"worker-{socket.gethostname()}.log"
    for _ in range(100):
        if "exit code" in log.read_text():
            break
        time.sleep(0.1)
    text = log.read_text()
    assert "args: -m ssinfogan_jax.main --config=configs/mnist.py --workdir=gs://c/d " in text
    assert "--mode=train --x=a b\n" in text
    assert "[tpu_vm.sh] exit code 75 at " in text


def test_tpu_vm_handles_each_node_state(tmp_path):
    """With a fake gcloud: absent -> create; PREEMPTED -> delete + create; STOPPED -> start;
    READY -> reuse; CREATING -> one line with the command to run again, and nothing else."""
    (tmp_path / "bin").mkdir()
    calls = tmp_path / "calls"
    _stub(
        tmp_path / "bin" / "gcloud",
        f'echo "$*" >>{calls}\n'
        'if [[ "$*" == *describe* ]]; then [[ -n "$STATE" ]] || exit 1; echo "$STATE"; fi\n',
    )
    _stub(tmp_path / "bin" / "git", "exit 0\n")  # no archive of this checkout
    args = ["--name=n", "--zone=z", "--workdir=gs://b/r"]
    for state, verbs in [
        ("", ["create"]),
        ("PREEMPTED", ["delete", "create"]),
        ("STOPPED", ["start"]),
        ("READY", []),
    ]:
        calls.unlink(missing_ok=True)
        env = dict(os.environ, PATH=f"{tmp_path / 'bin'}:{os.environ['PATH']}", STATE=state)
        result = subprocess.run(
            ["bash", os.path.join(ROOT, "launch", "tpu_vm.sh"), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
        called = [line.split()[3] for line in calls.read_text().splitlines()]
        assert called == ["describe", *verbs, "scp", "ssh", "ssh"], state
    calls.unlink()
    env["STATE"] = "CREATING"
    result = subprocess.run(
        ["bash", os.path.join(ROOT, "launch", "tpu_vm.sh"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert len(calls.read_text().splitlines()) == 1  # the describe only
    (line,) = result.stderr.splitlines()
    assert "n is CREATING" in line
    script = os.path.join(ROOT, "launch", "tpu_vm.sh")
    assert line.endswith(f"run again: {script} --name=n --zone=z --workdir=gs://b/r")


def _pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=3).close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_worker_install_command_gives_python_311_and_the_package(tmp_path):
    """Runs the install command that tpu_vm.sh sends to every worker, in a copy of this checkout
    under a fresh HOME (so ~ is tmp_path), and imports the package from the venv it made.

    The accelerator extra is a parameter of the command: the workers get `tpu` (jax[tpu], i.e.
    libtpu); this test uses `cpu`, the same command otherwise. Needs PyPI (uv, the package's
    requirements); uv's and pip's caches are the user's own, so a warm run takes ~7 s (~25 s
    cold here).
    """
    if not _pypi_reachable():
        pytest.skip("PyPI is not reachable")
    checkout = tmp_path / "ssinfogan_jax"
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (f.decode() for f in files)):
        if os.path.isfile(os.path.join(ROOT, name)):  # (a file deleted but not yet committed)
            os.makedirs(checkout / os.path.dirname(name), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, name), checkout / name)
    cache = os.path.join(os.path.expanduser("~"), ".cache")
    env = dict(
        os.environ,
        HOME=str(tmp_path),
        # A python3 with pip first on PATH, as on a TPU VM (there: the image's 3.10).
        PATH=f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}",
        UV_CACHE_DIR=os.environ.get("UV_CACHE_DIR", os.path.join(cache, "uv")),
        PIP_CACHE_DIR=os.environ.get("PIP_CACHE_DIR", os.path.join(cache, "pip")),
    )
    env.pop("VIRTUAL_ENV", None)
    result = subprocess.run(
        ["bash", "-c", _install_command("cpu")],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    python = tmp_path / "ssinfogan_venv" / "bin" / "python"
    elsewhere = tmp_path / "elsewhere"  # not tmp_path: its ssinfogan_jax/ is a namespace package
    elsewhere.mkdir()
    probe = subprocess.run(
        [
            str(python),
            "-c",
            "import sys, ssinfogan_jax, tensorflow_datasets; from ssinfogan_jax import latents;"
            "print(sys.version_info >= (3, 11), ssinfogan_jax.__file__)",
        ],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    assert probe.stdout.split() == ["True", str(checkout / "ssinfogan_jax" / "__init__.py")]


def test_tpu_vm_needs_a_gcs_workdir():
    result = _run("tpu_vm.sh", "--dry-run", "--name=a", "--zone=b", "--workdir=/tmp/x", check=False)
    assert result.returncode == 2
    assert "gs://" in result.stderr


def test_multi_gpu_dry_run_one_host_and_multi_host():
    assert _lines("multi_gpu.sh", "--workdir=/tmp/run", "--gpus=0,1") == [
        "env CUDA_VISIBLE_DEVICES=0,1 python3 -m ssinfogan_jax.main --config=configs/mnist.py "
        "--workdir=/tmp/run --mode=train",
        "# again while it exits with 75 (preempted), at most 10 attempts",
    ]
    assert _lines(
        "multi_gpu.sh",
        "--install",
        "--max-attempts=3",
        "--config=configs/celeba.py",
        "--workdir=/shared/run",
        "--coordinator=10.0.0.1:12345",
        "--num-processes=2",
        "--process-id=1",
    ) == [
        f"python3 -m pip install -c {ROOT}/constraints.txt -e '{ROOT}[cuda12]'",
        "python3 -m ssinfogan_jax.main --config=configs/celeba.py --workdir=/shared/run "
        "--mode=train --coordinator_address=10.0.0.1:12345 --num_processes=2 --process_id=1",
        "# again while it exits with 75 (preempted), at most 3 attempts",
    ]
    result = _run("multi_gpu.sh", "--dry-run", "--workdir=/x", "--coordinator=a:1", check=False)
    assert result.returncode == 2
    assert "give all of" in result.stderr


def _fake_python3(tmp_path, run_body: str) -> dict:
    """An environment whose python3 passes the version check and runs `run_body` for
    `python3 -m ssinfogan_jax.main ...`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    _stub(
        bin_dir / "python3",
        f'if [[ "$1" == -c ]]; then exec {sys.executable} "$@"; fi\n' + run_body,
    )
    return dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")


def _multi_gpu(env, *args):
    script = os.path.join(ROOT, "launch", "multi_gpu.sh")
    return subprocess.run(
        ["bash", script, "--workdir=/x", *args], env=env, capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize(
    ("codes", "max_attempts", "runs", "status"),
    [
        ("75 75 0", 10, 3, 0),  # preempted twice, then finishes
        ("75 75 75", 2, 2, 75),  # the cap
        ("3 0", 10, 1, 3),  # a fault for a person: no retry
        ("2", 10, 1, 2),  # a bad config: no retry
    ],
)
def test_multi_gpu_reruns_while_preempted(tmp_path, codes, max_attempts, runs, status):
    count = tmp_path / "count"
    env = _fake_python3(
        tmp_path,
        f"codes=({codes}); n=$(cat {count} 2>/dev/null || echo 0); echo $((n + 1)) >{count}\n"
        'exit "${codes[$n]}"\n',
    )
    result = _multi_gpu(env, f"--max-attempts={max_attempts}")
    assert result.returncode == status, result.stderr
    assert int(count.read_text()) == runs
    assert result.stderr.count("resuming, attempt") == runs - 1


def test_multi_gpu_sigterm_goes_to_the_run_and_ends_the_retries(tmp_path):
    count = tmp_path / "count"
    env = _fake_python3(
        tmp_path,
        # The count is written once the trap is set: a SIGTERM before it would kill the run.
        f"trap 'exit 75' TERM; echo x >>{count}; sleep 20 & wait\n",
    )
    script = os.path.join(ROOT, "launch", "multi_gpu.sh")
    proc = subprocess.Popen(["bash", script, "--workdir=/x"], env=env, stderr=subprocess.PIPE)
    for _ in range(100):
        if count.exists():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 75
    assert count.read_text() == "x\n"


def test_multi_gpu_needs_python_311(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    old_python = 'if [[ "$1" == -V ]]; then echo "Python 3.10.12"; exit 0; fi; exit 1\n'
    _stub(bin_dir / "python3", old_python)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    result = _multi_gpu(env, "--dry-run")
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert f"needs Python >= 3.11; python3 is Python 3.10.12 ({bin_dir / 'python3'});" in line
    assert result.stdout == ""


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


def test_readme_shows_the_tpu_vm_commands_exactly():
    lines = _lines(
        "tpu_vm.sh",
        "--name=ssinfogan-v4-32",
        "--zone=us-central2-b",
        "--accelerator-type=v4-32",
        "--config=configs/celeba.py",
        "--workdir=gs://my-bucket/celeba-run1",
    )
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    for line in lines[:12]:
        assert f"    {line.replace(ROOT, '/path/to/ssinfogan_jax')}\n" in readme, line
