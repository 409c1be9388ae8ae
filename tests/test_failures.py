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
import time

import jax
import numpy as np
import pytest
from conftest import (
    DIGITS_EVAL_EVERY,
    DIGITS_STEPS,
    copy_run,
    listing,
    run_main,
    saved_state,
    start_main,
)

from ssinfogan_jax import checkpointing, exit_codes, loop, run_record

STEPS = DIGITS_STEPS  # Checkpoints at 3 and 6; the shared run evaluates at 2, 4 and 6.


def _fatal(result: subprocess.CompletedProcess) -> str:
    """The one FATAL line on stderr; no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.startswith("FATAL")]
    assert len(lines) == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return lines[0]


def test_a_rejected_resume_leaves_the_record_as_it_was(digits_shared, digits_run, tmp_path):
    workdir = copy_run(digits_run, tmp_path)
    before, record = listing(workdir), (workdir / "config.json").read_text()
    result = run_main(
        digits_shared, workdir, "--config.num_train_steps=60", "--config.data.num_labeled=50"
    )
    assert result.returncode == exit_codes.BAD_INPUT
    line = _fatal(result)
    assert (
        "config.data.num_labeled: 100 -> 50" in line
        and "num_train_steps" not in line.split("; these")[0]
    ), line
    assert listing(workdir) == before and (workdir / "config.json").read_text() == record


def test_an_incompatible_config_names_the_field_not_orbax(digits_shared, digits_run, tmp_path):
    workdir = copy_run(digits_run, tmp_path)
    before = listing(workdir)
    result = run_main(digits_shared, workdir, "--config.latents.noise_size=10", "--mode=eval")
    assert result.returncode == exit_codes.BAD_INPUT
    line = _fatal(result)
    assert "config.latents.noise_size: 62 -> 10" in line and "strict" not in line
    assert listing(workdir) == before


@pytest.fixture(scope="module")
def resumed_run(digits_shared, digits_run, tmp_path_factory):
    """The shared run resumed from step 3 to 8 with evaluations every 4 steps instead of 2, as
    if killed after the step-6 evaluation and before the step-6 checkpoint: (work dir, result)."""
    workdir = copy_run(digits_run, tmp_path_factory.mktemp("resumed"))
    shutil.rmtree(workdir / checkpointing.LATEST_DIR / str(STEPS))
    result = run_main(
        digits_shared, workdir, "--config.num_train_steps=8", "--config.eval_every_steps=4"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, result


def test_allowed_changes_are_recorded_and_a_finished_run_says_so(
    digits_shared, digits_run, resumed_run, tmp_path
):
    workdir = copy_run(digits_run, tmp_path)
    before = listing(workdir)
    result = run_main(digits_shared, workdir)
    assert result.returncode == exit_codes.FINISHED, result.stderr[-3000:]
    assert result.stdout.splitlines()[0].startswith(f"already finished: {workdir} holds step 6")
    assert listing(workdir) == before

    workdir, _ = resumed_run
    history = [
        json.loads(line)
        for line in (workdir / run_record.CONFIG_HISTORY).read_text().split("\n")
        if line
    ]
    assert [h["step"] for h in history] == [0, 3]
    assert history[1]["changed"] == {
        "num_train_steps": [STEPS, 8],
        "eval_every_steps": [DIGITS_EVAL_EVERY, 4],
    }
    assert json.loads((workdir / "config.json").read_text())["num_train_steps"] == 8


def test_eval_history_has_one_row_per_step_after_a_resume(resumed_run):
    workdir, result = resumed_run
    assert "Resumed from step 3" in result.stderr
    # Rows 2, 4 and 6 before; the resume from step 3 drops 4 and 6 and evaluates at 4 and 8.
    rows = [json.loads(x) for x in (workdir / run_record.EVAL_HISTORY).read_text().splitlines()]
    assert [row["step"] for row in rows] == [2, 4, 8]


def test_preemption_exits_75_with_one_line_and_saves_within_a_few_steps(digits_shared, tmp_path):
    process = start_main(
        digits_shared,
        tmp_path,
        "--config.num_train_steps=100000",
        "--config.log_every_steps=1",
        text=True,
    )
    # The progress line of each logged step: "step N/100000 (  0%): ... steps/s, ETA ...".
    seen, deadline = 0, time.time() + 400
    for line in process.stdout:
        if match := re.match(r"step +(\d+)/100000 .* steps/s", line):
            seen = int(match.group(1))
            if seen >= 10:
                signalled = time.time()
                process.send_signal(signal.SIGTERM)
                break
        assert time.time() < deadline
    output = process.communicate(timeout=120)[0]
    elapsed = time.time() - signalled
    assert process.returncode == exit_codes.PREEMPTED, output[-3000:]
    assert "SIGTERM" in output
    (line,) = [x for x in output.splitlines() if x.startswith("preempted: ")]
    saved = int(re.search(r"saved step (\d+)", line).group(1))
    assert seen < saved <= seen + loop.MAX_STEPS_AHEAD + 2, (seen, saved)
    assert str(saved) in os.listdir(tmp_path / checkpointing.LATEST_DIR)
    # The saved checkpoint is the whole state at that step, ready for a resume.
    step, state = saved_state(tmp_path)
    assert step == int(state["step"]) == saved
    print(f"SIGTERM after logged step {seen}: saved step {saved}, exited {elapsed:.1f} s later")


def test_a_truncated_checkpoint_is_named_with_the_older_intact_one(
    digits_shared, digits_run, tmp_path
):
    workdir = copy_run(digits_run, tmp_path)
    manifest = workdir / checkpointing.LATEST_DIR / str(STEPS) / "state" / "manifest.ocdbt"
    os.truncate(manifest, 20)
    before = listing(workdir)
    result = run_main(digits_shared, workdir, "--config.num_train_steps=9")
    assert result.returncode == exit_codes.NEEDS_A_PERSON
    line = _fatal(result)
    assert f"checkpoint step {STEPS} in {manifest.parent.parent}" in line
    assert "older checkpoints there: [3]" in line
    assert listing(workdir) == before


def test_a_nan_names_the_step_and_keeps_the_last_good_checkpoint(digits_shared, tmp_path):
    result = run_main(
        digits_shared,
        tmp_path,
        "--config.optimizer.g_learning_rate=1e30",  # G's parameters overflow at step 2.
        "--config.checkpoint_every_steps=1",
        "--config.log_every_steps=1",
        # A train step of its own (the learning rate is compiled in): compiled cheaply.
        env=dict(os.environ, JAX_DISABLE_MOST_OPTIMIZATIONS="1"),
    )
    assert result.returncode == exit_codes.NEEDS_A_PERSON
    line = _fatal(result)
    assert line.startswith("FATAL diverged: non-finite metrics at step 2")
    assert f"the last good checkpoint is step 1 in {tmp_path}" in line
    assert os.listdir(tmp_path / checkpointing.LATEST_DIR) == ["1"]
    step, state = saved_state(tmp_path)
    assert step == int(state["step"]) == 1
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(state["generator"]["params"]))


@pytest.mark.parametrize("mode", ["eval", "sample"])
def test_eval_and_sample_on_a_mistyped_work_dir_create_nothing(digits_shared, tmp_path, mode):
    workdir = tmp_path / "no_such_run"
    result = run_main(digits_shared, workdir, f"--mode={mode}")
    assert result.returncode == exit_codes.BAD_INPUT
    assert _fatal(result).startswith(f"FATAL no checkpoint in {workdir}/checkpoints")
    assert not workdir.exists()


def test_eval_prints_its_metrics_before_a_failed_write(digits_shared, digits_run, tmp_path):
    workdir = copy_run(digits_run, tmp_path)
    (workdir / f"eval_{STEPS}.json").mkdir()  # Where eval writes: now unwritable.
    before = listing(workdir)
    result = run_main(digits_shared, workdir, "--mode=eval")
    assert result.returncode == exit_codes.NEEDS_A_PERSON
    assert _fatal(result).startswith("FATAL I/O error: Is a directory")
    assert f"step: {STEPS}" in result.stdout and "cond_acc_direct: " in result.stdout
    assert listing(workdir) == before


def test_an_unwritable_work_dir_is_one_line(digits_shared, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run_main(digits_shared, blocker / "run")
    assert result.returncode == exit_codes.NEEDS_A_PERSON
    assert _fatal(result).startswith("FATAL I/O error: ")
    assert listing(tmp_path) == {"file": 0}


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


def test_a_full_disk_is_one_line_and_keeps_what_was_saved(digits_shared, small_disk, tmp_path):
    workdir = small_disk / "run"
    result = run_main(digits_shared, workdir)
    assert result.returncode == exit_codes.NEEDS_A_PERSON
    line = _fatal(result)  # Also: none of orbax's background-thread tracebacks.
    where = workdir / checkpointing.LATEST_DIR
    assert line.startswith(f"FATAL disk full: saving step {STEPS} to {where} failed"), line
    assert "intact checkpoints: [3], left untouched" in line and "--workdir" in line, line
    # What was saved is whole: a copy of the run on a disk with room resumes from step 3.
    moved = tmp_path / "moved"
    shutil.copytree(workdir, moved)
    result = run_main(digits_shared, moved)
    assert result.returncode == exit_codes.FINISHED, result.stderr[-3000:]
    assert f"Resumed from step 3 in {moved}" in result.stderr
    # Resaved over the failed save's leftover (orbax's "6.orbax-checkpoint-tmp").
    assert sorted(os.listdir(moved / checkpointing.LATEST_DIR)) == ["3", str(STEPS)]


@pytest.mark.parametrize(
    "flags, expected",
    [
        (  # Checked together; each on its own line.
            (
                "--config.latents.continuous_range=0",
                "--config.optimizer.b1=1.0",
                "--config.data.num_labeled=7",
            ),
            (
                "config.latents.continuous_range: 0.0 is not in",
                "config.optimizer.b1: 1.0 is not in [0.0, 1.0)",
                "config.data.num_labeled: 7 stratified labels cannot",
            ),
        ),
        # Alone: an unknown data set leaves the label checks nothing to check.
        (("--config.data.name=digts",), ("config.data.name: unknown data set 'digts'; did you",)),
    ],
    ids=["values", "data_name"],
)
def test_start_up_checks_stop_before_anything_is_written(digits_shared, tmp_path, flags, expected):
    workdir = tmp_path / "run"
    result = run_main(digits_shared, workdir, *flags)
    assert result.returncode == exit_codes.BAD_INPUT
    assert "FATAL invalid config:" in result.stderr
    for message in expected:
        assert message in result.stderr, (message, result.stderr[-3000:])
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) < 20, result.stderr
    assert not workdir.exists()
