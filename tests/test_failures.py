"""Faults injected by hand, each driven through `python -m ssinfogan_jax.main`: the exit code,
the one line that says what happened, and the work dir's files before and after (a rejected run
changes nothing)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from ssinfogan_jax import checkpointing, exit_codes, input_pipeline, loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 6  # The digits smoke run (configs/digits.py:runlocal): checkpoints at 3 and 6.


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """Data, the independent classifier and the XLA cache, shared by every run here."""
    root = tmp_path_factory.mktemp("shared")
    input_pipeline.prepare("digits", "", str(root / "tfds"))
    return root


def _command(shared, workdir, *flags: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "ssinfogan_jax.main",
        "--config=configs/digits.py:runlocal",
        f"--workdir={workdir}",
        f"--config.data.data_dir={shared / 'tfds'}",
        f"--config.eval.classifier_dir={shared / 'classifiers'}",
        f"--config.compilation_cache_dir={shared / 'xla'}",
        *flags,
    ]


def _main(shared, workdir, *flags: str, timeout: float = 1500) -> subprocess.CompletedProcess:
    return subprocess.run(
        _command(shared, workdir, *flags), cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def _listing(workdir) -> dict[str, int]:
    """Every file under the work dir with its size ({} if it does not exist)."""
    if not os.path.exists(workdir):
        return {}
    return {
        os.path.relpath(os.path.join(d, f), workdir): os.path.getsize(os.path.join(d, f))
        for d, _, files in os.walk(workdir)
        for f in files
    }


def _fatal(result: subprocess.CompletedProcess) -> str:
    """The one FATAL line on stderr; no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.startswith("FATAL")]
    assert len(lines) == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def trained(shared, tmp_path_factory):
    """A finished smoke run; tests copy it before touching it."""
    workdir = tmp_path_factory.mktemp("trained") / "run"
    result = _main(shared, workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def _copy(trained, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(trained, workdir)
    return workdir


def test_a_rejected_resume_leaves_the_record_as_it_was(shared, trained, tmp_path):
    workdir = _copy(trained, tmp_path)
    before, record = _listing(workdir), (workdir / "config.json").read_text()
    result = _main(shared, workdir, "--config.num_train_steps=60", "--config.data.num_labeled=50")
    assert result.returncode == exit_codes.BAD_INPUT
    line = _fatal(result)
    assert (
        "config.data.num_labeled: 100 -> 50" in line
        and "num_train_steps" not in line.split("; these")[0]
    ), line
    assert _listing(workdir) == before and (workdir / "config.json").read_text() == record


def test_an_incompatible_config_names_the_field_not_orbax(shared, trained, tmp_path):
    workdir = _copy(trained, tmp_path)
    before = _listing(workdir)
    result = _main(shared, workdir, "--config.latents.noise_size=10", "--mode=eval")
    assert result.returncode == exit_codes.BAD_INPUT
    line = _fatal(result)
    assert "config.latents.noise_size: 62 -> 10" in line and "strict" not in line
    assert _listing(workdir) == before


def test_allowed_changes_are_recorded_and_a_finished_run_says_so(shared, trained, tmp_path):
    workdir = _copy(trained, tmp_path)
    before = _listing(workdir)
    result = _main(shared, workdir)
    assert result.returncode == exit_codes.FINISHED, result.stderr[-3000:]
    assert result.stdout.splitlines()[0].startswith(f"already finished: {workdir} holds step 6")
    assert _listing(workdir) == before

    result = _main(shared, workdir, "--config.num_train_steps=8", "--config.eval_every_steps=4")
    assert result.returncode == exit_codes.FINISHED, result.stderr[-3000:]
    history = [
        json.loads(line) for line in (workdir / loop.CONFIG_HISTORY).read_text().split("\n") if line
    ]
    assert [h["step"] for h in history] == [0, STEPS]
    assert history[1]["changed"] == {"num_train_steps": [6, 8], "eval_every_steps": [0, 4]}
    assert json.loads((workdir / "config.json").read_text())["num_train_steps"] == 8


def test_preemption_exits_75_with_one_line_and_saves_within_a_few_steps(shared, tmp_path):
    process = subprocess.Popen(
        _command(shared, tmp_path, "--config.num_train_steps=100000", "--config.log_every_steps=1"),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # clu's logging writer prints each step's scalars as "[step] name=value, ...".
    seen, deadline = 0, time.time() + 400
    for line in process.stdout:
        if match := re.search(r"\] \[(\d+)\] .*d_loss=", line):
            seen = int(match.group(1))
            if seen >= 10:
                signalled = time.time()
                process.send_signal(signal.SIGTERM)
                break
        assert time.time() < deadline
    output = process.communicate(timeout=120)[0]
    elapsed = time.time() - signalled
    assert process.returncode == exit_codes.PREEMPTED, output[-3000:]
    (line,) = [x for x in output.splitlines() if x.startswith("preempted: ")]
    saved = int(re.search(r"saved step (\d+)", line).group(1))
    assert seen < saved <= seen + loop.MAX_STEPS_AHEAD + 2, (seen, saved)
    assert str(saved) in os.listdir(tmp_path / checkpointing.LATEST_DIR)
    print(f"SIGTERM after logged step {seen}: saved step {saved}, exited {elapsed:.1f} s later")


def test_a_truncated_checkpoint_is_named_with_the_older_intact_one(shared, trained, tmp_path):
    workdir = _copy(trained, tmp_path)
    manifest = workdir / checkpointing.LATEST_DIR / str(STEPS) / "state" / "manifest.ocdbt"
    os.truncate(manifest, 20)
    before = _listing(workdir)
    result = _main(shared, workdir, "--config.num_train_steps=9")
    assert result.returncode == exit_codes.NEEDS_A_PERSON
    line = _fatal(result)
    assert f"checkpoint step {STEPS} in {manifest.parent.parent}" in line
    assert "older checkpoints there: [3]" in line
    assert _listing(workdir) == before


def test_a_nan_names_the_step_and_the_last_good_checkpoint(shared, tmp_path):
    result = _main(
        shared,
        tmp_path,
        "--config.optimizer.g_learning_rate=1e30",  # G's parameters overflow at step 2.
        "--config.checkpoint_every_steps=1",
        "--config.log_every_steps=1",
    )
    assert result.returncode == exit_codes.NEEDS_A_PERSON
    line = _fatal(result)
    assert line.startswith("FATAL diverged: non-finite metrics at step 2")
    assert f"the last good checkpoint is step 1 in {tmp_path}" in line
    assert os.listdir(tmp_path / checkpointing.LATEST_DIR) == ["1"]


@pytest.mark.parametrize("mode", ["eval", "sample"])
def test_eval_and_sample_on_a_mistyped_work_dir_create_nothing(shared, tmp_path, mode):
    workdir = tmp_path / "no_such_run"
    result = _main(shared, workdir, f"--mode={mode}")
    assert result.returncode == exit_codes.BAD_INPUT
    assert _fatal(result).startswith(f"FATAL no checkpoint in {workdir}/checkpoints")
    assert not workdir.exists()


def test_eval_prints_its_metrics_before_a_failed_write(shared, trained, tmp_path):
    workdir = _copy(trained, tmp_path)
    (workdir / f"eval_{STEPS}.json").mkdir()  # Where eval writes: now unwritable.
    before = _listing(workdir)
    result = _main(shared, workdir, "--mode=eval")
    assert result.returncode == exit_codes.NEEDS_A_PERSON
    assert _fatal(result).startswith("FATAL I/O error: Is a directory")
    assert f"step: {STEPS}" in result.stdout and "cond_acc_direct: " in result.stdout
    assert _listing(workdir) == before


def test_an_unwritable_work_dir_is_one_line(shared, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = _main(shared, blocker / "run")
    assert result.returncode == exit_codes.NEEDS_A_PERSON
    assert _fatal(result).startswith("FATAL I/O error: ")
    assert _listing(tmp_path) == {"file": 0}


@pytest.fixture
def small_disk(tmp_path):
    """A 220 MB file system (tmpfs; needs root), unmounted afterwards: room for the smoke run's
    first checkpoint (about 150 MB) and its small files, not for a second checkpoint."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=220m", "tmpfs", str(mount)])
    if made.returncode:
        pytest.skip("cannot mount a small tmpfs here (not root)")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_is_one_line_and_keeps_what_was_saved(shared, small_disk, tmp_path):
    workdir = small_disk / "run"
    result = _main(shared, workdir)
    assert result.returncode == exit_codes.NEEDS_A_PERSON
    line = _fatal(result)  # Also: none of orbax's background-thread tracebacks.
    where = workdir / checkpointing.LATEST_DIR
    assert line.startswith(f"FATAL disk full: saving step {STEPS} to {where} failed"), line
    assert "intact checkpoints: [3], left untouched" in line and "--workdir" in line, line
    # What was saved is whole: a copy of the run on a disk with room resumes from step 3.
    moved = tmp_path / "moved"
    shutil.copytree(workdir, moved)
    result = _main(shared, moved)
    assert result.returncode == exit_codes.FINISHED, result.stderr[-3000:]
    assert f"Resumed from step 3 in {moved}" in result.stderr
    # Resaved over the failed save's leftover (orbax's "6.orbax-checkpoint-tmp").
    assert sorted(os.listdir(moved / checkpointing.LATEST_DIR)) == ["3", str(STEPS)]


@pytest.mark.parametrize(
    "flag, expected",
    [
        ("--config.latents.continuous_range=0", "config.latents.continuous_range: 0.0 is not in"),
        ("--config.optimizer.b1=1.0", "config.optimizer.b1: 1.0 is not in [0.0, 1.0)"),
        ("--config.data.num_labeled=7", "config.data.num_labeled: 7 stratified labels cannot"),
        ("--config.data.name=digts", "config.data.name: unknown data set 'digts'; did you mean"),
    ],
)
def test_start_up_checks_stop_before_anything_is_written(shared, tmp_path, flag, expected):
    workdir = tmp_path / "run"
    result = _main(shared, workdir, flag)
    assert result.returncode == exit_codes.BAD_INPUT
    assert "FATAL invalid config:" in result.stderr and expected in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) < 20, result.stderr
    assert not workdir.exists()


def test_eval_history_has_one_row_per_step_after_a_resume(shared, tmp_path):
    flags = ("--config.eval_every_steps=2", "--config.checkpoint_every_steps=3")
    result = _main(shared, tmp_path, "--config.num_train_steps=5", *flags)
    assert result.returncode == 0, result.stderr[-3000:]
    # As if killed after the step-4 evaluation and before the step-5 checkpoint.
    shutil.rmtree(tmp_path / checkpointing.LATEST_DIR / "5")
    result = _main(shared, tmp_path, "--config.num_train_steps=6", *flags)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(x) for x in (tmp_path / loop.EVAL_HISTORY).read_text().splitlines()]
    assert [row["step"] for row in rows] == [2, 4, 6]
