"""What a run tells the person who started it: the log's lines, progress, and the end summary.

At the default verbosity (`quiet_logs`) the log holds warnings, errors and the few INFO lines
this project writes for a user (the judge's training, progress, the summary), each as a plain
line; TF's, tfds', JAX's and absl's INFO lines, the metric writer's dumps and the
hyperparameters (config.json and TensorBoard's hparams hold them) are dropped. `--verbose`
keeps everything, in absl's format.

    progress = Progress(num_train_steps, start_step)   # progress.line(step) every log_every
    summarize(history)                                  # train metrics of a window -> scalars
    tagged(summary, "train")                            # {"train/<name>": value} for TensorBoard
    summary_lines(metrics, step, workdir, ...)          # the end of a run, for a person
"""

from __future__ import annotations

import contextlib
import logging as std_logging
import os
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping

import jax
import numpy as np
from absl import logging

from ssinfogan_jax import fileio

# The INFO lines a user reads at the default verbosity: {module: message prefixes (() = all)}.
# The data's preparation or download (minutes on a first run), where the judge and the
# labelled subset come from, and this module's own lines.
_USER_LINES = {
    "reporting.py": (),
    "builders.py": (),
    "official_files.py": (),
    "prepare_once.py": (),
    "judge.py": ("Judge (independent classifier) from",),
    "input_pipeline.py": ("Wrote the labelled subset",),
    "labeled_subset.py": ("Read the labelled subset",),
}
# A train metric `<name>` + COUNT_SUFFIX is the weight of `<name>` in a window's mean (e.g. the
# labelled examples behind a batch's Q_ss accuracy); it is not written itself.
COUNT_SUFFIX = ":count"


class _PlainFormatter(std_logging.Formatter):
    """INFO as the message alone; a warning or an error with its level in front."""

    def format(self, record) -> str:
        message = record.getMessage()
        if record.levelno >= std_logging.WARNING:
            message = f"{record.levelname} {message}"
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        return message


# tfds warns of a version folder without dataset_info.json each time it is asked whether a
# set is prepared; the project asks before it prepares one, and says what it does.
_TFDS_NOISE = ("has no dataset_info.json",)


def _user_line(record) -> bool:
    if record.levelno >= std_logging.WARNING:
        tfds_noise = "tensorflow_datasets" in record.pathname and any(
            n in record.getMessage() for n in _TFDS_NOISE
        )
        return not tfds_noise or record.levelno >= std_logging.ERROR
    if "/ssinfogan_jax/" not in record.pathname.replace(os.sep, "/"):
        return False
    prefixes = _USER_LINES.get(os.path.basename(record.pathname))
    if prefixes is None:
        return False
    return not prefixes or record.getMessage().startswith(prefixes)


def _import_tensorflow_quietly() -> None:
    """Imports TensorFlow with file descriptor 2 caught: what its C++ side prints on import
    (absl's notice, oneDNN's and the CPU instructions' INFO lines, whatever
    TF_CPP_MIN_LOG_LEVEL says) is dropped, unless the import fails."""
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        except BaseException:
            os.dup2(saved, 2)
            caught.seek(0)
            sys.stderr.write(caught.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def drop_storage_fault_reports(record) -> bool:
    """A log filter (False: drop) for the storage clients' reports of a fault that main's one
    line states (what failed, the cause's first line, where, what to do). orbax logs a failed
    save once per thread that meets it (four for one save, hundreds of lines) and a
    checkpoint's metadata it could not read; gcsfs logs each request that ran out of retries,
    and fsspec's prefetcher each read that met one. The checkpointer reports every failed save
    as that one line."""
    if "/orbax/" in record.pathname and record.exc_info:
        return False
    if "/orbax/" in record.pathname:
        errors = [a for a in record.args if isinstance(a, BaseException)] if record.args else []
    elif record.exc_info and any(f"/{c}/" in record.pathname for c in ("gcsfs", "fsspec")):
        errors = [record.exc_info[1]]
    else:
        return True
    return not any(fileio.storage_unreachable_reason(error) for error in errors)


def quiet_logs() -> None:
    """The default verbosity: see the module's doc. Call before TensorFlow is imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TF's C++ INFO lines after import.
    _import_tensorflow_quietly()
    handler = logging.get_absl_handler()
    handler.addFilter(_user_line)
    handler.setFormatter(_PlainFormatter())
    with contextlib.suppress(ImportError):  # tfds' progress bars (tqdm) on preparing a set.
        import tensorflow_datasets as tfds

        tfds.disable_progress_bar()


def say(message: str, *args) -> None:
    """One INFO line a user reads (shown at the default verbosity)."""
    logging.info(message, *args)


def duration(seconds: float) -> str:
    """'1h02m', '3m05s', '0m42s'."""
    seconds = max(round(seconds), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s"


class Progress:
    """Progress lines: step, share done, steps/s over the last window (evaluation time left
    out) and the time left at that rate."""

    def __init__(self, num_train_steps: int, start_step: int, clock=time.monotonic):
        self.num_train_steps = num_train_steps
        self.clock = clock
        self.started = clock()
        self._last_step, self._last_time, self._paused = start_step, self.started, 0.0

    @contextlib.contextmanager
    def paused(self):
        """Time spent inside (an evaluation) counts in neither steps/s nor the ETA."""
        begin = self.clock()
        try:
            yield
        finally:
            self._paused += self.clock() - begin

    def line(self, step: int) -> str:
        now = self.clock()
        elapsed = max(now - self._last_time - self._paused, 1e-9)
        rate = (step - self._last_step) / elapsed
        self._last_step, self._last_time, self._paused = step, now, 0.0
        left = (self.num_train_steps - step) / rate if rate > 0 else float("inf")
        eta = duration(left) if np.isfinite(left) else "?"
        width = len(str(self.num_train_steps))
        return (
            f"step {step:>{width}}/{self.num_train_steps} "
            f"({100 * step / self.num_train_steps:3.0f}%): {rate:.1f} steps/s, ETA {eta}"
        )


def summarize(history: Iterable[Mapping[str, np.ndarray]]) -> dict[str, float]:
    """The train metrics of a window of calls (each {name: scalar or [k] per step}) as one
    value each: the mean over steps, or, for a metric with a `<name>:count`, the mean weighted
    by that count (a Q_ss accuracy over the labelled examples only; absent where the window
    held none). The counts themselves are left out."""
    history = jax.device_get(list(history))  # One transfer for the whole window.
    values = {k: np.concatenate([np.ravel(m[k]) for m in history]) for k in history[0]}
    out = {}
    for name, v in values.items():
        if name.endswith(COUNT_SUFFIX):
            continue
        counts = values.get(name + COUNT_SUFFIX)
        if counts is None:
            out[name] = float(np.mean(v))
        elif counts.sum() > 0:
            out[name] = float(np.sum(v * counts) / np.sum(counts))
    return out


def tagged(metrics: Mapping[str, float], group: str) -> dict[str, float]:
    """{f"{group}/{name}": value}: TensorBoard's train/ and eval/ sections share no tag."""
    return {f"{group}/{k}": v for k, v in metrics.items()}


def headline(metrics: Mapping[str, float], labelled: bool = True) -> tuple[str, float, str] | None:
    """(metric name, value, what it means) of a run's eval metrics: the direct conditional
    accuracy of its judged code, or their mean over several codes; None without a judge.
    Trained without labels (`labelled` False), a code's values name no class: then the
    accuracy under the best one-to-one map of values to classes."""
    per_code = sorted(k.split("/", 1)[1] for k in metrics if k.startswith("cond_acc_direct/"))
    if not labelled and len(per_code) == 1 and f"cond_acc_mapped/{per_code[0]}" in metrics:
        name = f"cond_acc_mapped/{per_code[0]}"
        return (
            name,
            metrics[name],
            f"of samples show one {per_code[0]} per code value, under the best one-to-one map "
            "of values to classes (trained without labels, the run picks which is which)",
        )
    if len(per_code) > 1 and "cond_acc_direct_mean" in metrics:
        names = ", ".join(per_code)
        return (
            "cond_acc_direct_mean",
            metrics["cond_acc_direct_mean"],
            f"of samples show the class their code asks for, mean over {len(per_code)} codes "
            f"({names})",
        )
    if per_code:
        name = f"cond_acc_direct/{per_code[0]}"
        return name, metrics[name], f"of samples show the {per_code[0]} their code asks for"
    return None


def headline_text(name: str, value: float, meaning: str) -> str:
    """'direct conditional accuracy: 98.9% of samples show ... (cond_acc_direct/digit)'."""
    kind = "mapped" if name.startswith("cond_acc_mapped") else "direct"
    return f"{kind} conditional accuracy: {100 * value:.1f}% {meaning} ({name})"


def summary_lines(
    metrics: Mapping[str, float],
    step: int,
    workdir: str,
    *,
    images_dir: str | None = None,
    best_dir: str | None = None,
    tensorboard_dir: str | None = None,
    elapsed: float | None = None,
    labelled: bool = True,
) -> list[str]:
    """The end of a run for a person: the step, the headline metric and what it means, and
    where the samples, the best checkpoint, TensorBoard's files and every metric are."""
    took = f" in {duration(elapsed)}" if elapsed is not None else ""
    lines = [f"Finished at step {step}{took}."]
    if head := headline(metrics, labelled):
        lines.append(headline_text(*head))
    elif "q_ss_test_acc" in metrics:
        lines.append(
            f"Q_ss test accuracy: {100 * metrics['q_ss_test_acc']:.1f}% of real test images "
            "classified right by D's Q_ss head (q_ss_test_acc)"
        )
    if images_dir:
        lines.append(f"samples:         {images_dir}")
    if best_dir:
        lines.append(f"best checkpoint: {best_dir}")
    lines.append(f"TensorBoard:     tensorboard --logdir={tensorboard_dir or workdir}")
    lines.append(f"all metrics:     {os.path.join(workdir, 'eval_history.jsonl')}")
    return lines


# Seconds per image of a judge's training step on a 2-core CPU at 32x32 (2,000 steps of batch
# 128 on a 32x32 colour set took ~16 minutes; 300 steps of batch 32 on 28x28 digits ~11 s).
_JUDGE_CPU_SECONDS_PER_IMAGE_32 = 3.75e-3


def announce_judge(exp) -> None:
    """Says, before the judge trains (the first run of a data set), that it trains first, how
    long it may take, and where it is kept for later runs."""
    import jax

    from ssinfogan_jax.evaluation import classifier as classifier_lib
    from ssinfogan_jax.evaluation import evaluator as evaluator_lib
    from ssinfogan_jax.evaluation import judge as judge_lib

    heads = evaluator_lib.judged_labels(exp.layout, exp.data.labels)
    if not heads:
        return
    path = judge_lib.cache_path(exp, heads)
    if fileio.exists(os.path.join(path, classifier_lib.INFO_FILE)):
        return
    spec = exp.judge
    if jax.default_backend() == "cpu":
        height, width = exp.arch.image_shape[:2]
        seconds = spec.steps * spec.batch_size * height * width / 1024
        estimate = f"about {duration(seconds * _JUDGE_CPU_SECONDS_PER_IMAGE_32)} on a 2-core CPU"
    else:
        estimate = "a minute or two on an accelerator"
    say(
        "First the judge (the classifier that scores samples) trains: %d steps of batch %d, "
        "%s, once per data set (kept in %s); then the GAN.",
        spec.steps,
        spec.batch_size,
        estimate,
        path,
    )


def write_images(grids: Mapping[str, np.ndarray], workdir: str, step: int) -> str:
    """The grids ({tag: uint8 [1, H, W, C]}, `Evaluator.image_grids`) as PNGs in
    <workdir>/images/step_<step>/ (tag 'samples/digit' -> samples_digit.png); returns the
    folder."""
    from ssinfogan_jax.evaluation import images as images_lib

    folder = os.path.join(workdir, "images", f"step_{step}")
    for tag, grid in grids.items():
        images_lib.save_image(os.path.join(folder, tag.replace("/", "_") + ".png"), grid[0])
    return folder


def best_metric(exp) -> str:
    """config.best_metric as an eval metric of `exp` ('' = none). The default,
    'cond_acc_direct', names the mean over codes (cond_acc_direct_mean) where several
    categorical codes are judged, and the best map's accuracy (cond_acc_mapped) in a run
    without labels, whose code values name no class. Raises config_checks.ConfigError for a
    name the run's evaluation never returns, listing those it does."""
    from ssinfogan_jax import config_checks
    from ssinfogan_jax.evaluation import evaluator as evaluator_lib

    name = exp.cadences.best_metric
    if not name:
        return name
    heads = evaluator_lib.judged_labels(exp.layout, exp.data.labels)
    names = evaluator_lib.possible_metric_names(exp.layout, heads)
    if name == "cond_acc_direct" and name not in names:
        return "cond_acc_direct_mean"
    if name == "cond_acc_direct" and not exp.has_labels:  # A value names no class: map them.
        return "cond_acc_mapped"
    if name not in names:
        raise config_checks.ConfigError(
            f"config.best_metric={name!r} is not an eval metric of this run; pick one of "
            f"{', '.join(sorted(names))} (or '' for no best checkpoint)"
        )
    return name
