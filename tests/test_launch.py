"""The launch scripts as a user runs them: they parse, lint clean, print exact commands, and
tpu_vm.sh recovers by itself, driven here by a fake `gcloud` that records its calls and plays
the cloud's answers (READY, PREEMPTED, no capacity, the run's exit codes)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tarfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ["tpu_vm.sh", "tpu_worker.sh", "multi_gpu.sh", "local_two_processes.sh"]
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


@pytest.mark.parametrize("script", ["tpu_vm.sh", "multi_gpu.sh", "local_two_processes.sh"])
def test_help_is_the_comment_block_and_nothing_else(script):
    result = _run(script, "--help")
    with open(os.path.join(ROOT, "launch", script)) as f:
        lines = f.read().splitlines()
    header = []
    for line in lines[1:]:
        if not line.startswith("#"):
            break
        header.append(line[2:] if line.startswith("# ") else line[1:])
    assert result.returncode == 0
    assert result.stdout.splitlines() == header
    assert "set -euo" not in result.stdout and len(header) > 3


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


def _stub(path, body: str) -> None:
    with open(path, "w") as f:
        f.write("#!/usr/bin/env bash\n" + body)
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)


def _git(cwd, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def _make_checkout(path) -> str:
    """A small git checkout with this project's launch scripts and two configs, committed:
    tpu_vm.sh ships a checkout's files, so its tests need one whose state they control (the
    real one may hold anyone's uncommitted edits)."""
    os.makedirs(path / "launch")
    os.makedirs(path / "configs")
    for script in ("lib.sh", "tpu_vm.sh", "tpu_worker.sh"):
        shutil.copy2(os.path.join(ROOT, "launch", script), path / "launch" / script)
    for name in ("celeba", "mnist", "__init__"):
        (path / "configs" / f"{name}.py").write_text(f"# {name}\n")
    (path / "constraints.txt").write_text("jax==0.10.2\n")
    _git(path, "init", "-q")
    _git(path, "add", "-A")
    _git(path, "commit", "-q", "-m", "a checkout")
    return str(path)


@pytest.fixture
def checkout(tmp_path) -> str:
    return _make_checkout(tmp_path / "ssinfogan_jax")


def _tpu_vm(checkout: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", os.path.join(checkout, "launch", "tpu_vm.sh"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env or dict(os.environ, TMPDIR="/tmp"),
    )


V4_32 = [
    "--name=ss-v4-32",
    "--zone=us-central2-b",
    "--accelerator-type=v4-32",
    "--config=configs/celeba.py",
    "--workdir=gs://bucket/celeba1",
    "--spot",
]
SHARED_FLAGS = (
    "--config.data.data_dir=gs://bucket/tensorflow_datasets "
    "--config.eval.judge_dir=gs://bucket/tensorflow_datasets/ssinfogan_classifiers"
)


def test_tpu_vm_dry_run(checkout):
    result = _tpu_vm(checkout, "--dry-run", *V4_32, "--", "--config.batch_size=256")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    where = "ss-v4-32 --zone=us-central2-b"
    archive = "/tmp/ssinfogan_jax.XXXXXX/src.tar.gz"
    assert lines[:16] == [
        "# Checked: --mode=train, --config=configs/celeba.py (in this checkout), no uncommitted "
        "changes",
        f"# Every worker gets: {SHARED_FLAGS}; its log goes to "
        "gs://bucket/celeba1/logs/worker_<i>.log",
        f"{TPU} describe {where} '--format=value(state)'",
        "# if it does not exist:",
        f"{TPU} create {where} --accelerator-type=v4-32 --version=tpu-ubuntu2204-base --spot",
        "# no capacity: the create again after 60 s, then twice as long each time (at most 30 "
        "min), at most 10 tries in all",
        "# if it is PREEMPTED: delete it, then the create above:",
        f"{TPU} delete {where} --quiet",
        "# if it is STOPPED:",
        f"{TPU} start {where}",
        "# if it is READY: reuse it; while it changes state: wait; in any other state: stop",
        f"git -C {checkout} archive --format=tar.gz --output={archive} HEAD",
        f"{TPU} scp {archive} ss-v4-32:ssinfogan_jax-src.tar.gz --zone=us-central2-b --worker=all",
        lines[13],
        lines[14],
        "# Then every 60 s, until worker 0 has written its exit code:",
    ]
    setup, train = _remote_command(lines[13]), _remote_command(lines[14])
    assert lines[13].startswith(f"{TPU} ssh {where} --worker=all '--command=")
    # Refuses while a worker still trains (after a minute), unpacks, then exactly the tested
    # install command.
    assert setup.startswith(
        "for _ in $(seq 30); do pgrep -f 'ssinfogan_jax[.]main' >/dev/null || break; sleep 2; "
        "done; if pgrep -f 'ssinfogan_jax[.]main' >/dev/null; then echo \"$(hostname): a "
        "training is still running; stop it (pkill -f 'ssinfogan_jax[.]main') or wait\" >&2; "
        "exit 1; fi; "
    )
    assert setup.endswith(
        "rm -rf ~/ssinfogan_jax && mkdir -p ~/ssinfogan_jax && tar -xzf "
        "~/ssinfogan_jax-src.tar.gz -C ~/ssinfogan_jax && cd ~/ssinfogan_jax && "
        + _install_command("tpu")
    )
    assert "--python 3.11" in setup and "-c constraints.txt -e '.[tpu]'" in setup
    assert lines[14].startswith(f"{TPU} ssh {where} --worker=all '--command=")
    assert train == (
        "cd ~/ssinfogan_jax && setsid -f nohup bash launch/tpu_worker.sh "
        "--logs=gs://bucket/celeba1/logs --tag=YYYYmmdd-HHMMSS-1 -- "
        "~/ssinfogan_venv/bin/python -m ssinfogan_jax.main --config=configs/celeba.py "
        f"--workdir=gs://bucket/celeba1 --mode=train {SHARED_FLAGS} --config.batch_size=256 "
        '>/dev/null 2>&1 </dev/null && echo "$(hostname): training started, log '
        'gs://bucket/celeba1/logs/worker_<i>.log"'
    )
    assert lines[16:] == [
        "gcloud storage cat gs://bucket/celeba1/logs/exit_codes/YYYYmmdd-HHMMSS-1/worker_0",
        f"{TPU} describe {where} '--format=value(state)'",
        "# 0: done. 75, or the VM PREEMPTED or gone: all of the above again (run 2, ...), at "
        "most 10 runs. Any other code: stop with it.",
        "# Every worker's log (all attempts), copied every 30 s:",
        "#   gcloud storage cat 'gs://bucket/celeba1/logs/worker_*.log'",
        "# or live:",
        f"#   {TPU} ssh {where} --worker=all '--command=tail -n 100 -f "
        "~/ssinfogan_logs/worker_*.log'",
    ]


def test_tpu_vm_dry_run_names_raw_dir_data_dir_and_a_shipped_config(checkout):
    result = _tpu_vm(
        checkout,
        "--dry-run",
        "--name=n",
        "--zone=z",
        "--workdir=gs://b/r/",
        "--config=mnist:runlocal",
        "--data-dir=gs://data/tfds",
        "--raw-dir=gs://data/raw/celeba",
        "--detach",
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    flags = (
        "--config.data.data_dir=gs://data/tfds "
        "--config.eval.judge_dir=gs://data/tfds/ssinfogan_classifiers "
        "--config.data.raw_dir=gs://data/raw/celeba"
    )
    assert lines[1] == f"# Every worker gets: {flags}; its log goes to gs://b/r/logs/worker_<i>.log"
    (train,) = [_remote_command(x) for x in lines if "setsid" in x]
    assert (
        "--config=configs/mnist.py:runlocal --workdir=gs://b/r --mode=train " + flags + " >"
    ) in train
    assert "# --detach: no watching, no relaunch" in lines
    assert not any(x.startswith("gcloud storage cat gs://") for x in lines)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mode=bogus"], "--mode=bogus: not a mode; use train, eval or sample"),
        (["--config=configs/nope.py"], "--config=configs/nope.py: no such file here or in "),
        (["--config=nope:runlocal"], "(shipped: celeba, mnist); pass a file in this checkout"),
        (["--config=/etc/hostname"], "is outside "),
        (["--workdir=/tmp/x"], "--workdir must be a gs:// path that every worker can reach"),
        (["--data-dir=/data"], "--data-dir must be a gs:// path that every worker can read"),
        (["--raw-dir=~/raw"], "--raw-dir must be a gs:// path that every worker can read"),
        (["--max-attempts=0"], "--max-attempts must be at least 1"),
        (["--poll=soon"], "--poll must be a whole number, not 'soon'"),
    ],
)
@pytest.mark.parametrize("dry_run", [True, False])
def test_tpu_vm_refuses_bad_input_before_any_gcloud_call(
    tmp_path, checkout, args, message, dry_run
):
    """One line, exit code 2, and not one gcloud call (dry run or not)."""
    env = _fake_gcloud(tmp_path, {})
    base = ["--name=n", "--zone=z", "--workdir=gs://b/r"]
    result = _tpu_vm(checkout, *(["--dry-run"] if dry_run else []), *base, *args, env=env)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("tpu_vm.sh: ") and message in line, line
    assert result.stdout == "" and _calls(tmp_path) == []


# The fake gcloud: records each call (its arguments as JSON, one call a line) and plays, per
# verb, the answers of play.json in order (the last one repeats). Verbs: describe (a state, or
# NOT_FOUND), create ("ok", "capacity", or an error message), exit_code (`gcloud storage cat`
# of worker 0's exit code: "" while the run goes on, else the code), ssh and scp ("ok" or an
# error). scp keeps a copy of each archive it is given.
FAKE_GCLOUD = """
import json, os, shutil, sys

args, folder = sys.argv[1:], os.environ["FAKE_GCLOUD_DIR"]
with open(os.path.join(folder, "calls.jsonl"), "a") as f:
    f.write(json.dumps(args) + "\\n")
if args[:3] == ["compute", "tpus", "tpu-vm"]:
    verb = args[3]
elif args[:2] == ["storage", "cat"]:
    verb = "exit_code"
else:
    verb = " ".join(args[:2])
with open(os.path.join(folder, "play.json")) as f:
    answers = json.load(f).get(verb, ["ok"])
counts_file = os.path.join(folder, "counts.json")
counts = json.load(open(counts_file)) if os.path.exists(counts_file) else {}
n = counts.get(verb, 0)
counts[verb] = n + 1
with open(counts_file, "w") as f:
    json.dump(counts, f)
answer = answers[min(n, len(answers) - 1)]
if verb == "scp":
    shutil.copy(args[4], os.path.join(folder, f"shipped_{n}.tar.gz"))
if verb == "describe" and answer == "NOT_FOUND":
    sys.exit("ERROR: (gcloud.compute.tpus.tpu-vm.describe) NOT_FOUND: Resource "
             "'projects/p/locations/z/nodes/n' was not found")
if verb in ("describe", "exit_code") and answer:
    print(answer)
    sys.exit(0)
if verb == "exit_code":
    sys.exit("ERROR: (gcloud.storage.cat) The following URLs matched no objects or files:")
if verb == "create" and answer == "capacity":
    print("Create request issued for: [n]", file=sys.stderr)
    sys.exit('ERROR: (gcloud.compute.tpus.tpu-vm.create) {"code": 8, "message": "There is no '
             'more capacity in the zone \\\\"z\\\\"; you can try in another zone"}')
if answer != "ok":
    sys.exit(f"ERROR: (gcloud) {answer}")
"""


def _fake_gcloud(tmp_path, play: dict) -> dict:
    """An environment whose `gcloud` is the fake above, playing `play`; its records go to
    tmp_path/gcloud."""
    folder = tmp_path / "gcloud"
    (folder / "bin").mkdir(parents=True, exist_ok=True)
    (folder / "play.json").write_text(json.dumps(play))
    (folder / "counts.json").unlink(missing_ok=True)
    (folder / "calls.jsonl").unlink(missing_ok=True)
    gcloud = folder / "bin" / "gcloud"
    gcloud.write_text(f"#!{sys.executable}\n{FAKE_GCLOUD}")
    gcloud.chmod(0o755)
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return dict(
        os.environ,
        PATH=f"{folder / 'bin'}:{os.environ['PATH']}",
        FAKE_GCLOUD_DIR=str(folder),
        TMPDIR=str(tmp_path / "tmp"),
    )


def _calls(tmp_path) -> list[list[str]]:
    path = tmp_path / "gcloud" / "calls.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def _verbs(calls) -> list[str]:
    """Each call in short: describe, create, delete, start, scp, setup (the install ssh),
    train (the ssh that starts the run), exit_code."""
    out = []
    for call in calls:
        if call[:2] == ["storage", "cat"]:
            out.append("exit_code")
        elif call[3] == "ssh":
            out.append("train" if "setsid" in _command_of(call) else "setup")
        else:
            out.append(call[3])
    return out


def _command_of(call: list[str]) -> str:
    (command,) = [a for a in call if a.startswith("--command=")]
    return command.removeprefix("--command=")


FAST = ["--poll=0", "--retry-wait=0"]
BASE = ["--name=n", "--zone=z", "--workdir=gs://b/r", *FAST]
# One run as seen by the launcher: ship, install, start, then worker 0's exit code.
RUN = ["scp", "setup", "train"]


def test_tpu_vm_relaunches_after_a_preemption_and_an_exit_75_until_the_run_finishes(
    tmp_path, checkout
):
    """No VM -> create, run 1 -> the VM is PREEMPTED while it trains -> delete, create, run 2
    -> exit 75 (SIGTERM on a VM that stays) -> reuse, run 3 -> exit 0: done, exit 0. Every
    run gets the shared data dir, raw dir, judge cache and log place, and the same archive."""
    env = _fake_gcloud(
        tmp_path,
        {
            "describe": ["NOT_FOUND", "READY", "PREEMPTED", "PREEMPTED", "READY", "READY"],
            "exit_code": ["", "", "75", "", "0"],
        },
    )
    result = _tpu_vm(
        checkout, *BASE, "--raw-dir=gs://b/raw", "--", "--config.batch_size=64", env=env
    )
    assert result.returncode == 0, result.stderr
    calls = _calls(tmp_path)
    assert _verbs(calls) == [
        "describe", "create", *RUN, "exit_code", "describe", "exit_code", "describe",
        "describe", "delete", "create", *RUN, "exit_code",
        "describe", *RUN, "exit_code", "describe", "exit_code",
    ]  # fmt: skip
    trains = [_command_of(c) for c in calls if _verbs([c]) == ["train"]]
    tags = [next(a for a in shlex.split(t) if a.startswith("--tag=")) for t in trains]
    assert [t[-2:] for t in tags] == ["-1", "-2", "-3"] and len({t[:-2] for t in tags}) == 1
    for train in trains:
        assert (
            "launch/tpu_worker.sh --logs=gs://b/r/logs --tag=" in train
            and " -- ~/ssinfogan_venv/bin/python -m ssinfogan_jax.main "
            "--config=configs/mnist.py --workdir=gs://b/r --mode=train "
            "--config.data.data_dir=gs://b/tensorflow_datasets "
            "--config.eval.judge_dir=gs://b/tensorflow_datasets/ssinfogan_classifiers "
            "--config.data.raw_dir=gs://b/raw --config.batch_size=64 >/dev/null"
            in train
        ), train
    cats = [c[2] for c in calls if c[:2] == ["storage", "cat"]]
    assert cats[0] == f"gs://b/r/logs/exit_codes/{tags[0].removeprefix('--tag=')}/worker_0"
    archives = {c[4] for c in calls if c[2:4] == ["tpu-vm", "scp"]}
    assert len(archives) == 1 and not os.path.exists(archives.pop())  # one per launch, removed
    assert result.stderr.splitlines() == [
        "tpu_vm.sh: creating n (v4-8), try 1 of 10",
        "tpu_vm.sh: n is PREEMPTED; relaunching, run 2 of 10 (it resumes from gs://b/r)",
        "tpu_vm.sh: n is PREEMPTED: deleting it and creating it again (the run resumes from "
        "gs://b/r)",
        "tpu_vm.sh: creating n (v4-8), try 1 of 10",
        "tpu_vm.sh: the run stopped for a preemption (exit code 75); relaunching, run 3 of 10 "
        "(it resumes from gs://b/r)",
        "tpu_vm.sh: n is READY: reusing it",
        "tpu_vm.sh: the run finished (run 3): exit code 0; n is still up: delete it with "
        "`gcloud compute tpus tpu-vm delete n --zone=z --quiet` when done",
    ]


def test_tpu_vm_retries_a_capacity_error_with_backoff(tmp_path, checkout):
    env = _fake_gcloud(
        tmp_path,
        {"describe": ["NOT_FOUND"], "create": ["capacity", "capacity", "ok"], "exit_code": ["0"]},
    )
    result = _tpu_vm(checkout, *BASE, "--retry-wait=1", "--spot", env=env)
    assert result.returncode == 0, result.stderr
    assert _verbs(_calls(tmp_path)) == [
        "describe", "create", "describe", "create", "describe", "create", *RUN, "exit_code",
    ]  # fmt: skip
    ours = [x for x in result.stderr.splitlines() if x.startswith("tpu_vm.sh: ")]
    assert ours == [
        "tpu_vm.sh: creating n (v4-8, spot), try 1 of 10",
        "tpu_vm.sh: no capacity for v4-8 in z; trying again in 1 s",
        "tpu_vm.sh: creating n (v4-8, spot), try 2 of 10",
        "tpu_vm.sh: no capacity for v4-8 in z; trying again in 2 s",
        "tpu_vm.sh: creating n (v4-8, spot), try 3 of 10",
        "tpu_vm.sh: the run finished (run 1): exit code 0; n is still up: delete it with "
        "`gcloud compute tpus tpu-vm delete n --zone=z --quiet` when done",
    ]
    assert "There is no more capacity in the zone" in result.stderr  # gcloud's own, shown


@pytest.mark.parametrize(
    ("play", "verbs", "code", "last_line"),
    [
        # Preempted at every run: two runs, then 75 and what to do.
        (
            {"describe": ["READY"], "exit_code": ["75"]},
            ["describe", *RUN, "exit_code"] * 2,
            75,
            "tpu_vm.sh: the run stopped for a preemption (exit code 75); that was run 2 of 2 "
            "(--max-attempts), so no more; run the same command again to resume from gs://b/r",
        ),
        # No capacity, ever: two tries, then 75.
        (
            {"describe": ["NOT_FOUND"], "create": ["capacity"]},
            ["describe", "create"] * 2,
            75,
            "tpu_vm.sh: no capacity for v4-8 in z after 2 tries (--max-attempts); run the same "
            "command again later, or try another --zone",
        ),
        # A run that needs a person, or a bad config: no relaunch, its exit code.
        (
            {"describe": ["READY"], "exit_code": ["", "3"]},
            ["describe", *RUN, "exit_code", "describe", "exit_code"],
            3,
            "tpu_vm.sh: the run ended with exit code 3 (run 1); not relaunching. Logs: "
            "gcloud storage cat 'gs://b/r/logs/worker_*.log'",
        ),
        (
            {"describe": ["READY"], "exit_code": ["2"]},
            ["describe", *RUN, "exit_code"],
            2,
            "tpu_vm.sh: the run ended with exit code 2 (run 1); not relaunching. Logs: "
            "gcloud storage cat 'gs://b/r/logs/worker_*.log'",
        ),
        # Any other create error: one line with gcloud's, exit 3.
        (
            {"describe": ["NOT_FOUND"], "create": ["Quota 'TPUV4sPodPerProjectPerZone' exceeded"]},
            ["describe", "create"],
            3,
            "tpu_vm.sh: could not create n (ERROR: (gcloud) Quota 'TPUV4sPodPerProjectPerZone' "
            "exceeded); fix that, then run again: ",
        ),
    ],
)
def test_tpu_vm_stops_at_the_limit_or_on_a_final_exit_code(
    tmp_path, checkout, play, verbs, code, last_line
):
    env = _fake_gcloud(tmp_path, play)
    result = _tpu_vm(checkout, *BASE, "--max-attempts=2", env=env)
    assert result.returncode == code, result.stderr
    assert _verbs(_calls(tmp_path)) == verbs
    assert result.stderr.splitlines()[-1].startswith(last_line)


def test_tpu_vm_handles_each_node_state(tmp_path, checkout):
    """Absent -> create; PREEMPTED -> delete + create; STOPPED -> start; READY -> reuse;
    CREATING -> wait until READY; then one run that finishes."""
    for states, verbs in [
        (["NOT_FOUND"], ["create"]),
        (["PREEMPTED"], ["delete", "create"]),
        (["STOPPED"], ["start"]),
        (["READY"], []),
        (["CREATING", "CREATING", "READY"], ["describe", "describe"]),
    ]:
        env = _fake_gcloud(tmp_path, {"describe": states, "exit_code": ["0"]})
        result = _tpu_vm(checkout, *BASE, env=env)
        assert result.returncode == 0, result.stderr
        assert _verbs(_calls(tmp_path)) == ["describe", *verbs, *RUN, "exit_code"], states
    assert "tpu_vm.sh: n is CREATING: waiting for it to settle" in result.stderr


@pytest.mark.parametrize(
    ("describe", "message"),
    [
        ("BROKEN", "tpu_vm.sh: n is BROKEN; delete it with `gcloud compute tpus tpu-vm delete n "
         "--zone=z --quiet`, then run again: "),
        ("ERROR", "tpu_vm.sh: cannot read the state of n (ERROR: (gcloud) ERROR); fix that"),
    ],
)  # fmt: skip
def test_tpu_vm_stops_on_a_state_it_cannot_handle(tmp_path, checkout, describe, message):
    env = _fake_gcloud(tmp_path, {"describe": [describe]})
    if describe == "ERROR":  # gcloud fails, and not with NOT_FOUND: network, credentials.
        _stub(tmp_path / "gcloud" / "bin" / "gcloud", 'echo "ERROR: (gcloud) ERROR" >&2; exit 1\n')
    result = _tpu_vm(checkout, *BASE, env=env)
    assert result.returncode == 3
    (line,) = result.stderr.splitlines()
    assert line.startswith(message), line
    script = os.path.join(checkout, "launch", "tpu_vm.sh")
    assert line.endswith(f"run again: {script} {' '.join(BASE)}")


def test_tpu_vm_relaunches_when_the_vm_goes_while_the_run_starts(tmp_path, checkout):
    """The ssh that starts the run fails because the VM was preempted meanwhile: a relaunch,
    not a stop."""
    env = _fake_gcloud(
        tmp_path,
        {
            "describe": ["READY", "PREEMPTED", "PREEMPTED", "READY"],
            "ssh": ["ok", "connection closed", "ok"],
            "exit_code": ["0"],
        },
    )
    result = _tpu_vm(checkout, *BASE, env=env)
    assert result.returncode == 0, result.stderr
    assert _verbs(_calls(tmp_path)) == [
        "describe", *RUN, "describe", "describe", "delete", "create", *RUN, "exit_code",
    ]  # fmt: skip
    assert "tpu_vm.sh: n became PREEMPTED while starting the run; relaunching, run 2" in (
        result.stderr
    )


def test_tpu_vm_detach_starts_once_and_returns(tmp_path, checkout):
    env = _fake_gcloud(tmp_path, {"describe": ["READY"]})
    result = _tpu_vm(checkout, *BASE, "--detach", env=env)
    assert result.returncode == 0, result.stderr
    assert _verbs(_calls(tmp_path)) == ["describe", *RUN]
    assert "not watching (--detach)" in result.stderr.splitlines()[-1]


def _shipped(tmp_path, n: int = 0) -> dict[str, str]:
    with tarfile.open(tmp_path / "gcloud" / f"shipped_{n}.tar.gz") as tar:
        return {m.name: tar.extractfile(m).read().decode() for m in tar.getmembers() if m.isfile()}


def test_tpu_vm_refuses_uncommitted_changes_or_ships_them_on_purpose(tmp_path, checkout):
    with open(os.path.join(checkout, "configs", "celeba.py"), "a") as f:
        f.write("# edited\n")
    with open(os.path.join(checkout, "configs", "mine.py"), "w") as f:
        f.write("# new\n")
    status = _git(checkout, "status", "--porcelain")
    env = _fake_gcloud(tmp_path, {"describe": ["READY"], "exit_code": ["0"]})
    for dry_run in ([], ["--dry-run"]):
        result = _tpu_vm(checkout, *dry_run, *BASE, "--config=celeba", env=env)
        assert result.returncode == 2 and result.stdout == ""
        (line,) = result.stderr.splitlines()
        assert line == (
            f"tpu_vm.sh: 2 uncommitted change(s) in {checkout} (e.g. 'M configs/celeba.py') "
            "would not reach the workers; commit them, or pass --ship-uncommitted to ship the "
            "working tree as it is"
        )
        assert _calls(tmp_path) == []

    result = _tpu_vm(checkout, *BASE, "--config=configs/mine.py", "--ship-uncommitted", env=env)
    assert result.returncode == 0, result.stderr
    shipped = _shipped(tmp_path)
    assert shipped["configs/celeba.py"] == "# celeba\n# edited\n"
    assert shipped["configs/mine.py"] == "# new\n"
    assert "launch/tpu_worker.sh" in shipped
    (train,) = [_command_of(c) for c in _calls(tmp_path) if _verbs([c]) == ["train"]]
    assert " --config=configs/mine.py " in train
    assert _git(checkout, "status", "--porcelain") == status  # the index is untouched

    # Committed: HEAD is what goes, and the working tree's later edits do not.
    _git(checkout, "add", "-A")
    _git(checkout, "commit", "-q", "-m", "edits")
    with open(os.path.join(checkout, "configs", "mine.py"), "w") as f:
        f.write("# later\n")
    _git(checkout, "update-index", "--assume-unchanged", "configs/mine.py")  # looks clean
    env = _fake_gcloud(tmp_path, {"describe": ["READY"], "exit_code": ["0"]})
    result = _tpu_vm(checkout, *BASE, "--config=mine", env=env)
    assert result.returncode == 0, result.stderr
    assert _shipped(tmp_path)["configs/mine.py"] == "# new\n"


def test_tpu_vm_concurrent_launches_ship_their_own_archives(tmp_path):
    """Two launches at once, from two checkouts, sharing TMPDIR: each ships its own files,
    under its own name, and leaves nothing behind."""
    launches = []
    os.makedirs(tmp_path / "shared_tmp")
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        checkout = _make_checkout(folder / "ssinfogan_jax")
        with open(os.path.join(checkout, "configs", "mnist.py"), "w") as f:
            f.write(f"# {name}\n")
        _git(checkout, "commit", "-q", "-am", name)
        # Worker 0 reports after a few polls, so the two launches overlap.
        env = _fake_gcloud(folder, {"describe": ["READY"], "exit_code": [""] * 5 + ["0"]})
        env["TMPDIR"] = str(tmp_path / "shared_tmp")
        launches.append(
            subprocess.Popen(
                ["bash", os.path.join(checkout, "launch", "tpu_vm.sh"), *BASE],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for launch in launches:
        _, err = launch.communicate(timeout=60)
        assert launch.returncode == 0, err
    archives = []
    for name in ("a", "b"):
        assert _shipped(tmp_path / name)["configs/mnist.py"] == f"# {name}\n"
        (scp,) = [c for c in _calls(tmp_path / name) if c[2:4] == ["tpu-vm", "scp"]]
        archives.append(scp[4])
    assert archives[0] != archives[1]
    assert all(a.startswith(str(tmp_path / "shared_tmp") + "/ssinfogan_jax.") for a in archives)
    assert os.listdir(tmp_path / "shared_tmp") == []


def test_tpu_vm_needs_a_gcs_workdir(checkout):
    result = _tpu_vm(checkout, "--dry-run", "--name=a", "--zone=b", "--workdir=/tmp/x")
    assert result.returncode == 2
    assert "gs://" in result.stderr


# What runs on a worker: launch/tpu_worker.sh, with a fake gcloud whose `storage cp` copies
# between local paths and a folder that stands for GCS (gs://b/... -> FAKE_GCS/b/...).
FAKE_STORAGE = """
import os, shutil, sys

args = sys.argv[1:]
assert args[:2] == ["storage", "cp"], args
root = os.environ["FAKE_GCS"]
local = lambda p: os.path.join(root, p.removeprefix("gs://")) if p.startswith("gs://") else p
source, target = local(args[2]), local(args[3])
if source != "-" and not os.path.exists(source):
    sys.exit(f"ERROR: (gcloud.storage.cp) The following URLs matched no objects: {args[2]}")
os.makedirs(os.path.dirname(target), exist_ok=True)
if source == "-":
    with open(target, "w") as f:
        f.write(sys.stdin.read())
else:
    shutil.copyfile(source, target)
"""


def _worker_env(tmp_path, checkout) -> dict:
    """HOME with the checkout unpacked and a venv whose python is a stub (set by the test);
    gcloud's storage is a folder; this is worker 2."""
    home = tmp_path / "home"
    shutil.copytree(checkout, home / "ssinfogan_jax")
    (home / "ssinfogan_venv" / "bin").mkdir(parents=True)
    (tmp_path / "bin").mkdir()
    gcloud = tmp_path / "bin" / "gcloud"
    gcloud.write_text(f"#!{sys.executable}\n{FAKE_STORAGE}")
    gcloud.chmod(0o755)
    return dict(
        os.environ,
        HOME=str(home),
        PATH=f"{tmp_path / 'bin'}:{os.environ['PATH']}",
        FAKE_GCS=str(tmp_path / "gcs"),
        TPU_WORKER_ID="2",
    )


def _wait_for(path, timeout: float = 20) -> str:
    for _ in range(int(timeout * 10)):
        if path.exists():
            return path.read_text()
        time.sleep(0.1)
    raise AssertionError(f"{path} never appeared")


def test_tpu_worker_runs_detached_and_keeps_every_attempt_in_the_gcs_log(tmp_path, checkout):
    """The train command that tpu_vm.sh sends, run here as worker 2: it returns at once, the
    run outlives it; the log in the bucket keeps the earlier attempt's lines and gets this
    one's output and exit code; worker 2's exit code goes where tpu_vm.sh looks."""
    lines = _tpu_vm(checkout, "--dry-run", "--name=a", "--zone=b", "--workdir=gs://b/r", "--",
                    "--x=a b").stdout.splitlines()  # fmt: skip
    (train,) = [_remote_command(x) for x in lines if "setsid" in x]
    env = _worker_env(tmp_path, checkout)
    python = tmp_path / "home" / "ssinfogan_venv" / "bin" / "python"
    release = tmp_path / "release"  # the stub run ends once this exists
    _stub(python, f'while [[ ! -e {release} ]]; do sleep 0.1; done; echo "args: $*"; exit 75\n')
    gcs_log = tmp_path / "gcs" / "b" / "r" / "logs" / "worker_2.log"
    gcs_log.parent.mkdir(parents=True)
    gcs_log.write_text("an earlier attempt, on a VM since deleted\n")
    result = subprocess.run(
        ["bash", "-c", train], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0 and "training started, log gs://b/r/logs/" in result.stdout
    # The ssh command has returned and the run still goes on: no exit code yet.
    assert not (gcs_log.parent / "exit_codes").exists()
    release.touch()
    code = tmp_path / "gcs" / "b" / "r" / "logs" / "exit_codes" / "YYYYmmdd-HHMMSS-1" / "worker_2"
    assert _wait_for(code) == "75\n"
    text = gcs_log.read_text()
    assert text.startswith("an earlier attempt, on a VM since deleted\n[tpu_vm.sh] attempt ")
    assert f"attempt YYYYmmdd-HHMMSS-1 on {socket.gethostname()} (worker 2) at " in text
    assert "args: -m ssinfogan_jax.main --config=configs/mnist.py --workdir=gs://b/r " in text
    assert f"--mode=train {SHARED_FLAGS.replace('bucket', 'b')} --x=a b\n" in text
    assert text.splitlines()[-1].startswith("[tpu_vm.sh] exit code 75 at ")
    assert (tmp_path / "home" / "ssinfogan_logs" / "worker_2.log").read_text() == text


def test_tpu_worker_passes_sigterm_on_and_copies_the_log_after(tmp_path, checkout):
    env = _worker_env(tmp_path, checkout)
    started = tmp_path / "started"
    stub = tmp_path / "run"
    _stub(stub, f"trap 'echo saved; exit 75' TERM; touch {started}; sleep 20 & wait\n")
    worker = subprocess.Popen(
        ["bash", os.path.join(checkout, "launch", "tpu_worker.sh"), "--logs=gs://b/r/logs",
         "--tag=t-1", "--upload-every=1", "--", str(stub)],
        env=env,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    _wait_for(started)
    gcs_log = tmp_path / "gcs" / "b" / "r" / "logs" / "worker_2.log"
    _wait_for(gcs_log)  # the first copy, before the run
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 75
    assert gcs_log.read_text().splitlines()[-2:][0] == "saved"
    assert gcs_log.read_text().splitlines()[-1].startswith("[tpu_vm.sh] exit code 75 at ")
    code = tmp_path / "gcs" / "b" / "r" / "logs" / "exit_codes" / "t-1" / "worker_2"
    assert code.read_text() == "75\n"


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


def test_the_docs_show_the_tpu_vm_commands_exactly(checkout):
    result = _tpu_vm(
        checkout,
        "--dry-run",
        "--name=ssinfogan-v4-32",
        "--zone=us-central2-b",
        "--accelerator-type=v4-32",
        "--config=configs/celeba.py",
        "--workdir=gs://my-bucket/celeba-run1",
    )
    with open(os.path.join(ROOT, "docs", "multi_host_tpu.md")) as f:
        page = f.read()
    for line in result.stdout.splitlines():
        assert f"    {line.replace(checkout, '/path/to/ssinfogan_jax')}\n" in page, line
