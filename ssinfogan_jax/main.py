"""Entry point: train, evaluate or sample ss-InfoGAN.

  python -m ssinfogan_jax.main --config=configs/mnist.py --workdir=/tmp/mnist \
      [--mode=train|eval|sample] [--config.data.num_labeled=100]
  python -m ssinfogan_jax.main --config=mnist:runlocal --workdir=/tmp/smoke  # from anywhere

`--config` takes a config file's path, or the name of a config shipped with the package (the
files of configs/: `--config=celeba`, `--config=configs/celeba.py` where that path does not
exist here), each with its arguments after a colon.

Multi-host: on TPU VMs the processes find each other by themselves; on CPU/GPU clusters pass
--coordinator_address=HOST:PORT --num_processes=N --process_id=I on every process.

Exit codes (ssinfogan_jax/exit_codes.py): 0 finished, 2 bad config or input, 3 a fault that
needs a person, 75 preempted (run the same command again to resume). Every known failure is
one line on stderr, starting with FATAL; --verbose adds its traceback (and, for a failed save
or storage out of reach, the storage clients' reports from their background threads). SIGTERM
at any point exits 75 with one line (exit_codes' doc); a storage outage (a gs:// work dir that
stops answering) exits 3 within about 2 minutes (checkpointing.SAVE_TIMEOUT_S).
"""

from __future__ import annotations

import logging as std_logging
import os
import re
import sys
import traceback

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from ssinfogan_jax import default_config, exit_codes

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    None,
    "Config file (configs/*.py), or a shipped config by name (e.g. digits, mnist:runlocal).",
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and samples.")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval", "sample"], "What to run.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the job.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")
_VERBOSE = flags.DEFINE_bool(
    "verbose",
    False,
    "Every log line (TF's, tfds', JAX's, the metric writer's, the hyperparameters) in absl's "
    "format, and the traceback of a known failure.",
)
flags.mark_flags_as_required(["config", "workdir"])


def _usage_error(message: str) -> None:
    """Ends the process with `message` as one line on stderr and exit code 2 (bad input)."""
    print(f"FATAL {' '.join(message.split())}", file=sys.stderr, flush=True)
    sys.exit(exit_codes.BAD_INPUT)


def _resolve_config(argv: list[str]) -> list[str]:
    """`argv` with the file of `--config` found (default_config.config_file): a path as given
    where it exists, else the shipped config it names."""
    argv = list(argv)
    for i in range(1, len(argv)):
        if argv[i] == "--":
            break
        for prefix in ("--config=", "-config="):
            if argv[i].startswith(prefix):
                argv[i] = prefix + default_config.config_file(argv[i][len(prefix) :])
        if argv[i] in ("--config", "-config") and i + 1 < len(argv):
            argv[i + 1] = default_config.config_file(argv[i + 1])
    return argv


def _flag_error_message(e: flags.Error) -> str:
    """One line for a flag that absl refused."""
    message = str(e)
    required = re.fullmatch(
        r"flag --(\w+)=None: Flag --\1 must have a value other than None\.", message
    )
    if required:
        name = required.group(1)
        what = flags.FLAGS[name].help.rstrip(".")
        return f"--{name} is required ({what}); --helpshort lists the flags"
    if message.startswith("flag --config=") and "Traceback" in message:
        # The config file's get_config raised: its own last line says what is wrong.
        last = message.strip().splitlines()[-1].strip()
        return f"config error: {last.removeprefix('ValueError: ')}"
    if message.startswith("flag "):
        message = f"bad flag {message.removeprefix('flag ')}"
    return f"{message}; --helpshort lists the flags"


def _workdir_problem(workdir: str) -> str | None:
    """Why `workdir` cannot be the run's directory before anything runs (it is a file); None if
    it may be. A folder that cannot be made or written is found when the run writes to it."""
    if "://" not in workdir and os.path.exists(workdir) and not os.path.isdir(workdir):
        return f"--workdir={workdir} is a file, not a directory; pass a new or existing directory"
    return None


def _parse_flags(argv: list[str]) -> list[str]:
    """absl's parser, where every usage error is one line on stderr, starting with FATAL, and
    exit code 2, before TensorFlow and JAX are imported: a config file that does not exist, an
    unknown config argument, a misspelt --config.x.y override, a flag's bad or missing value,
    a work dir that is a file. --verbose adds the full message of a refused flag."""
    try:
        rest = flags.FLAGS(_resolve_config(argv))
    except FileNotFoundError as e:
        _usage_error(f"config not found: {e}")
    except flags.Error as e:
        if "--verbose" in argv:
            print(e, file=sys.stderr)
        _usage_error(_flag_error_message(e))
    except (AttributeError, KeyError) as e:
        message = str(e).strip("'\"").replace("\\n", " ").replace("\\'", "'")
        _usage_error(default_config.renamed_field_hint(argv) or f"config error: {message}")
    if not isinstance(_CONFIG.value, ml_collections.ConfigDict):
        try:  # ml_collections keeps a config file's I/O error until the config is read.
            _CONFIG.value.lock()
        except OSError as e:
            _usage_error(f"config error: {e}")
    if problem := _workdir_problem(_WORKDIR.value):
        _usage_error(problem)
    return rest


def _known_failure(e: BaseException, workdir: str) -> tuple[int, str] | None:
    """(exit code, one-line message) for a failure the project knows; None for a bug."""
    import tensorflow as tf

    from ssinfogan_jax import checkpointing, config_checks, fileio, input_pipeline

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
    if reason := fileio.storage_unreachable_reason(e):  # Not a checkpoint: gcsfs's files.
        advice = checkpointing.storage_unreachable_advice(workdir)
        return exit_codes.NEEDS_A_PERSON, f"FATAL storage unreachable: {reason}; {advice}"
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


def _drop_closed_loop_noise(unraisable) -> None:
    """After a failed checkpoint restore, orbax's background callbacks find their asyncio loop
    closed and Python prints each as a traceback: noise around the one line that matters."""
    exc = unraisable.exc_value
    if isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed":
        return
    sys.__unraisablehook__(unraisable)


def _terminated_line(mode: str, workdir: str) -> str:
    """The one line of a SIGTERM that came where the run had no state of its own to save."""
    if mode == "train":
        what = "outside the training loop's steps: nothing new to save"
    else:
        what = f"during --mode={mode}: its output is not complete"
    return (
        f"preempted: SIGTERM {what}, nothing half-written in {workdir}; run the same command again"
    )


def main(argv: list[str]) -> None:
    # First: from here to the exit, SIGTERM stops the run with exit 75 (exit_codes' doc).
    exit_codes.install_sigterm_handler()
    try:
        _main(argv)
    except exit_codes.Terminated:
        if _VERBOSE.value:
            traceback.print_exc()
        print(_terminated_line(_MODE.value, _WORKDIR.value), flush=True)
        sys.stderr.flush()
        # Without interpreter teardown, which would wait for the background threads of what
        # was cut short (a restore, a data pipeline): the signal's grace period is short.
        os._exit(exit_codes.PREEMPTED)


def _main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.get_absl_handler().addFilter(_quiet_orbax)
    if not _VERBOSE.value:
        from ssinfogan_jax import reporting

        logging.get_absl_handler().addFilter(reporting.drop_storage_fault_reports)
        reporting.quiet_logs()  # Before TensorFlow is imported.
    # Imported here so that --help and flag errors answer without loading TF and JAX.
    import jax
    import tensorflow as tf

    from ssinfogan_jax import loop, parallel

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

    def report(step, metrics, run=""):
        if run:  # A group's work dir: each run in turn.
            print(f"run: {run}")
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
            # Nothing is left to save (the loop waited for pending saves); skip interpreter
            # teardown: after a failed restore orbax's background threads print "Event loop is
            # closed" tracebacks there, and after a storage outage its writes would retry.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        sys.exit(code)
    if is_main and _MODE.value == "sample":
        written = metrics if _CONFIG.value.get("runs") else {"": metrics}
        for run, paths in written.items():
            for name, value in sorted(paths.items()):
                print(f"{run}/{name}: {value}" if run else f"{name}: {value}")
        print(
            "samples.npz: per sample, varied_code and varied_value (the code set and its "
            "value; value_name: its class), in blocks of one value",
            flush=True,
        )


if __name__ == "__main__":
    app.run(main, flags_parser=_parse_flags)
