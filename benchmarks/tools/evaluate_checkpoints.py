"""Evaluates every checkpoint of a work dir after (or beside) training: an eval history.

    python -m benchmarks.tools.evaluate_checkpoints --config=configs/digit_scenes.py:svhn \
        --workdir=/tmp/run [--out=/tmp/run/eval_history.jsonl] [--grids=/tmp/run/grids]

A command line for `loop.evaluate_checkpoints`. For a run trained with
`--config.eval_every_steps=0 --config.max_checkpoints_to_keep=100`, so that training never
stops for an evaluation (on a slow, shared machine): each checkpoint not yet in `--out` is
restored and evaluated as the loop would (one JSON line per step, the loop's eval_history
format), and the sample and traversal grids of the latest one are written as PNGs. Run it again
to add the newer checkpoints. With `--raw_generator`, a run that keeps a moving average of G
(`optimizer.g_ema_decay`) is judged by its G instead (write to another `--out`), so the two can
be compared on the same checkpoints. `--steps=1000,2000` judges only those checkpoints;
`--config.eval.samples_per_value=1024` (to another `--out`) measures each code on 8x the runs'
128 samples per value (a third of their standard error).
"""

from __future__ import annotations

import os

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "The run's config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "The run's work dir.")
_OUT = flags.DEFINE_string("out", None, "JSON lines; default <workdir>/eval_history.jsonl.")
_GRIDS = flags.DEFINE_string("grids", None, "Folder for the latest step's grid PNGs.")
_RAW_GENERATOR = flags.DEFINE_bool(
    "raw_generator", False, "Judge G itself, not the moving average of G that the run keeps."
)
_STEPS = flags.DEFINE_list("steps", None, "Only these checkpoints (default: every one).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv) -> None:
    del argv
    from ssinfogan_jax import evaluation, loop, train

    config, workdir = _CONFIG.value, _WORKDIR.value
    steps = [int(step) for step in _STEPS.value] if _STEPS.value else None
    try:
        loop.evaluate_checkpoints(
            config, workdir, steps=steps, out=_OUT.value, raw_generator=_RAW_GENERATOR.value
        )
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    if _GRIDS.value:
        exp, state, step = loop.restore(config, workdir)
        if _RAW_GENERATOR.value:
            state = train.without_generator_ema(state)
        for name, grid in evaluation.make_evaluator(exp).image_grids(state).items():
            path = os.path.join(_GRIDS.value, f"step{step}_{name.replace('/', '_')}.png")
            evaluation.save_image(path, grid[0])


if __name__ == "__main__":
    app.run(main)
