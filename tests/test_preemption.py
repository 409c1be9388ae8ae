"""Several hosts decide a preemption together: two CPU processes (`jax.distributed` on
127.0.0.1) train the digits smoke run; only one of them receives SIGTERM. Both must save the
same step and exit with the preemption code, and resuming must give exactly the run that was
never interrupted."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time

import jax
import numpy as np
from conftest import ROOT, main_command, saved_state

from ssinfogan_jax import checkpointing, exit_codes

EVERY = 2  # Round one's checkpoint cadence: the first regular save shows that it trains.
EXTRA = 2  # Steps the resumed and the straight runs make after the preempted step.


_PORTS: set[int] = set()


def _free_port() -> int:
    """A free port, never one handed out before in this process (two jobs run at once)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _PORTS:
            _PORTS.add(port)
            return port


def _launch(shared, workdir, steps: int, every: int = EVERY) -> list[subprocess.Popen]:
    """The digits smoke run as 2 processes of one job, saving every `every` steps; stdout and
    stderr merged."""
    port = _free_port()
    # Cheap compiles: every run here compiles the same way, so they still compare bit for bit.
    # Tried optimised (2 loaded cores, 2026-11-29): the steps were no faster (about 0.9 s, they
    # wait on the two processes' collectives) and the train step took twice as long to compile.
    env = dict(
        os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1", JAX_DISABLE_MOST_OPTIMIZATIONS="1"
    )
    env.pop("XLA_FLAGS", None)
    return [
        subprocess.Popen(
            main_command(
                shared,
                workdir,
                f"--coordinator_address=127.0.0.1:{port}",
                "--num_processes=2",
                f"--process_id={i}",
                f"--config.num_train_steps={steps}",
                f"--config.checkpoint_every_steps={every}",
                "--config.log_every_steps=1",
                "--config.best_metric=",
            ),
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]


def _outputs(processes, timeout: float = 1500) -> list[str]:
    outputs = []
    for p in processes:
        try:
            outputs.append(p.communicate(timeout=timeout)[0])
        except subprocess.TimeoutExpired:
            for q in processes:
                q.kill()
            raise AssertionError(f"a process hung:\n{p.communicate()[0][-4000:]}") from None
    return outputs


def test_one_host_sigterm_stops_both_at_the_same_step_and_resume_is_exact(digits_shared, tmp_path):
    start = time.time()
    run = tmp_path / "preempted"
    processes = _launch(digits_shared, run, steps=100_000)
    deadline = time.time() + 480
    try:
        while not (run / checkpointing.LATEST_DIR / str(EVERY)).exists():
            assert all(p.poll() is None for p in processes), _outputs(processes)[0][-4000:]
            assert time.time() < deadline, f"no checkpoint at step {EVERY}"
            time.sleep(0.05)
    except AssertionError:
        for p in processes:
            p.kill()  # SIGTERM would only start the preemption protocol.
        raise
    processes[1].send_signal(signal.SIGTERM)  # Only process 1 hears of the preemption.
    outputs = _outputs(processes)
    codes = [p.returncode for p in processes]
    assert codes == [exit_codes.PREEMPTED] * 2, [o[-3000:] for o in outputs]
    saved = []
    for output in outputs:
        lines = [line for line in output.splitlines() if line.startswith("preempted: ")]
        assert len(lines) == 1, output[-3000:]
        saved.append(int(re.search(r"saved step (\d+)", lines[0]).group(1)))
    assert saved[0] == saved[1] > EVERY, saved
    step = saved[0]
    assert sorted(int(s) for s in os.listdir(run / checkpointing.LATEST_DIR))[-1] == step
    print(f"both processes saved step {step} and exited {codes}: {lines[0]}")

    # Both runs save only at their end (a cadence may change on resume).
    straight = tmp_path / "straight"
    straight_run = _launch(digits_shared, straight, steps=step + EXTRA, every=step + EXTRA)
    resumed_run = _launch(digits_shared, run, steps=step + EXTRA, every=step + EXTRA)
    for name, procs in (("straight", straight_run), ("resumed", resumed_run)):
        outputs = _outputs(procs)
        assert [p.returncode for p in procs] == [0, 0], (name, [o[-3000:] for o in outputs])
    resumed_step, resumed = saved_state(run)
    straight_step, reference = saved_state(straight)
    resumed, reference = jax.tree.leaves(resumed), jax.tree.leaves(reference)
    assert resumed_step == straight_step == step + EXTRA
    assert len(resumed) == len(reference)
    for a, b in zip(resumed, reference, strict=True):
        np.testing.assert_array_equal(a, b)
    last = [(p / "eval_history.jsonl").read_text().splitlines()[-1] for p in (run, straight)]
    assert last[0] == last[1]
    print(f"resumed == straight at step {step + EXTRA}; {time.time() - start:.0f} s in all")
