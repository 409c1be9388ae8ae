"""The training loop and the two inference modes: what `main.py` runs.

    train_and_evaluate(config, workdir)   # trains from scratch or resumes; returns eval metrics
    evaluate(config, workdir)             # a checkpoint's metrics -> <workdir>/eval_<step>.json
    sample(config, workdir)               # a checkpoint's samples -> <workdir>/samples/

The loop ties the pieces together and owns the chores: data, the data-parallel step,
checkpoints (orbax), TensorBoard (clu's writer, hparams, progress with steps/s and ETA),
evaluation, SIGTERM (TPU preemption) and NaN stops, and the independent classifier's cache.
The pieces know nothing of it.

The work dir's record: `config.json` is the config of the run, written only once every check
has passed (the config's, the data's, the saved config's and the checkpoint's); a resumed run
may change only `config_checks.MAY_CHANGE_ON_RESUME`, and each accepted start is appended to
`config_history.jsonl` with what it changed. Eval and sample only read the work dir.
"""

from __future__ import annotations

import collections
import datetime
import json
import os
import signal
import threading
import time

import jax
import ml_collections
import numpy as np
from absl import logging
from clu import metric_writers, periodic_actions
from etils import epath

from ssinfogan_jax import (
    checkpointing,
    compilation_cache,
    config_checks,
    evaluation,
    exit_codes,
    fileio,
    input_pipeline,
    parallel,
)
from ssinfogan_jax import experiment as experiment_lib
from ssinfogan_jax import train as train_lib
from ssinfogan_jax.data import builders, labeled_subset
from ssinfogan_jax.evaluation import evaluator as evaluator_lib
from ssinfogan_jax.evaluation import sampling

EVAL_HISTORY = "eval_history.jsonl"  # One JSON line of eval metrics per evaluated step.
CONFIG_FILE = "config.json"  # The run's config (as last accepted).
CONFIG_HISTORY = "config_history.jsonl"  # One line per accepted start: step, time, changes.
# How many train steps the host may dispatch ahead of the device. It bounds how late a SIGTERM
# is acted on (the step saved is at most this many steps after the one running at the signal)
# while still queueing the next step before the device finishes the current one.
MAX_STEPS_AHEAD = 2


class AlreadyFinished(exit_codes.RunStopped):
    """The work dir's latest checkpoint is at (or past) num_train_steps: nothing to train."""

    exit_code = exit_codes.FINISHED

    def __init__(self, step: int, config, workdir: str, metrics: dict[str, float]):
        self.step, self.metrics = step, metrics
        super().__init__(
            f"already finished: {workdir} holds step {step} (num_train_steps="
            f"{config.num_train_steps}); nothing to do (raise --config.num_train_steps to "
            "train further)"
        )


class _Preemption:
    """The decision to stop for a preemption notice (SIGTERM), taken jointly by all hosts.

    One process: a Python SIGTERM handler sets a flag, read at every step. With
    `jax.distributed`, JAX's preemption service catches SIGTERM on whichever host receives it
    and the hosts agree on a step to save, a step after every host's current one (orbax's
    `reached_preemption`); each host asks at every step and all of them stop at that step.
    """

    def __init__(self, checkpointer: checkpointing.Checkpointer):
        self._checkpointer = checkpointer
        self.raised = False
        self._previous = None

    def __enter__(self):
        # Under jax.distributed the preemption service owns SIGTERM: a Python handler would
        # replace its handler and the other hosts would never hear of the notice.
        own = not jax.distributed.is_initialized()
        if own and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        logging.warning("SIGTERM: saving a checkpoint and exiting.")
        self.raised = True

    def should_stop(self, step: int) -> bool:
        """Call once per step, on every host."""
        return self._checkpointer.reached_preemption(step) or self.raised

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def _is_main() -> bool:
    return jax.process_index() == 0


def _check_finite(metrics: dict[str, float], step: int, checkpointer) -> None:
    bad = {k: v for k, v in metrics.items() if not np.isfinite(v)}
    if bad:
        last = checkpointer.latest_step()
        where = (
            f"the last good checkpoint is step {last} in {checkpointer.workdir} (a rerun resumes "
            "from it; the same config will likely diverge again)"
            if last is not None
            else "no checkpoint was written"
        )
        names = ", ".join(sorted(bad))
        raise FloatingPointError(
            f"non-finite metrics at step {step} ({names}); training stopped without saving; {where}"
        )


def _saved_config(config: ml_collections.ConfigDict, workdir: str) -> tuple[dict | None, dict]:
    """(the work dir's config.json or None, {field: [saved, new]} allowed changes).

    Raises ConfigError naming every field that differs and may not change on resume.
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
    if problems:
        raise config_checks.ConfigError(
            f"{workdir} was trained with another config: {'; '.join(problems)}; these "
            "cannot change on resume (only cadences, lengths, paths and eval settings can): pass "
            f"the saved values (in {path}) or use a fresh --workdir"
        )
    return saved, allowed


def _write_config_record(config, workdir: str, saved: dict | None, changes: dict, step: int):
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


def _read_eval_history(workdir: str) -> list[dict]:
    path = epath.Path(workdir, EVAL_HISTORY)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _trim_eval_history(workdir: str, step: int) -> None:
    """Drops rows after `step` (evaluated after the checkpoint that a run resumes from: the
    resumed run evaluates those steps again), so the file keeps one row per step."""
    rows = _read_eval_history(workdir)
    kept = [row for row in rows if row["step"] <= step]
    if _is_main() and len(kept) < len(rows):
        text = "".join(json.dumps(row) + "\n" for row in kept)
        epath.Path(workdir, EVAL_HISTORY).write_text(text)


def _hparams(config: ml_collections.ConfigDict) -> dict:
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


def independent_classifier(
    exp: experiment_lib.Experiment, test_split, train_split
) -> evaluation.Classifier | None:
    """The classifier that judges samples: loaded, or trained on the *test* split and
    validated on the *train* split (the paper's protocol), then saved for later runs.

    One head per label of the c_ss codes and per other label of the data set
    (`evaluator.judged_labels`); a single label keeps the single-head network of before. A
    continuous label turns random rotation and scaling off, and the random shift too unless
    `eval.classifier_max_shift` keeps it: it may be geometric (an angle, a size, a position),
    which a random affine map would falsify.
    """
    config = exp.config
    heads = evaluator_lib.judged_labels(exp.layout, exp.dataset.labels)
    if not heads:
        return None
    root = config.eval.classifier_dir or os.path.join(
        builders.default_data_dir(config.data.data_dir), "ssinfogan_classifiers"
    )
    # Keyed by what shapes it (a smoke run's never stands in for a real one); never by the
    # training seed: every run of a data set is judged by the same classifier.
    steps, seed = config.eval.classifier_steps, config.eval.classifier_seed
    batch_size = config.eval.classifier_batch_size
    categorical_only = all(heads.values())
    max_shift = config.eval.classifier_max_shift
    key = f"{config.data.name}_{'+'.join(sorted(heads))}_steps{steps}_seed{seed}"
    if exp.dataset.version:  # A set rendered here: its judge is its version's.
        key += f"_v{exp.dataset.version}"
    if batch_size != 128:  # Not the default: a judge of its own (older caches keep their key).
        key += f"_batch{batch_size}"
    if max_shift >= 0:  # Set, not automatic: a judge of its own.
        key += f"_shift{max_shift:g}"
    else:
        max_shift = 2.0 if categorical_only else 0.0
    path = os.path.join(root, key)
    if fileio.exists(os.path.join(path, evaluation.classifier.INFO_FILE)):
        classifier = evaluation.load(path)
        logging.info(
            "Independent classifier from %s (validation %s).",
            path,
            classifier.info.get("val_by_head") or classifier.val_accuracy,
        )
        return classifier
    logging.info(
        "Training the independent classifier for %s on the test split (%d steps of batch %d; "
        "cached in %s).",
        ", ".join(heads),
        steps,
        batch_size,
        path,
    )
    (test_images, test_labels), (train_images, train_labels) = test_split, train_split
    options = dict(
        seed=seed,
        num_steps=steps,
        batch_size=batch_size,
        log_every=max(steps // 10, 1),
        max_shift=max_shift,
    )
    if not categorical_only:
        options.update(max_rotation=0.0, max_scale=0.0)
    if len(heads) == 1 and categorical_only:
        ((label, classes),) = heads.items()
        classifier, val = evaluation.train_classifier(
            test_images,
            test_labels[label],
            train_images,
            train_labels[label],
            num_classes=classes,
            **options,
        )
    else:
        classifier, val = evaluation.train_classifier(
            test_images,
            {k: test_labels[k] for k in heads},
            train_images,
            {k: train_labels[k] for k in heads},
            num_classes=heads,
            **options,
        )
    logging.info("Independent classifier on the train split (accuracy or correlation): %s.", val)
    if _is_main():
        classifier.save(path)
    return classifier


def _setup(config: ml_collections.ConfigDict, workdir: str, read_only: bool = False):
    """What every mode needs, checked before anything is written: the experiment (config
    checked once), the data's availability, the work dir's saved config, the compilation
    cache, a fresh state and the checkpointer (which creates nothing until it saves)."""
    exp = experiment_lib.from_config(config)
    if problems := input_pipeline.availability_problems(config):
        raise input_pipeline.DataNotFoundError("\n".join(problems))
    if not read_only:  # A folder's images are converted (and checked) here, before any write.
        input_pipeline.ensure_data(exp.config)
    saved = _saved_config(config, workdir)
    if config.compilation_cache_dir:
        compilation_cache.enable(config.compilation_cache_dir)
    checkpointer = checkpointing.Checkpointer(
        workdir, config.max_checkpoints_to_keep, config.best_metric, read_only=read_only
    )
    state = train_lib.create_train_state(jax.random.PRNGKey(config.seed), exp)
    return exp, state, checkpointer, saved


def _labelled_only(split, names):
    """The examples of (images, labels) that carry every label in `names` (a folder's rows may
    lack some)."""
    images, labels = split
    keep = np.ones(len(images), bool)
    for name in names:
        keep &= evaluation.metrics.is_labelled(labels[name])
    if keep.all():
        return split
    return images[keep], {name: values[keep] for name, values in labels.items()}


def _make_evaluator(exp: experiment_lib.Experiment) -> evaluator_lib.Evaluator:
    test_split = input_pipeline.load_split(exp.config, "test")
    classifier = None
    if heads := evaluator_lib.judged_labels(exp.layout, exp.dataset.labels):
        train_split = input_pipeline.load_split(exp.config, "train")
        classifier = independent_classifier(
            exp, _labelled_only(test_split, heads), _labelled_only(train_split, heads)
        )
    return evaluator_lib.Evaluator(exp, *test_split, classifier)


def _data_parallel(exp: experiment_lib.Experiment) -> parallel.DataParallel:
    """The step and state placement: plain jit on one device, else pmap or shard_map."""
    kind = exp.config.parallel
    if kind == "auto":
        kind = "pmap" if jax.device_count() > 1 else "jit"
    if kind == "jit":
        step = train_lib.bind_train_step(exp)
        return parallel.DataParallel.create(step, "jit", donate=train_lib.default_donation())
    step = train_lib.bind_train_step(exp, axis_name=parallel.AXIS)
    return parallel.DataParallel.create(step, kind)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
    """Trains from scratch, or resumes from the latest checkpoint in `workdir`.

    Writes TensorBoard events, the latest and best checkpoints, the labelled subset and the
    config record into `workdir`; returns the final evaluation metrics.

    Raises (see main.py for what each becomes): config_checks.ConfigError (also for a config
    that differs from the work dir's where it may not), input_pipeline.DataNotFoundError,
    checkpointing.CheckpointError, FloatingPointError (a NaN), OSError, AlreadyFinished, and
    exit_codes.Preempted after saving the step that all hosts agreed on.
    """
    exp, state, checkpointer, (saved, changes) = _setup(config, workdir)
    try:
        if checkpointer.latest_step() is not None:
            state, meta = checkpointer.restore(state)
            logging.info("Resumed from step %d in %s.", meta["step"], workdir)
        start_step = int(state.step)
        if start_step >= config.num_train_steps:
            rows = _read_eval_history(workdir)
            last = {k: v for k, v in rows[-1].items() if k != "step"} if rows else {}
            raise AlreadyFinished(start_step, config, workdir, last)
        epath.Path(workdir).mkdir(parents=True, exist_ok=True)
        try:
            data = input_pipeline.create_train_data(
                exp, workdir, process_index=jax.process_index(), process_count=jax.process_count()
            )
        except ValueError as e:
            if labeled_subset.SUBSET_FILE in str(e):  # The work dir's subset is another one.
                raise config_checks.ConfigError(str(e)) from e
            raise
        evaluator = _make_evaluator(exp)
        # Every check has passed: from here on the run writes its record.
        _write_config_record(config, workdir, saved, changes, start_step)
        _trim_eval_history(workdir, start_step)
        return _train(exp, workdir, state, start_step, checkpointer, data, evaluator)
    finally:  # Pending async saves complete even when a NaN or an error stops the loop.
        try:
            checkpointer.wait_until_finished()
        finally:
            checkpointer.close()


def _train(exp, workdir, state, start_step, checkpointer, data, evaluator) -> dict[str, float]:
    config = exp.config
    is_main = _is_main()
    # TensorBoard and the log on host 0; the other hosts' writers only log (at INFO, which
    # main.py silences there).
    writer = metric_writers.create_default_writer(
        config.tensorboard_dir or workdir, just_logging=not is_main
    )
    if start_step == 0:
        writer.write_hparams(_hparams(config))
    dp = _data_parallel(exp)
    state = dp.replicate(state)
    report_progress = periodic_actions.ReportProgress(
        num_train_steps=config.num_train_steps, writer=writer, every_steps=config.log_every_steps
    )

    eval_metrics: dict[str, float] = {}
    history = []
    in_flight = collections.deque()  # The metrics of dispatched steps, not yet waited for.
    batches = data.iterate(start_step)
    logging.info("Training from step %d to %d.", start_step, config.num_train_steps)
    try:
        with _Preemption(checkpointer) as preemption:
            for step in range(start_step + 1, config.num_train_steps + 1):
                state, metrics = dp.train_step(state, dp.shard(next(batches)))
                history.append(metrics)
                in_flight.append(metrics)
                if len(in_flight) > MAX_STEPS_AHEAD:  # Bounded lead over the device.
                    jax.block_until_ready(in_flight.popleft())
                report_progress(step, time.monotonic())
                preempted = preemption.should_stop(step)
                is_last = step == config.num_train_steps
                if step % config.log_every_steps == 0 or is_last or preempted:
                    summary = jax.device_get(history)
                    summary = {k: float(np.mean([m[k] for m in summary])) for k in summary[0]}
                    history = []
                    _check_finite(summary, step, checkpointer)
                    writer.write_scalars(step, summary)
                host_state = None
                if preempted or is_last or step % config.checkpoint_every_steps == 0:
                    host_state = dp.unreplicate(state)
                    checkpointer.save(step, host_state)
                if preempted:
                    checkpointer.wait_until_finished()
                    logging.warning("Saved step %d after a preemption notice; exiting.", step)
                    raise exit_codes.Preempted(step, workdir)
                if (config.eval_every_steps and step % config.eval_every_steps == 0) or is_last:
                    host_state = host_state or dp.unreplicate(state)
                    with report_progress.timed("eval"):
                        eval_metrics = evaluator.evaluate(host_state)
                    writer.write_scalars(step, eval_metrics)
                    if is_main:  # Plain-text history beside TensorBoard, for sweeps and plots.
                        record = json.dumps({"step": step, **eval_metrics})
                        fileio.append_line(os.path.join(workdir, EVAL_HISTORY), record)
                    if config.best_metric and config.best_metric not in eval_metrics:
                        logging.warning(
                            "config.best_metric %r is not an eval metric (%s): no best "
                            "checkpoint is kept.",
                            config.best_metric,
                            ", ".join(sorted(eval_metrics)),
                        )
                    if config.best_metric in eval_metrics:
                        checkpointer.save_best(step, host_state, eval_metrics)
                if (config.images_every_steps and step % config.images_every_steps == 0) or is_last:
                    host_state = host_state or dp.unreplicate(state)
                    writer.write_images(step, evaluator.image_grids(host_state))
    finally:
        writer.flush()
    return eval_metrics


def _restore_for_inference(config, workdir: str, which: str):
    """The checkpoint's (experiment, state, step); reads the work dir and writes nothing."""
    exp, state, checkpointer, _ = _setup(config, workdir, read_only=True)
    try:
        state, meta = checkpointer.restore(state, which=which)
    finally:
        checkpointer.close()
    return exp, state, meta["step"]


def evaluate(config: ml_collections.ConfigDict, workdir: str, report=None) -> dict[str, float]:
    """Evaluates the latest (or `config.sample.checkpoint`) checkpoint; writes eval_<step>.json.

    `report(step, metrics)`, if given, is called (on process 0) before anything is written, so
    the metrics are shown even when the work dir cannot be written.
    """
    exp, state, step = _restore_for_inference(config, workdir, config.sample.checkpoint)
    result = _make_evaluator(exp).evaluate(state)
    if _is_main():
        if report is not None:
            report(step, result)
        path = os.path.join(workdir, f"eval_{step}.json")
        fileio.write_json(path, {"step": step, **result}, indent=2)
        logging.info("Wrote %s.", path)
    return result


def sample(config: ml_collections.ConfigDict, workdir: str) -> dict[str, str]:
    """Generates from a checkpoint into <workdir>/samples (see sampling.write_samples)."""
    exp, state, step = _restore_for_inference(config, workdir, config.sample.checkpoint)
    generator, _ = exp.models()
    variables = train_lib.generator_variables(state)  # G's moving average where one is kept.
    generate = sampling.make_generate_fn(generator, exp.layout)(variables)
    out_dir = os.path.join(workdir, "samples")
    written = sampling.write_samples(
        generate,
        exp.layout,
        jax.random.PRNGKey(config.seed),
        out_dir,
        exp.arch.image_range,
        per_value=config.sample.per_value,
        traversal_rows=config.sample.traversal_rows,
        traversal_values=config.sample.traversal_values,
    )
    if _is_main():
        written.update(_write_row_titles(exp, written))
    logging.info("Samples of step %d written to %s.", step, out_dir)
    return written


def _write_row_titles(exp: experiment_lib.Experiment, written: dict[str, str]) -> dict[str, str]:
    """<code>.json beside each <code>.png grid of a categorical c_ss code: what each row is
    (the class names of a folder's labels, else the class indices)."""
    names = input_pipeline.class_names(exp.config)
    out = {}
    for code in exp.layout.supervised_codes:
        if code.categorical and code.name in written:
            rows = names.get(code.label) or [str(k) for k in range(code.size)]
            path = os.path.splitext(written[code.name])[0] + ".json"
            payload = {"code": code.name, "label": code.label, "rows": rows}
            epath.Path(path).write_text(json.dumps(payload, indent=2))
            out[f"{code.name}_rows"] = path
    return out
