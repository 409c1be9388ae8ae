"""How `python -m ssinfogan_jax.main` ends, for schedulers and retry loops.

    0   FINISHED        trained to num_train_steps (or already had), or eval / sample done
    2   BAD_INPUT       the config, the data or the work dir cannot run as given; fix the
                        command (nothing in the work dir was changed)
    3   NEEDS_A_PERSON  a fault to look at: a corrupt or unreadable checkpoint, a NaN, a full
                        disk, an I/O error (the intact checkpoints are kept)
    75  PREEMPTED       stopped by SIGTERM after saving a checkpoint: run the same command
                        again to resume (75 is EX_TEMPFAIL of sysexits.h, "try again later")

Any other code (1 with a traceback) is a bug: please report it.
"""

from __future__ import annotations

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

    def __init__(self, step: int, workdir: str):
        self.step, self.workdir = step, workdir
        super().__init__(
            f"preempted: saved step {step} in {workdir} after SIGTERM; run the same command "
            "again to resume from it"
        )
