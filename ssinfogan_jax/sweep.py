"""Many independent runs trained as one program: vmapped over runs, on the device.

    results = sweep.train_runs(config, workdir)   # config.runs: 'seed=1;seed=2,data.num_labeled=20'

Researchers train seeds, label counts and settings, not one run. Here each run of
`config.runs` (runs separated by ';', each a comma-separated list of field=value overrides of
the config) keeps everything a run has (its own folder `<workdir>/<name>` with checkpoints,
eval history, TensorBoard events and labelled subset, its own seed, labelled subset and
batches), while the runs whose train step is the same program (the same networks, losses and
optimizer settings; they may differ in seeds and labelled subsets) train together: one call runs
`steps_per_dispatch` steps of every run of the group, `jax.vmap` over the runs of
`on_device.multi_step`, with one copy of the training images on the device and a labelled mask
per run. The runs of a group are placed over the devices when there are at least as many runs
as devices, and each run's batch over the rest when there are fewer (a 2-D mesh, runs x batch,
`jax.shard_map` inside `jax.jit`: each device vmaps its runs over its slice of their batches,
and batch norm's statistics and the gradients stay those of each run's whole batch;
`group_mesh`). On XLA:CPU a group's runs take turns at one compiled step instead of being
vmapped (`vmaps_runs`: vmapped convolutions are slower there than the runs apart).
`<workdir>/sweep.png` plots each run's conditional accuracy against steps (direct; under the
best map of code values to classes for runs without labels), the mean over seeds with a band
from the lowest to the highest.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from clu import metric_writers
from etils import epath
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ssinfogan_jax import (
    checkpointing,
    evaluation,
    exit_codes,
    input_pipeline,
    on_device,
    reporting,
    run_record,
)
from ssinfogan_jax import experiment as experiment_lib
from ssinfogan_jax import train as train_lib


@dataclasses.dataclass
class _Run:
    name: str
    workdir: str
    exp: experiment_lib.Experiment
    checkpointer: checkpointing.Checkpointer
    data: input_pipeline.TrainData | None = None
    evaluator: evaluation.Evaluator | None = None
    writer: object = None


def parse_runs(text: str) -> list[dict[str, str]]:
    """'seed=1,data.num_labeled=20;seed=2' -> [{'seed': '1', 'data.num_labeled': '20'}, ...]."""
    runs = []
    for spec in filter(None, (part.strip() for part in text.split(";"))):
        overrides = {}
        for item in filter(None, (x.strip() for x in spec.split(","))):
            field, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"config.runs: {item!r} in {spec!r} is not field=value")
            overrides[field.strip()] = value.strip()
        runs.append(overrides)
    return runs


def run_name(overrides: dict[str, str]) -> str:
    """The run's folder name: its overrides, e.g. 'num_labeled=20_seed=1'."""
    return "_".join(f"{k.rpartition('.')[2]}={v}" for k, v in overrides.items()) or "run"


def run_configs(config: ml_collections.ConfigDict) -> dict[str, ml_collections.ConfigDict]:
    """{name: the config of each run of config.runs}; raises ValueError for a bad override."""
    out = {}
    for overrides in parse_runs(config.runs):
        run = ml_collections.ConfigDict(config.to_dict())
        run.runs = ""
        for field, text in overrides.items():
            *parents, leaf = field.split(".")
            node = run
            for parent in parents:
                node = node[parent]
            if leaf not in node:
                raise ValueError(f"config.runs: {field} is not a config field")
            old = node[leaf]
            node[leaf] = type(old)(json.loads(text.lower()) if isinstance(old, bool) else text)
        out[run_name(overrides)] = run
    return out


def checked_run_configs(config: ml_collections.ConfigDict) -> dict[str, ml_collections.ConfigDict]:
    """`run_configs`, a bad override raised as config_checks.ConfigError (main: one line, exit
    2)."""
    try:
        return run_configs(config)
    except ValueError as e:
        from ssinfogan_jax import config_checks

        raise config_checks.ConfigError(str(e)) from None


def vmaps_runs(backend: str | None = None) -> bool:
    """Whether a group's runs on one device are vmapped into one program (GPUs, TPUs: one
    launch for every run's step) or take turns, each step of each run a call of the one
    compiled single-run program (XLA:CPU: vmapped, each convolution becomes a grouped one,
    and 4 digits runs went 0.66x as fast per run as one alone; in turns each goes as fast as
    alone, with one start-up, compilation, data load and judge for all; benchmarks/README.md,
    'Runs per program'). The runs' numbers are the same either way (tests/test_on_device.py)."""
    return (backend or jax.default_backend()) != "cpu"


def _vmapped(mesh: Mesh | None, vmap: bool | None) -> bool:
    """Whether a group is vmapped: always on a mesh, else as asked (None: `vmaps_runs`)."""
    return mesh is not None or (vmaps_runs() if vmap is None else vmap)


def make_group_step(
    step_fn: train_lib.TrainStep,
    unroll: int | bool = 1,
    mesh: Mesh | None = None,
    loop: bool | None = None,
    vmap: bool | None = None,
):
    """jit(vmap(on_device.multi_step)) over runs: (states, resident, knowns, plans) ->
    (states, metrics). States, knowns ({label: bool [N, n]}), host plans ([N, k, b, ...], placed
    here) and metrics ([N, k]) have a leading runs axis; the images and labels of `resident`
    are shared by the runs. `loop`, `unroll`: as on_device.make_multi_step's (None: one call
    per step on XLA:CPU).

    `vmap` False (None: `vmaps_runs()`, and always True with a mesh): the runs take turns,
    each by on_device.make_multi_step's one program; states and knowns are then lists, one
    entry per run (`group_state`), and the plans and metrics as above.

    `mesh` (`group_mesh`): `jax.shard_map` inside the jit, each device vmapping its own runs
    over its own slice of their batches; `step_fn` must then be built with
    `axis_name=BATCH`, so that batch norm, the gradients and the metrics average over a run's
    whole batch (as parallel.py's per-device step). The resident data is replicated over the
    mesh, states and knowns placed by BY_RUN, plans by BY_RUN_AND_EXAMPLE; the outputs stay
    on the runs. (Under GSPMD alone, XLA re-shards the vmapped convolutions' activations
    between the runs' devices: all-gathers and all-to-alls in every step.)"""
    loop = on_device.loops_in_program() if loop is None else loop
    if not _vmapped(mesh, vmap):
        return _in_turn(on_device.make_multi_step(step_fn, unroll=unroll, loop=loop))

    def one(state, resident, known, plan):
        return on_device.multi_step(
            state,
            resident.replace(known=known),
            plan,
            step_fn=step_fn,
            unroll=unroll if loop else True,
        )

    runs = jax.vmap(one, in_axes=(0, None, 0, 0))
    if mesh is not None:
        runs = jax.shard_map(
            runs,
            mesh=mesh,
            in_specs=(BY_RUN, PartitionSpec(), BY_RUN, BY_RUN_AND_EXAMPLE),
            out_specs=(BY_RUN, BY_RUN),
            check_vma=False,  # As parallel.make_sharded_train_step: the step averages itself.
        )
    jitted = jax.jit(runs)
    return on_device.per_call(jitted, lambda plans: place(plans, mesh, BY_RUN_AND_EXAMPLE), loop, 1)


def _in_turn(multi):
    """A group step whose runs take turns at `multi` (on_device.make_multi_step's)."""

    def run(states, resident, knowns, plans):
        out, metrics = [], []
        for i, (state, known) in enumerate(zip(states, knowns, strict=True)):
            plan = {name: value[i] for name, value in plans.items()}
            state, run_metrics = multi(state, resident.replace(known=known), plan)
            out.append(state)
            metrics.append(run_metrics)
        return out, jax.tree.map(lambda *xs: jnp.stack(xs), *metrics)

    run.jitted = multi.jitted
    return run


def group_state(states: list, knowns: list[dict], mesh: Mesh | None, vmap: bool | None = None):
    """The runs' states and labelled masks as a group step of `make_group_step(mesh=mesh,
    vmap=vmap)` takes them: stacked and placed over `mesh`, or one device entry per run."""
    if not _vmapped(mesh, vmap):
        return [jax.device_put(s) for s in states], [jax.device_put(k) for k in knowns]
    return place(stack_states(states), mesh, BY_RUN), place(_stack(knowns), mesh, BY_RUN)


def run_state(states, i: int):
    """Run i's state out of a group's states (stacked, or one entry per run)."""
    return states[i] if isinstance(states, list) else jax.tree.map(lambda x: x[i], states)


RUNS, BATCH = "runs", "batch"  # The axes of a group's mesh.


def group_mesh(count: int, batch_size: int, devices: list | None = None) -> Mesh | None:
    """A (RUNS, BATCH) mesh for `count` runs of batch `batch_size`; None on one device.

    The runs go over as many devices as divide both the run count and the device count, and
    each run's batch over the devices of the rest that divide it: 4 runs on 8 devices are
    [4, 2], 2 runs on 4 devices [2, 2], 1 run on 4 devices [1, 4], 8 runs on 4 devices [4, 1]
    (2 runs per device). Devices that fit neither (e.g. 3 runs of batch 2 on 4 devices) stay
    idle."""
    devices = jax.devices() if devices is None else list(devices)
    runs = math.gcd(count, len(devices))
    batch = len(devices) // runs
    while batch_size % batch:
        batch -= 1
    if runs * batch == 1:
        return None
    grid = np.asarray(devices[: runs * batch]).reshape(runs, batch)
    return Mesh(grid, (RUNS, BATCH))


def place(tree, mesh: Mesh | None, spec: PartitionSpec):
    """`tree` on JAX's default device (no mesh), or over `mesh` by `spec`."""
    if mesh is None:
        return jax.device_put(tree)
    return jax.device_put(tree, NamedSharding(mesh, spec))


# Per-run arrays shard on the runs; a plan's [N, k, b, ...] leaves on the runs and the batch.
BY_RUN, BY_RUN_AND_EXAMPLE = PartitionSpec(RUNS), PartitionSpec(RUNS, None, BATCH)


def _program(exp: experiment_lib.Experiment) -> tuple:
    """What makes two runs' train steps the same program (seeds and labelled subsets aside)."""
    return (
        exp.model,
        exp.layout,
        exp.weights,
        exp.instance_noise,
        exp.augmentations,
        exp.optimizer,
        exp.batches.batch_size,
        exp.cadences,
        exp.data,
    )


def stack_states(states: list[train_lib.TrainState]) -> train_lib.TrainState:
    """The runs' states as one, each leaf [N, ...] (host arrays). They must come from one
    program's experiment; the first's optimizer objects serve all (they are static fields,
    equal in what they compute, and a pytree's static fields must be the same objects)."""
    first = states[0]
    same = [
        s.replace(
            generator=s.generator.replace(tx=first.generator.tx),
            discriminator=s.discriminator.replace(tx=first.discriminator.tx),
        )
        for s in states
    ]
    return _stack(same)


def _stack(trees):
    return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)


def train_runs(config: ml_collections.ConfigDict, workdir: str, data=None) -> dict[str, dict]:
    """Trains every run of config.runs (from scratch, or resuming each run's latest
    checkpoint); returns {run name: final eval metrics}. Raises as loop.train_and_evaluate."""
    configs = checked_run_configs(config)
    runs = []
    for name, run_config in configs.items():
        exp = experiment_lib.from_config(run_config, data=data)
        path = os.path.join(workdir, name)
        checkpointer = checkpointing.Checkpointer(
            path, exp.cadences.max_checkpoints_to_keep, reporting.best_metric(exp)
        )
        runs.append(_Run(name, path, exp, checkpointer))
    runs[0].exp.source.prepare()
    groups: list[list[_Run]] = []
    for run in runs:
        group = next((g for g in groups if _program(g[0].exp) == _program(run.exp)), None)
        if group is None:
            groups.append([run])
        else:
            group.append(run)
    sizes = [str(len(group)) for group in groups]
    reporting.say(
        "%d runs as %d program(s) of %s runs, each run in its own folder in %s.",
        len(runs),
        len(groups),
        " and ".join([", ".join(sizes[:-1]), sizes[-1]] if len(sizes) > 1 else sizes),
        workdir,
    )
    results, began = {}, time.monotonic()
    try:
        for group in groups:
            results.update(_train_group(group))
    finally:
        for run in runs:
            run.checkpointer.wait_until_finished()
            run.checkpointer.close()
    if jax.process_index() == 0:
        plot = plot_accuracy(workdir, {run.name: curve_metric(run.exp.has_labels) for run in runs})
        lines = [f"Finished {len(runs)} runs in {reporting.duration(time.monotonic() - began)}."]
        for run in runs:
            head = reporting.headline(results[run.name], run.exp.has_labels)
            lines.append(f"  {run.name}: {reporting.headline_text(*head) if head else '-'}")
        lines += [f"accuracy against steps: {plot}"] if plot else []
        lines.append(f"each run's samples, checkpoints and metrics: {workdir}/<run>/")
        lines.append(f"TensorBoard: tensorboard --logdir={workdir}")
        print("\n".join(lines), flush=True)
    return results


def curve_metric(has_labels: bool) -> str:
    """What sweep.png plots for a run: its direct conditional accuracy, or, trained without
    labels (its code values name no class), the accuracy under the best map."""
    return "cond_acc_direct" if has_labels else "cond_acc_mapped"


def _train_group(group: list[_Run]) -> dict[str, dict]:
    first = group[0].exp
    cadences, k = first.cadences, max(first.cadences.steps_per_dispatch, 1)
    # Every run's state is made by the group's first experiment (one program: one optimizer
    # object), from the run's own seed.
    states, pending = [], set()  # pending: runs whose saved step's evaluation was cut short.
    for i, run in enumerate(group):
        state = train_lib.create_train_state(jax.random.PRNGKey(run.exp.seed), first)
        if run.checkpointer.latest_step() is not None:
            state, meta = run.checkpointer.restore(state)
            if meta.get(checkpointing.EVAL_PENDING):
                pending.add(i)
        states.append(state)
    steps = {int(s.step) for s in states}
    if len(steps) > 1:
        raise checkpointing.CheckpointError(
            f"the runs {[r.name for r in group]} are at different steps {sorted(steps)}: "
            "a group resumes together; rerun the stragglers alone or use a fresh --workdir"
        )
    start = steps.pop()
    if start >= cadences.num_train_steps and not pending:
        reporting.say(
            "%d runs already trained to step %d: nothing to train (%s).",
            len(group),
            start,
            ", ".join(run.name for run in group),
        )
        return {run.name: run_record.last_eval(run.workdir) for run in group}
    for run in group:  # The data first, as the loop: its absence is one line, at once.
        epath.Path(run.workdir).mkdir(parents=True, exist_ok=True)
        run.data = input_pipeline.create_train_data(run.exp, run.workdir)
    evaluators = evaluation.make_evaluators([run.exp for run in group])
    for run, evaluator in zip(group, evaluators, strict=True):
        run.evaluator = evaluator
        run_record.write_config(run.exp.config, run.workdir, None, {}, start)
        run_record.trim_eval_history(run.workdir, start)
        run.writer = metric_writers.create_default_writer(
            run.exp.tensorboard_dir or run.workdir, just_logging=jax.process_index() > 0
        )
        if start == 0:
            run.writer.write_hparams(run_record.hparams(run.exp.config))
    mesh = group_mesh(len(group), first.batches.batch_size)
    resident = on_device.put(group[0].data, None if mesh is None else on_device.replicated(mesh))
    knowns = [{k: np.asarray(v) for k, v in r.data.known.items()} for r in group]
    state, knowns = group_state(states, knowns, mesh)
    del states  # The group's state is the one kept (the runs' own were a copy per run).
    step_fn = train_lib.bind_train_step(first, axis_name=None if mesh is None else BATCH)
    multi = make_group_step(step_fn, mesh=mesh)
    reporting.say(
        "Training %d runs from step %d to %d, %d steps per call, %s.",
        len(group),
        start,
        cadences.num_train_steps,
        k,
        "taking turns at one compiled step (CPU)" if isinstance(state, list) else "vmapped",
    )
    history, results, step = [], {r.name: {} for r in group}, start
    progress = reporting.Progress(cadences.num_train_steps, start)
    workdir = os.path.dirname(group[0].workdir)

    def evaluate(runs: list[int], host) -> list[int]:
        """Evaluates `runs` at `step`; returns those a SIGTERM left unevaluated (nothing of
        theirs written). As the loop's, each evaluation is cut short by the signal."""
        for done, i in enumerate(runs):
            run = group[i]
            try:
                with exit_codes.interruptible(), progress.paused():
                    metrics = run.evaluator.evaluate(run_state(host, i))
            except exit_codes.Terminated:
                return runs[done:]
            results[run.name] = metrics
            run.writer.write_scalars(step, reporting.tagged(metrics, "eval"))
            run_record.append_eval(run.workdir, step, metrics)
            if run.checkpointer.best_metric in metrics:
                run.checkpointer.save_best(step, run_state(host, i), metrics)
        return []

    def draw(runs: list[int], host) -> bool:
        """Each run's sample and traversal grids at `step`, as PNGs in its folder and in its
        TensorBoard; False where a SIGTERM cut them short (as the loop's)."""
        for i in runs:
            run = group[i]
            try:
                with exit_codes.interruptible(), progress.paused():
                    grids = run.evaluator.image_grids(run_state(host, i))
            except exit_codes.Terminated:
                return False
            run.writer.write_images(step, grids)
            if jax.process_index() == 0:
                reporting.write_images(grids, run.workdir, step)
        return True

    with checkpointing.PreemptionNotice(group[0].checkpointer) as preemption:
        # Saved with EVAL_PENDING: those evaluations first (cut short again: still due).
        if pending:
            host = jax.device_get(state)
            if evaluate(sorted(pending), host):
                raise exit_codes.Preempted(step, workdir, note=checkpointing.CUT_SHORT)
            if not draw(sorted(pending), host):
                raise exit_codes.Preempted(step, workdir)
        while step < cadences.num_train_steps:
            count = min(k - step % k, cadences.num_train_steps - step)
            plans = _stack([on_device.plan(r.data, step, count) for r in group])
            state, metrics = multi(state, resident, knowns, plans)
            step += count
            history.append(jax.device_get(metrics))
            preempted = preemption.should_stop(step)
            host, unevaluated = None, []
            if cadences.due(cadences.log_every, step) or preempted:
                reporting.say("%s (each of %d runs)", progress.line(step), len(group))
                for i, run in enumerate(group):
                    summary = reporting.summarize([run_state(h, i) for h in history])
                    run.writer.write_scalars(step, reporting.tagged(summary, "train"))
                history = []
            eval_due = cadences.due(cadences.eval_every, step)
            if eval_due or cadences.due(cadences.images_every, step):
                host, every = jax.device_get(state), list(range(len(group)))
                if preempted:  # Not started: every run's evaluation is still due.
                    unevaluated = every if eval_due else []
                else:
                    unevaluated = evaluate(every, host) if eval_due else []
                    preempted = bool(unevaluated) or not draw(every, host)
            if preempted or cadences.due(cadences.checkpoint_every, step):
                host = host if host is not None else jax.device_get(state)
                for i, run in enumerate(group):
                    meta = {checkpointing.EVAL_PENDING: True} if i in unevaluated else None
                    run.checkpointer.save(step, run_state(host, i), meta)
            if preempted:
                for run in group:
                    run.checkpointer.wait_until_finished()
                note = checkpointing.CUT_SHORT if unevaluated else ""
                raise exit_codes.Preempted(step, workdir, note=note)
    for run in group:
        run.writer.flush()
    return results


def accuracy_curves(workdir: str, metrics: dict[str, str]) -> dict[str, list[dict[int, float]]]:
    """{label: one {step: value} per seed} of the runs `metrics` names ({run name: the metric
    to plot}), grouped by their names without the seed; a label ends in ', mapped' where the
    metric is the best map's accuracy."""
    curves: dict[str, list[dict[int, float]]] = {}
    for name, metric in metrics.items():
        rows = run_record.read_eval_history(os.path.join(workdir, name))
        points = {row["step"]: row[metric] for row in rows if metric in row}
        if points:
            label = "_".join(p for p in name.split("_") if not p.startswith("seed=")) or "runs"
            label += ", mapped" if metric.startswith("cond_acc_mapped") else ""
            curves.setdefault(label, []).append(points)
    return curves


def plot_accuracy(workdir: str, metrics: dict[str, str]) -> str | None:
    """<workdir>/sweep.png: `accuracy_curves` against steps (the mean over seeds, and a band
    from the lowest to the highest); None without histories."""
    from PIL import Image, ImageDraw

    curves = accuracy_curves(workdir, metrics)
    if not curves:
        return None
    width, height, margin = 640, 400, 50
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image, "RGBA")
    last = max(step for runs in curves.values() for points in runs for step in points)
    x = lambda step: margin + (width - 2 * margin) * step / max(last, 1)
    y = lambda value: height - margin - (height - 2 * margin) * value
    draw.line(
        [(margin, margin), (margin, height - margin), (width - margin, height - margin)], "black"
    )
    for value in (0.0, 0.5, 1.0):
        draw.text((5, y(value) - 6), f"{value:.1f}", fill="black")
    draw.text((width - margin - 40, height - margin + 10), f"step {last}", fill="black")
    title = "conditional accuracy, direct or (mapped) under the best map of values to classes"
    draw.text((margin, 10), f"{title}; mean over seeds, band: min to max", fill="black")
    colours = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]
    for j, (label, runs) in enumerate(sorted(curves.items())):
        colour = colours[j % len(colours)]
        steps = sorted(set.intersection(*(set(points) for points in runs)))
        values = np.array([[points[s] for s in steps] for points in runs])
        low, mean, high = values.min(0), values.mean(0), values.max(0)
        band = [(x(s), y(v)) for s, v in zip(steps, high, strict=True)]
        band += [(x(s), y(v)) for s, v in reversed(list(zip(steps, low, strict=True)))]
        if len(band) > 2:
            draw.polygon(band, fill=(*colour, 60))
        draw.line([(x(s), y(v)) for s, v in zip(steps, mean, strict=True)], (*colour, 255), 2)
        draw.text((width - margin - 150, margin + 14 * j), f"{label} ({len(runs)})", fill=colour)
    path = os.path.join(workdir, "sweep.png")
    with epath.Path(path).open("wb") as f:
        image.save(f, format="PNG")
    return path
