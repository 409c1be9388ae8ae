"""The training loop and the two inference modes: what `main.py` runs.

    train_and_evaluate(config, workdir)   # trains from scratch or resumes; returns eval metrics
    evaluate(config, workdir)             # a checkpoint's metrics -> <workdir>/eval_<step>.json
    sample(config, workdir)               # a checkpoint's samples -> <workdir>/samples/

The loop ties the pieces together and owns the chores: data, the data-parallel step,
checkpoints (orbax), TensorBoard (clu's writer, hparams, progress with steps/s and ETA),
evaluation, SIGTERM (TPU preemption) and NaN stops, and the independent classifier's cache.
The pieces know nothing of it.
"""

from __future__ import annotations

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

from ssinfogan_jax import checkpointing, compilation_cache, evaluation, input_pipeline, parallel
from ssinfogan_jax import experiment as experiment_lib
from ssinfogan_jax import train as train_lib
from ssinfogan_jax.data import builders
from ssinfogan_jax.evaluation import evaluator as evaluator_lib
from ssinfogan_jax.evaluation import sampling

EVAL_HISTORY = "eval_history.jsonl"  # One JSON line of eval metrics per evaluation.


class _PreemptionFlag:
    """Set by SIGTERM (a TPU preemption notice); the loop then saves and exits."""

    def __init__(self):
        self.raised = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        logging.warning("SIGTERM: saving a checkpoint and exiting.")
        self.raised = True

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
            f"the last good checkpoint is step {last} in {checkpointer.workdir}"
            if last is not None
            else "no checkpoint was written"
        )
        raise FloatingPointError(
            f"non-finite metrics at step {step}: {bad}; training stopped without saving; {where}"
        )


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
    continuous label turns the affine augmentation off: it may be geometric (an angle, a size, a
    position), which a random affine map would falsify.
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
    labels = "+".join(sorted(heads))
    path = os.path.join(root, f"{config.data.name}_{labels}_steps{steps}_seed{seed}")
    if epath.Path(path, evaluation.classifier.INFO_FILE).exists():
        classifier = evaluation.load(path)
        logging.info(
            "Independent classifier from %s (validation %s).",
            path,
            classifier.info.get("val_by_head") or classifier.val_accuracy,
        )
        return classifier
    logging.info(
        "Training the independent classifier for %s on the test split (%d steps; cached in %s).",
        ", ".join(heads),
        steps,
        path,
    )
    (test_images, test_labels), (train_images, train_labels) = test_split, train_split
    options = dict(seed=seed, num_steps=steps, log_every=max(steps // 10, 1))
    if not all(heads.values()):
        options.update(max_shift=0.0, max_rotation=0.0, max_scale=0.0)
    if len(heads) == 1 and all(heads.values()):
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


def _setup(config: ml_collections.ConfigDict, workdir: str):
    """What every mode needs: the experiment (config checked once), the compilation cache, a
    fresh state and the checkpointer."""
    exp = experiment_lib.from_config(config)
    if config.compilation_cache_dir:
        compilation_cache.enable(config.compilation_cache_dir)
    checkpointer = checkpointing.Checkpointer(
        workdir, config.max_checkpoints_to_keep, config.best_metric
    )
    state = train_lib.create_train_state(jax.random.PRNGKey(config.seed), exp)
    return exp, state, checkpointer


def _make_evaluator(exp: experiment_lib.Experiment) -> evaluator_lib.Evaluator:
    test_split = input_pipeline.load_split(exp.config, "test")
    classifier = None
    if evaluator_lib.judged_labels(exp.layout):
        train_split = input_pipeline.load_split(exp.config, "train")
        classifier = independent_classifier(exp, test_split, train_split)
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
    config into `workdir`; returns the final evaluation metrics.
    """
    exp, state, checkpointer = _setup(config, workdir)
    if checkpointer.latest_step() is not None:  # Before writing anything into the work dir.
        state, meta = checkpointer.restore(state)
        logging.info("Resumed from step %d in %s.", meta["step"], workdir)

    epath.Path(workdir).mkdir(parents=True, exist_ok=True)
    is_main = _is_main()
    if is_main:
        epath.Path(workdir, "config.json").write_text(config.to_json_best_effort(indent=2))
    # TensorBoard and the log on host 0; the other hosts' writers only log (at INFO, which
    # main.py silences there).
    writer = metric_writers.create_default_writer(workdir, just_logging=not is_main)
    data = input_pipeline.create_train_data(
        exp, workdir, process_index=jax.process_index(), process_count=jax.process_count()
    )
    start_step = int(state.step)
    if start_step == 0:
        writer.write_hparams(_hparams(config))
    # Made at the first evaluation, so training starts at once even when the independent
    # classifier has yet to be trained (or is being trained by another process meanwhile).
    evaluator = None
    dp = _data_parallel(exp)
    state = dp.replicate(state)
    report_progress = periodic_actions.ReportProgress(
        num_train_steps=config.num_train_steps, writer=writer, every_steps=config.log_every_steps
    )

    eval_metrics: dict[str, float] = {}
    history = []
    batches = data.iterate(start_step)
    logging.info("Training from step %d to %d.", start_step, config.num_train_steps)
    try:
        with _PreemptionFlag() as preemption:
            for step in range(start_step + 1, config.num_train_steps + 1):
                state, metrics = dp.train_step(state, dp.shard(next(batches)))
                history.append(metrics)
                report_progress(step, time.monotonic())
                is_last = step == config.num_train_steps
                if step % config.log_every_steps == 0 or is_last or preemption.raised:
                    summary = jax.device_get(history)
                    summary = {k: float(np.mean([m[k] for m in summary])) for k in summary[0]}
                    history = []
                    _check_finite(summary, step, checkpointer)
                    writer.write_scalars(step, summary)
                host_state = None
                if preemption.raised or is_last or step % config.checkpoint_every_steps == 0:
                    host_state = dp.unreplicate(state)
                    checkpointer.save(step, host_state)
                if preemption.raised:
                    logging.warning("Saved step %d after SIGTERM; exiting.", step)
                    break
                if (config.eval_every_steps and step % config.eval_every_steps == 0) or is_last:
                    host_state = host_state or dp.unreplicate(state)
                    with report_progress.timed("eval"):
                        evaluator = evaluator or _make_evaluator(exp)
                        eval_metrics = evaluator.evaluate(host_state)
                    writer.write_scalars(step, eval_metrics)
                    if is_main:  # Plain-text history beside TensorBoard, for sweeps and plots.
                        with epath.Path(workdir, EVAL_HISTORY).open("a") as f:
                            f.write(json.dumps({"step": step, **eval_metrics}) + "\n")
                    if config.best_metric in eval_metrics:
                        checkpointer.save_best(step, host_state, eval_metrics)
                if (config.images_every_steps and step % config.images_every_steps == 0) or is_last:
                    host_state = host_state or dp.unreplicate(state)
                    evaluator = evaluator or _make_evaluator(exp)
                    writer.write_images(step, evaluator.image_grids(host_state))
    finally:  # Pending async saves complete even when a NaN or an error stops the loop.
        checkpointer.wait_until_finished()
        checkpointer.close()
        writer.flush()
    return eval_metrics


def _restore_for_inference(config, workdir: str, which: str):
    exp, state, checkpointer = _setup(config, workdir)
    state, meta = checkpointer.restore(state, which=which)
    checkpointer.close()
    return exp, state, meta["step"]


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
    """Evaluates the latest (or `config.sample.checkpoint`) checkpoint; writes eval_<step>.json."""
    exp, state, step = _restore_for_inference(config, workdir, config.sample.checkpoint)
    result = _make_evaluator(exp).evaluate(state)
    if _is_main():
        path = os.path.join(workdir, f"eval_{step}.json")
        epath.Path(path).write_text(json.dumps({"step": step, **result}, indent=2))
        logging.info("Wrote %s.", path)
    return result


def sample(config: ml_collections.ConfigDict, workdir: str) -> dict[str, str]:
    """Generates from a checkpoint into <workdir>/samples (see sampling.write_samples)."""
    exp, state, step = _restore_for_inference(config, workdir, config.sample.checkpoint)
    generator, _ = exp.models()
    g = state.generator
    generate = sampling.make_generate_fn(generator, exp.layout)(
        {"params": g.params, "batch_stats": g.batch_stats}
    )
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
    logging.info("Samples of step %d written to %s.", step, out_dir)
    return written
