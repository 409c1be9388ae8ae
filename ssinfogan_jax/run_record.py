"""The work dir's record of a run, beside its checkpoints: what was run, and what it measured.

    config.json            the run's config (as last accepted), written only once every check
                           has passed (the config's, the data's, the saved config's and the
                           checkpoint's)
    config_history.jsonl   one line per accepted start: step, time, what changed
    eval_history.jsonl     one line of eval metrics per evaluated step

A resumed run may change only `config_checks.MAY_CHANGE_ON_RESUME`; until a first checkpoint
exists, a rerun may change any field (its config.json is replaced). Writers are process 0's;
every path may be gs://.
"""

from __future__ import annotations

import datetime
import json
import os

import jax
import ml_collections
from absl import logging
from etils import epath

from ssinfogan_jax import config_checks, fileio

EVAL_HISTORY = "eval_history.jsonl"
CONFIG_FILE = "config.json"
CONFIG_HISTORY = "config_history.jsonl"


def _is_main() -> bool:
    return jax.process_index() == 0


def has_checkpoint(workdir: str) -> bool:
    """Whether `workdir` holds a saved step (a leftover temporary folder of a failed first
    save does not count)."""
    from ssinfogan_jax import checkpointing  # orbax: only where a work dir is read.

    folder = epath.Path(workdir, checkpointing.LATEST_DIR)
    return folder.is_dir() and any(p.name.isdigit() for p in folder.iterdir())


def saved_config(config: ml_collections.ConfigDict, workdir: str) -> tuple[dict | None, dict]:
    """(the work dir's config.json or None, {field: [saved, new]} allowed changes).

    Raises ConfigError naming every field that differs and may not change on resume. Where
    the work dir holds no checkpoint yet (a first run stopped before its first save), nothing
    was trained with the saved config: it is (None, {}), and config.json is replaced.
    """
    path = epath.Path(workdir, CONFIG_FILE)
    if not path.exists():
        return None, {}
    try:
        saved = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise config_checks.ConfigError(
            f"{path} is not valid JSON ({e}); restore it, or use a fresh --workdir"
        ) from None
    allowed, problems = config_checks.compare_with_saved(saved, config)
    if problems and not has_checkpoint(workdir):
        logging.warning(
            "%s holds no checkpoint: its config.json is replaced (%s).",
            workdir,
            "; ".join(problems),
        )
        return None, {}
    if problems:
        raise config_checks.ConfigError(
            f"{workdir} was trained with another config: {'; '.join(problems)}; these "
            "cannot change on resume (only cadences, lengths, paths and eval settings can): pass "
            f"the saved values (in {path}) or use a fresh --workdir"
        )
    return saved, allowed


def write_config(config, workdir: str, saved: dict | None, changes: dict, step: int) -> None:
    """config.json and a line of config_history.jsonl (process 0; after every check)."""
    if not _is_main():
        return
    if saved is None or changes:
        epath.Path(workdir, CONFIG_FILE).write_text(config.to_json_best_effort(indent=2))
    line = {
        "step": step,
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "changed": changes,
    }
    path = epath.Path(workdir, CONFIG_HISTORY)
    previous = path.read_text() if path.exists() else ""
    path.write_text(previous + json.dumps(line) + "\n")


def read_eval_history(workdir: str, path: str | None = None) -> list[dict]:
    """The rows of <workdir>/eval_history.jsonl (or of `path`)."""
    file = epath.Path(path or os.path.join(workdir, EVAL_HISTORY))
    if not file.exists():
        return []
    return [json.loads(line) for line in file.read_text().splitlines() if line.strip()]


def last_eval(workdir: str) -> dict:
    """The metrics of the work dir's last evaluated step ({} if none)."""
    rows = read_eval_history(workdir)
    return {k: v for k, v in rows[-1].items() if k != "step"} if rows else {}


def append_eval(workdir: str, step: int, metrics: dict, path: str | None = None) -> None:
    """Adds a row to <workdir>/eval_history.jsonl (or to `path`); process 0 only."""
    if _is_main():
        record = json.dumps({"step": step, **metrics})
        fileio.append_line(path or os.path.join(workdir, EVAL_HISTORY), record)


def trim_eval_history(workdir: str, step: int) -> None:
    """Drops rows after `step` (evaluated after the checkpoint that a run resumes from: the
    resumed run evaluates those steps again), so the file keeps one row per step."""
    rows = read_eval_history(workdir)
    kept = [row for row in rows if row["step"] <= step]
    if _is_main() and len(kept) < len(rows):
        text = "".join(json.dumps(row) + "\n" for row in kept)
        epath.Path(workdir, EVAL_HISTORY).write_text(text)


def hparams(config: ml_collections.ConfigDict) -> dict:
    """The config flattened to TensorBoard hparams ('data.name': 'mnist', ...)."""
    flat = {}

    def visit(prefix, node):
        for key, value in node.items():
            name = f"{prefix}{key}"
            if isinstance(value, ml_collections.ConfigDict):
                visit(f"{name}.", value)
            elif isinstance(value, bool | int | float | str):
                flat[name] = value
            else:
                flat[name] = str(value)

    visit("", config)
    return flat
