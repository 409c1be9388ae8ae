"""The training loop and the inference modes: what `main.py` runs.

    train_and_evaluate(config, workdir)   # trains from scratch or resumes; returns eval metrics
    train_and_evaluate(config, workdir, data={"train": (images, labels), "test": ...})
    evaluate(config, workdir)             # a checkpoint's metrics -> <workdir>/eval_<step>.json
    evaluate_checkpoints(config, workdir) # every checkpoint's metrics -> an eval history
    sample(config, workdir)               # a checkpoint's samples -> <workdir>/samples/

`data` (any mode): your own data instead of config.data's, as a data source
(`data.sources`) or arrays (uint8 images [N, H, W, C]; labels {name: [N]}, -1 or NaN where
unlabelled).

The loop ties the pieces together and owns the chores: the data-parallel step, checkpoints
(orbax), TensorBoard (clu's writer, hparams, progress with steps/s and ETA), evaluation,
SIGTERM (TPU preemption) and NaN stops. The pieces know nothing of it; the work dir's record
is `run_record`'s. Eval and sample only read the work dir.
"""

from __future__ import annotations

import collections
import functools
import json
import os
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
    on_device,
    parallel,
    reporting,
    run_record,
)
from ssinfogan_jax import experiment as experiment_lib
from ssinfogan_jax import train as train_lib
from ssinfogan_jax.data import labeled_subset
from ssinfogan_jax.evaluation import sampling

# How many train steps the host may dispatch ahead of the device. It bounds how late a SIGTERM
# is acted on (the step saved is at most this many steps after the one running at the signal)
# while still queueing the next step before the device finishes the current one.
MAX_STEPS_AHEAD = 2


class AlreadyFinished(exit_codes.RunStopped):
    """The work dir's latest checkpoint is at (or past) num_train_steps: nothing to train."""

    exit_code = exit_codes.FINISHED

    def __init__(self, step: int, num_train_steps: int, workdir: str, metrics: dict[str, float]):
        self.step, self.metrics = step, metrics
        super().__init__(
            f"already finished: {workdir} holds step {step} (num_train_steps="
            f"{num_train_steps}); nothing to do (raise --config.num_train_steps to "
            "train further)"
        )


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


def _setup(config, workdir: str, data=None, read_only: bool = False):
    """What every mode needs, checked before anything is written: the experiment (config
    checked once), the data's availability, the work dir's saved config, the compilation
    cache, a fresh state and the checkpointer (which creates nothing until it saves)."""
    exp = experiment_lib.from_config(config, data=data)
    if problems := exp.source.problems():
        raise input_pipeline.DataNotFoundError("\n".join(problems))
    if not read_only:  # E.g. a folder's images are converted (and checked) here, before any write.
        exp.source.prepare()
    saved = run_record.saved_config(config, workdir)
    if exp.compilation_cache_dir:
        compilation_cache.enable(exp.compilation_cache_dir)
    best = reporting.best_metric(exp)  # An unknown name: ConfigError, before any write.
    checkpointer = checkpointing.Checkpointer(
        workdir, exp.cadences.max_checkpoints_to_keep, best, read_only=read_only
    )
    state = train_lib.create_train_state(jax.random.PRNGKey(exp.seed), exp)
    return exp, state, checkpointer, saved


def _data_parallel(exp: experiment_lib.Experiment) -> parallel.DataParallel:
    """The step and state placement: jit with NamedSharding (by default), pmap or shard_map."""
    kind = parallel.resolve_kind(exp.parallel)
    if kind == "jit":
        step = train_lib.bind_train_step(exp)
        return parallel.DataParallel.create(step, "jit", donate=train_lib.default_donation())
    step = train_lib.bind_train_step(exp, axis_name=parallel.AXIS)
    return parallel.DataParallel.create(step, kind)


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str, data=None
) -> dict[str, float]:
    """Trains from scratch, or resumes from the latest checkpoint in `workdir`.

    Writes TensorBoard events, the latest and best checkpoints, the labelled subset and the
    run record into `workdir`; returns the final evaluation metrics. `data`: your own data
    (see the module's doc); a resume must pass the same data.

    Raises (see main.py for what each becomes): config_checks.ConfigError (also for a config
    that differs from the work dir's where it may not), input_pipeline.DataNotFoundError,
    checkpointing.CheckpointError, FloatingPointError (a NaN), OSError, AlreadyFinished, and
    exit_codes.Preempted after saving the step that all hosts agreed on.
    """
    if config.get("runs"):  # Several runs as one program.
        from ssinfogan_jax import sweep

        return sweep.train_runs(config, workdir, data)
    exp, state, checkpointer, (saved, changes) = _setup(config, workdir, data)
    try:
        meta = {}
        if checkpointer.latest_step() is not None:
            state, meta = checkpointer.restore(state)
            reporting.say("Resumed from step %d in %s.", meta["step"], workdir)
        start_step = int(state.step)
        # A SIGTERM cut this step's evaluation short, or came before it: evaluated first.
        eval_pending = bool(meta.get(checkpointing.EVAL_PENDING))
        if start_step >= exp.cadences.num_train_steps and not eval_pending:
            last = run_record.last_eval(workdir)
            raise AlreadyFinished(start_step, exp.cadences.num_train_steps, workdir, last)
        if _is_main():  # In the log's first lines: what the first minutes are spent on.
            reporting.announce_judge(exp)
        epath.Path(workdir).mkdir(parents=True, exist_ok=True)
        try:
            batches = input_pipeline.create_train_data(
                exp, workdir, process_index=jax.process_index(), process_count=jax.process_count()
            )
        except ValueError as e:
            if labeled_subset.SUBSET_FILE in str(e):  # The work dir's subset is another one.
                raise config_checks.ConfigError(str(e)) from e
            raise
        evaluator = evaluation.make_evaluator(exp)
        # Every check has passed: from here on the run writes its record.
        run_record.write_config(config, workdir, saved, changes, start_step)
        run_record.trim_eval_history(workdir, start_step)
        return _train(
            exp, workdir, state, start_step, checkpointer, batches, evaluator, eval_pending
        )
    finally:  # Pending async saves complete even when a NaN, an error or SIGTERM stops the loop.
        try:
            with exit_codes.deferred():
                checkpointer.wait_until_finished()
        finally:
            checkpointer.close()


def _train(
    exp, workdir, state, start_step, checkpointer, data, evaluator, eval_pending=False
) -> dict[str, float]:
    """The loop. SIGTERM (exit_codes) is read at every step, where the step's chores decide
    what is saved: the state of that step, with EVAL_PENDING (checkpointing) in its meta where
    the step's evaluation was due and not done (a signal during an evaluation cuts it short);
    a resume evaluates that step first (`eval_pending`)."""
    cadences = exp.cadences
    is_main = _is_main()
    # TensorBoard and the log on host 0; the other hosts' writers only log (at INFO, which
    # main.py silences there).
    writer = metric_writers.create_default_writer(
        exp.tensorboard_dir or workdir, just_logging=not is_main
    )
    if start_step == 0:
        writer.write_hparams(run_record.hparams(exp.config))
    dp = _data_parallel(exp)
    report_progress = periodic_actions.ReportProgress(  # Called per call: steps by name.
        num_train_steps=cadences.num_train_steps,
        writer=writer,
        on_steps=range(cadences.log_every, cadences.num_train_steps + 1, cadences.log_every),
    )
    progress = reporting.Progress(cadences.num_train_steps, start_step)
    images_dir = None
    eval_metrics: dict[str, float] = {}

    def evaluate(step: int, host_state) -> bool:
        """The evaluation of `step`; False where a SIGTERM cut it short (nothing written)."""
        nonlocal eval_metrics
        try:
            with exit_codes.interruptible(), report_progress.timed("eval"), progress.paused():
                metrics = evaluator.evaluate(host_state)
        except exit_codes.Terminated:
            return False
        eval_metrics = metrics
        writer.write_scalars(step, reporting.tagged(eval_metrics, "eval"))
        # Plain-text history beside TensorBoard, for sweeps and plots.
        run_record.append_eval(workdir, step, eval_metrics)
        _keep_best(checkpointer.best_metric, checkpointer, step, host_state, eval_metrics)
        return True

    def draw(step: int, host_state) -> bool:
        """Grids, as PNGs in the work dir and in TensorBoard; False where cut short."""
        nonlocal images_dir
        try:
            with exit_codes.interruptible(), progress.paused():
                grids = evaluator.image_grids(host_state)
        except exit_codes.Terminated:
            return False
        writer.write_images(step, grids)
        if is_main:
            images_dir = reporting.write_images(grids, workdir, step)
        return True

    history = []
    in_flight = collections.deque()  # The metrics of dispatched calls, not yet waited for.
    step = start_step
    try:
        with checkpointing.PreemptionNotice(checkpointer) as preemption:
            if (
                eval_pending
            ):  # Saved with checkpointing.EVAL_PENDING: the step's evaluation comes first.
                if not evaluate(step, state):
                    raise exit_codes.Preempted(step, workdir, note=checkpointing.CUT_SHORT)
                if not draw(step, state):
                    raise exit_codes.Preempted(step, workdir)
            if step < cadences.num_train_steps:
                state = dp.replicate(state)
                advance, chunk = on_device.stepper(exp, data, dp, start_step)
                reporting.say("Training from step %d to %d.", step, cadences.num_train_steps)
            while step < cadences.num_train_steps:
                count = chunk(step)
                state, metrics = advance(state, step, count)
                step += count
                history.append(metrics)
                in_flight.append(metrics)
                if len(in_flight) > max(
                    MAX_STEPS_AHEAD // count, 1
                ):  # Bounded lead over the device.
                    jax.block_until_ready(in_flight.popleft())
                report_progress(step, time.monotonic())
                preempted = preemption.should_stop(step)
                if cadences.due(cadences.log_every, step) or preempted:
                    summary = reporting.summarize(history)
                    history = []
                    _check_finite(summary, step, checkpointer)
                    writer.write_scalars(step, reporting.tagged(summary, "train"))
                    if is_main:
                        reporting.say(progress.line(step))
                host_state = None
                eval_due = cadences.due(cadences.eval_every, step)
                if not preempted and (eval_due or cadences.due(cadences.images_every, step)):
                    host_state = dp.unreplicate(state)
                    # A SIGTERM inside cuts the evaluation short (on one host; on several, see
                    # PreemptionNotice): the step is saved with it still due.
                    eval_due = eval_due and not evaluate(step, host_state)
                    preempted = eval_due or not draw(step, host_state)
                if preempted or cadences.due(cadences.checkpoint_every, step):
                    host_state = host_state or dp.unreplicate(state)
                    pending = {checkpointing.EVAL_PENDING: True} if preempted and eval_due else None
                    checkpointer.save(step, host_state, pending)
                if preempted:
                    checkpointer.wait_until_finished()
                    logging.warning("Saved step %d after a preemption notice; exiting.", step)
                    note = checkpointing.CUT_SHORT if eval_due else ""
                    raise exit_codes.Preempted(step, workdir, note=note)
    finally:
        writer.flush()
    if is_main:
        best = checkpointer.latest_step("best") if checkpointer.best_metric else None
        lines = reporting.summary_lines(
            eval_metrics,
            step,
            workdir,
            images_dir=images_dir,
            best_dir=os.path.join(workdir, checkpointing.BEST_DIR, str(best)) if best else None,
            tensorboard_dir=exp.tensorboard_dir,
            elapsed=time.monotonic() - progress.started,
            labelled=exp.has_labels,
        )
        print("\n".join(lines), flush=True)
    return eval_metrics


def _keep_best(best_metric: str, checkpointer, step: int, state, metrics: dict) -> None:
    if best_metric and best_metric not in metrics:
        logging.warning(
            "config.best_metric %r is not an eval metric (%s): no best checkpoint is kept.",
            best_metric,
            ", ".join(sorted(metrics)),
        )
    if best_metric in metrics:
        checkpointer.save_best(step, state, metrics)


def restore(config: ml_collections.ConfigDict, workdir: str, which: str | None = None, data=None):
    """(experiment, state, step) of the 'latest' or 'best' checkpoint in `workdir` (`which`;
    default config.sample.checkpoint), for inference; reads the work dir, writes nothing."""
    exp, state, checkpointer, _ = _setup(config, workdir, data, read_only=True)
    try:
        state, meta = checkpointer.restore(state, which=which or exp.sample.checkpoint)
    finally:
        checkpointer.close()
    return exp, state, meta["step"]


def evaluate(
    config: ml_collections.ConfigDict, workdir: str, report=None, data=None
) -> dict[str, float]:
    """Evaluates the latest (or `config.sample.checkpoint`) checkpoint; writes eval_<step>.json.

    `report(step, metrics)`, if given, is called (on process 0) before anything is written, so
    the metrics are shown even when the work dir cannot be written. A group's work dir
    (config.runs): each run's, in <workdir>/<run>; returns {run: metrics} and reports with
    `run=` its name.
    """
    if config.get("runs"):
        from ssinfogan_jax import sweep

        results = {}
        for name, run in sweep.checked_run_configs(config).items():
            named = None if report is None else functools.partial(report, run=name)
            results[name] = evaluate(run, os.path.join(workdir, name), named, data)
        return results
    exp, state, step = restore(config, workdir, data=data)
    result = evaluation.make_evaluator(exp).evaluate(state)
    if _is_main():
        if report is not None:
            report(step, result)
        path = os.path.join(workdir, f"eval_{step}.json")
        fileio.write_json(path, {"step": step, **result}, indent=2)
        logging.info("Wrote %s.", path)
    return result


def evaluate_checkpoints(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    steps: list[int] | None = None,
    out: str | None = None,
    raw_generator: bool = False,
    data=None,
) -> list[dict]:
    """Evaluates each checkpoint of `workdir` (or those of `steps`) not yet in the eval
    history `out` (default: the run's own), appending one row per step; returns the new rows.

    For a run trained with eval_every_steps=0 and max_checkpoints_to_keep high, so that
    training never stops for an evaluation. `raw_generator`: judge G itself where the run
    keeps a moving average of G (write to another `out` to compare the two). Raises
    ValueError for a step without a checkpoint.
    """
    exp, template, checkpointer, _ = _setup(config, workdir, data, read_only=True)
    try:
        saved = checkpointer.all_steps()
        if steps is not None:
            if missing := sorted(set(steps) - set(saved)):
                raise ValueError(f"no checkpoint at step {missing} in {workdir} (saved: {saved})")
            saved = sorted(set(steps))
        done = {row["step"] for row in run_record.read_eval_history(workdir, out)}
        evaluator, rows = None, []
        for step in (s for s in saved if s not in done):
            state, _ = checkpointer.restore(template, step=step)
            if raw_generator:
                state = train_lib.without_generator_ema(state)
            evaluator = evaluator or evaluation.make_evaluator(exp)
            metrics = evaluator.evaluate(state)
            run_record.append_eval(workdir, step, metrics, out)
            logging.info("step %d: %s", step, metrics)
            rows.append({"step": step, **metrics})
    finally:
        checkpointer.close()
    return rows


def sample(config: ml_collections.ConfigDict, workdir: str, data=None) -> dict[str, str]:
    """Generates from a checkpoint into <workdir>/samples (see sampling.write_samples); for a
    group's work dir (config.runs), into each run's, {run: {what: path}}."""
    if config.get("runs"):
        from ssinfogan_jax import sweep

        return {
            name: sample(run, os.path.join(workdir, name), data)
            for name, run in sweep.checked_run_configs(config).items()
        }
    exp, state, step = restore(config, workdir, data=data)
    generator, _ = exp.models()
    variables = train_lib.generator_variables(state)  # G's moving average where one is kept.
    generate = sampling.make_generate_fn(generator, exp.layout)(variables)
    out_dir = os.path.join(workdir, "samples")
    written = sampling.write_samples(
        generate,
        exp.layout,
        jax.random.PRNGKey(exp.seed),
        out_dir,
        exp.arch.image_range,
        per_value=exp.sample.per_value,
        traversal_rows=exp.sample.traversal_rows,
        traversal_values=exp.sample.traversal_values,
        class_names=dict(exp.source.class_names),
    )
    if _is_main():
        written.update(_write_row_titles(exp, written))
    logging.info("Samples of step %d written to %s.", step, out_dir)
    return written


def _write_row_titles(exp: experiment_lib.Experiment, written: dict[str, str]) -> dict[str, str]:
    """<code>.json beside each <code>.png grid of a categorical c_ss code: what each row is
    (the class names where the data names them, else the class indices)."""
    out = {}
    for code in exp.layout.supervised_codes:
        if code.categorical and code.name in written:
            rows = exp.source.class_names.get(code.label) or [str(k) for k in range(code.size)]
            path = os.path.splitext(written[code.name])[0] + ".json"
            payload = {"code": code.name, "label": code.label, "rows": rows}
            epath.Path(path).write_text(json.dumps(payload, indent=2))
            out[f"{code.name}_rows"] = path
    return out
