"""Entry point: train, evaluate or sample ss-InfoGAN.

  python -m ssinfogan_jax.main --config=configs/mnist.py --workdir=/tmp/mnist \
      [--mode=train|eval|sample] [--config.data.num_labeled=100]

Multi-host: on TPU VMs the processes find each other by themselves; on CPU/GPU clusters pass
--coordinator_address=HOST:PORT --num_processes=N --process_id=I on every process.

Exit codes (ssinfogan_jax/exit_codes.py): 0 finished, 2 bad config or input, 3 a fault that
needs a person, 75 preempted (run the same command again to resume). Every known failure is
one line on stderr, starting with FATAL; --verbose adds its traceback (and, for a full disk,
orbax's reports of the failed save from its background threads).
"""

from __future__ import annotations

import logging as std_logging
import os
import sys
import traceback

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and samples.")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval", "sample"], "What to run.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the job.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")
_VERBOSE = flags.DEFINE_bool("verbose", False, "Print the traceback of a known failure too.")
flags.mark_flags_as_required(["config", "workdir"])


def _parse_flags(argv: list[str]) -> list[str]:
    """absl's parser, with a clean one-line message for a misspelt --config.x.y override."""
    try:
        return app.parse_flags_with_usage(argv)
    except (AttributeError, KeyError) as e:
        message = str(e).strip("'\"").replace("\\n", " ").replace("\\'", "'")
        print(f"FATAL config error: {message}", file=sys.stderr)
        sys.exit(2)


def _known_failure(e: BaseException, workdir: str) -> tuple[int, str] | None:
    """(exit code, one-line message) for a failure the project knows; None for a bug."""
    import tensorflow as tf

    from ssinfogan_jax import checkpointing, config_checks, exit_codes, fileio, input_pipeline

    if isinstance(e, exit_codes.RunStopped):
        return e.exit_code, str(e)
    if isinstance(e, config_checks.ConfigError):
        return exit_codes.BAD_INPUT, f"FATAL {e}"
    if isinstance(e, input_pipeline.FolderError):  # Bad images or CSV, found converting them.
        return exit_codes.BAD_INPUT, f"FATAL bad input: {e}"
    if isinstance(e, input_pipeline.DataNotFoundError):
        return exit_codes.BAD_INPUT, f"FATAL data not found: {e}"
    if isinstance(e, checkpointing.NoCheckpointError):
        return exit_codes.BAD_INPUT, f"FATAL {e}"
    if isinstance(e, checkpointing.CheckpointError):
        return exit_codes.NEEDS_A_PERSON, f"FATAL {e}"
    if isinstance(e, FloatingPointError):
        return exit_codes.NEEDS_A_PERSON, f"FATAL diverged: {e}"
    if reason := fileio.disk_full_reason(e):  # Not a checkpoint: TensorBoard, the run's record.
        where = getattr(e, "filename", None) or workdir
        advice = checkpointing.disk_full_advice(workdir)
        return exit_codes.NEEDS_A_PERSON, f"FATAL disk full: {reason} ({where}); {advice}"
    if isinstance(e, OSError):
        where = f" ({e.filename})" if e.filename else ""
        reason = e.strerror or str(e)
        return exit_codes.NEEDS_A_PERSON, f"FATAL I/O error: {reason}{where}; fix it and run again"
    if isinstance(e, tf.errors.OpError):  # TensorFlow's file layer (TensorBoard, tf.io).
        return exit_codes.NEEDS_A_PERSON, f"FATAL I/O error: {e.message.splitlines()[0]}"
    return None


def _quiet_orbax(record) -> bool:
    """Drops orbax's per-save INFO lines (dozens per checkpoint); keeps its warnings."""
    return "/orbax/" not in record.pathname or record.levelno >= std_logging.WARNING


def _drop_disk_full_tracebacks(record) -> bool:
    """Drops orbax's reports of a save that failed for a full disk: it logs the error with its
    traceback once per thread that meets it (four for one save), while main's one line says
    what happened, where and what to do. Any other orbax error is kept, traceback and all."""
    if "/orbax/" not in record.pathname or not record.exc_info:
        return True
    from ssinfogan_jax import fileio  # Here: --help answers without loading the package.

    return not fileio.disk_full_reason(record.exc_info[1])


def _drop_closed_loop_noise(unraisable) -> None:
    """After a failed checkpoint restore, orbax's background callbacks find their asyncio loop
    closed and Python prints each as a traceback: noise around the one line that matters."""
    exc = unraisable.exc_value
    if isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed":
        return
    sys.__unraisablehook__(unraisable)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.get_absl_handler().addFilter(_quiet_orbax)
    if not _VERBOSE.value:
        logging.get_absl_handler().addFilter(_drop_disk_full_tracebacks)
    # Imported here so that --help and flag errors answer without loading TF and JAX.
    import jax
    import tensorflow as tf

    from ssinfogan_jax import exit_codes, loop, parallel

    tf.config.experimental.set_visible_devices([], "GPU")  # TF only reads data; JAX owns GPUs.
    parallel.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    if jax.process_index() > 0:  # Progress and summaries come from process 0 only.
        logging.set_verbosity(logging.WARNING)
    logging.info(
        "JAX process %d / %d, local devices: %s",
        jax.process_index(),
        jax.process_count(),
        jax.local_devices(),
    )
    is_main = jax.process_index() == 0

    def report(step, metrics):
        print(f"step: {step}")
        for name, value in sorted(metrics.items()):
            print(f"{name}: {value}", flush=True)

    sys.unraisablehook = _drop_closed_loop_noise
    try:
        if _MODE.value == "train":
            metrics = loop.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
        elif _MODE.value == "eval":
            metrics = loop.evaluate(_CONFIG.value, _WORKDIR.value, report=report)
        else:
            metrics = loop.sample(_CONFIG.value, _WORKDIR.value)
    except Exception as e:  # Sorted into known failures and bugs below.
        known = _known_failure(e, _WORKDIR.value)
        if known is None:
            raise  # A bug: the traceback is what helps.
        code, message = known
        if _VERBOSE.value:
            traceback.print_exc()
        if isinstance(e, loop.AlreadyFinished) and is_main:
            print(message, flush=True)
            for name, value in sorted(e.metrics.items()):
                print(f"{name}: {value}")
        elif code == exit_codes.PREEMPTED:
            print(message, flush=True)
        else:
            print(message, file=sys.stderr, flush=True)
            if jax.process_count() == 1:
                # Nothing is left to save (the loop waited for pending saves), and after a failed
                # restore orbax's background threads print "Event loop is closed" tracebacks
                # during interpreter teardown: skip it, so the one line stays one line.
                sys.stdout.flush()
                os._exit(code)
        sys.exit(code)
    if is_main and _MODE.value != "eval":
        for name, value in sorted(metrics.items()):
            print(f"{name}: {value}")


if __name__ == "__main__":
    app.run(main, flags_parser=_parse_flags)
