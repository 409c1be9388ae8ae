"""Entry point: train, evaluate or sample ss-InfoGAN.

  python -m ssinfogan_jax.main --config=configs/mnist.py --workdir=/tmp/mnist \
      [--mode=train|eval|sample] [--config.data.num_labeled=100]

Multi-host: on TPU VMs the processes find each other by themselves; on CPU/GPU clusters pass
--coordinator_address=HOST:PORT --num_processes=N --process_id=I on every process.
"""

from __future__ import annotations

import logging as std_logging
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and samples.")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval", "sample"], "What to run.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the job.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")
flags.mark_flags_as_required(["config", "workdir"])


def _parse_flags(argv: list[str]) -> list[str]:
    """absl's parser, with a clean one-line message for a misspelt --config.x.y override."""
    try:
        return app.parse_flags_with_usage(argv)
    except (AttributeError, KeyError) as e:
        message = str(e).strip("'\"").replace("\\n", " ").replace("\\'", "'")
        print(f"FATAL config error: {message}", file=sys.stderr)
        sys.exit(2)


def _quiet_orbax(record) -> bool:
    """Drops orbax's per-save INFO lines (dozens per checkpoint); keeps its warnings."""
    return "/orbax/" not in record.pathname or record.levelno >= std_logging.WARNING


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.get_absl_handler().addFilter(_quiet_orbax)
    # Imported here so that --help and flag errors answer without loading TF and JAX.
    import jax
    import tensorflow as tf

    from ssinfogan_jax import config_checks, loop, parallel
    from ssinfogan_jax.data import folder

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
    try:
        if _MODE.value == "train":
            metrics = loop.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
        elif _MODE.value == "eval":
            metrics = loop.evaluate(_CONFIG.value, _WORKDIR.value)
        else:
            metrics = loop.sample(_CONFIG.value, _WORKDIR.value)
    except config_checks.ConfigError as e:
        print(f"FATAL {e}", file=sys.stderr)
        sys.exit(2)
    except folder.FolderError as e:  # Bad images or CSV, found while converting them.
        print(f"FATAL bad input: {e}", file=sys.stderr)
        sys.exit(2)
    if jax.process_index() == 0:
        for name, value in sorted(metrics.items()):
            print(f"{name}: {value}")


if __name__ == "__main__":
    app.run(main, flags_parser=_parse_flags)
