"""How `python -m ssinfogan_jax.main` ends, for schedulers and retry loops.

    0   FINISHED        trained to num_train_steps (or already had), or eval / sample done
    2   BAD_INPUT       the config, the data or the work dir cannot run as given; fix the
                        command (nothing in the work dir was changed)
    3   NEEDS_A_PERSON  a fault to look at: a corrupt or unreadable checkpoint, a NaN, a full
                        disk, an I/O error, storage unreachable (the intact checkpoints are
                        kept; once it is fixed, the same command resumes)
    75  PREEMPTED       stopped by SIGTERM, after saving a checkpoint where the loop had a
                        state to save: run the same command again to resume (75 is
                        EX_TEMPFAIL of sysexits.h, "try again later")

Any other code (1 with a traceback) is a bug: please report it.

SIGTERM (a spot VM's or a scheduler's notice) is one mechanism from start to exit, installed
by main at start (`install_sigterm_handler`): where the run can stop at a point of its own (the
training loop's steps, a save, a file's write: `deferred()`), the signal is noted and read there
(`sigterm_received()`); anywhere else (start-up, data loading, a restore, the judge's training,
eval and sample, an evaluation inside the loop: `interruptible()`) it raises `Terminated`,
which unwinds (closing files and locks on the way) to main's exit 75. Under `jax.distributed`
JAX's preemption service owns SIGTERM instead (checkpointing.PreemptionNotice).
"""

from __future__ import annotations

import contextlib
import signal

FINISHED = 0
BAD_INPUT = 2
NEEDS_A_PERSON = 3
PREEMPTED = 75


class RunStopped(Exception):
    """The run stopped early for a known reason; `exit_code` says which (see above)."""

    exit_code = NEEDS_A_PERSON


class Preempted(RunStopped):
    """SIGTERM (on any host): every host saved `step` and stopped; resume by running again."""

    exit_code = PREEMPTED

    def __init__(self, step: int, workdir: str, note: str = ""):
        self.step, self.workdir = step, workdir
        super().__init__(
            f"preempted: saved step {step} in {workdir} after SIGTERM{note}; run the same "
            "command again to resume from it"
        )


class Terminated(BaseException):
    """SIGTERM where the run had no step of its own to stop at (see the module's doc).

    A BaseException, as KeyboardInterrupt: an `except Exception` on the way (a library's retry,
    a conversion of errors) lets it through to main, which exits PREEMPTED with one line."""

    exit_code = PREEMPTED


class _Sigterm:
    """The state of the one SIGTERM handler: whether a signal came, and how deep the code now
    runs in `deferred` blocks (0: a signal raises Terminated at once)."""

    def __init__(self):
        self.installed = False
        self.received = False
        self.raised = False
        self.deferring = 0

    def handle(self, signum, frame) -> None:
        self.received = True
        self.raise_if_due()

    def raise_if_due(self) -> None:
        if self.received and not self.deferring and not self.raised:
            self.raised = True  # Once: the unwinding itself (cleanup, a save) is not cut short.
            raise Terminated()


_SIGTERM = _Sigterm()


def install_sigterm_handler():
    """Makes SIGTERM stop the run as the module's doc says (main calls it first; call it from
    the main thread). Returns the handler it replaced."""
    previous = signal.signal(signal.SIGTERM, _SIGTERM.handle)
    _SIGTERM.__init__()  # A fresh run in this process: no signal yet, no deferred block.
    _SIGTERM.installed = True
    return previous


def restore_sigterm_handler(previous) -> None:
    """Puts back the handler that `install_sigterm_handler` returned."""
    signal.signal(signal.SIGTERM, previous)
    _SIGTERM.installed = False


def sigterm_handler_installed() -> bool:
    return _SIGTERM.installed


def sigterm_received() -> bool:
    """Whether SIGTERM came (read at the training loop's steps)."""
    return _SIGTERM.received


def sigterm_acted_on() -> None:
    """The run stops for the signal in its own way (the loop saves and raises Preempted): no
    Terminated after this, e.g. on leaving the `deferred` wait for the last saves."""
    _SIGTERM.raised = True


@contextlib.contextmanager
def deferred(then_raise: bool = True):
    """A block that a SIGTERM does not cut short (a step, a save, a file's write): the signal
    is noted; code inside reads `sigterm_received()` where it can stop, and on leaving the
    outermost such block a signal not acted on raises Terminated (unless not `then_raise`:
    the block acted on it, e.g. the training loop, which finished or saved)."""
    _SIGTERM.deferring += 1
    try:
        yield
    finally:
        _SIGTERM.deferring -= 1
    if then_raise:
        _SIGTERM.raise_if_due()


@contextlib.contextmanager
def interruptible():
    """A block that a SIGTERM cuts short even inside `deferred` (an evaluation): Terminated is
    raised at once, or on entering if the signal came before; the caller catches it to save."""
    deferring, _SIGTERM.deferring = _SIGTERM.deferring, 0
    try:
        _SIGTERM.raise_if_due()
        yield
    finally:
        _SIGTERM.deferring = deferring
