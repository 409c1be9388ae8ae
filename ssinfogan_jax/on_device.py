"""The whole step on the accelerator: the training set on the device, many steps per call.

    resident = on_device.put(train_data)               # uint8 images, labels, masks on device
    multi_step = on_device.make_multi_step(step_fn)    # jitted; lax.scan over the steps
    plan = on_device.plan(train_data, start_step, k)   # host: k steps' example indices
    state, metrics = multi_step(state, resident, plan) # metrics: {name: [k]}

ss-InfoGAN's networks are small: one step is a few milliseconds on a GPU, so a loop that
dispatches one step at a time and feeds it from host numpy leaves the device idle. Here the
training set lives on the device as uint8 (MNIST: 47 MB), and one call runs k steps with
`lax.scan`, each gathering its batch on the device.

Which examples each step draws is the host sampler's decision (data/sampler.py: the labelled
batch schedule, the pools' permutations, the labelled shifts), sent as k x b indices per call
(13 bytes per example): so this path and the host loop see the same batches, a resume needs no
iterator state, and N runs with N labelled subsets share one copy of the images. The uint8 ->
float conversion is a 256-entry table computed as the host computes it, and the shifts move
pixels only, so each batch holds the same bits as `TrainData.batch(step)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import struct
from jax.sharding import NamedSharding, PartitionSpec

from ssinfogan_jax import train as train_lib

Plan = dict[str, np.ndarray]  # index [k, b] int32, slots [k, b] bool, shifts [k, b, 2] int32


@struct.dataclass
class Resident:
    """One host's block of the train split on the device.

    images uint8 [n, H, W, C]; labels {name: int32 or float32 [n]}; known {name: bool [n]}
    (labelled for that label); table float32 [256], uint8 -> the image range.
    """

    images: jax.Array
    labels: dict[str, jax.Array]
    known: dict[str, jax.Array]
    table: jax.Array
    fill: float = struct.field(pytree_node=False)  # Vacated pixels of a shift: the range's low.
    max_shift: int = struct.field(pytree_node=False)


def nbytes(data) -> int:
    """Bytes a TrainData's block takes on the device."""
    arrays = [data.images, *data.labels.values(), *data.known.values()]
    return int(sum(np.asarray(a).nbytes for a in arrays))


def put(data, device=None) -> Resident:
    """`data` (input_pipeline.TrainData) on `device` (default: JAX's first; or a sharding,
    e.g. `replicated(mesh)`)."""
    lo, hi = data.info.image_range
    # As sources.to_float, element by element on the host: the same float32 bits.
    table = np.arange(256, dtype=np.uint8).astype(np.float32) * np.float32(
        (hi - lo) / 255.0
    ) + np.float32(lo)
    put_ = lambda x: jax.device_put(np.asarray(x), device)
    return Resident(
        images=put_(data.images),
        labels={k: put_(v) for k, v in data.labels.items()},
        known={k: put_(v) for k, v in data.known.items()},
        table=put_(table),
        fill=float(lo),
        max_shift=int(data.labeled_max_shift),
    )


def plan(data, start_step: int, count: int) -> Plan:
    """The example indices of steps start_step + 1 .. start_step + count (what the host loop's
    batches of those steps hold; batch(t) serves step t + 1)."""
    index, slots, shifts = [], [], []
    for t in range(start_step, start_step + count):
        local, s = data.local_indices(t)
        shift = np.zeros((len(s), 2), np.int32)
        if data.labeled_max_shift and s.any():
            shift[s] = data.shifts(t, int(s.sum()))
        index.append(local.astype(np.int32))
        slots.append(s)
        shifts.append(shift)
    return {"index": np.stack(index), "slots": np.stack(slots), "shifts": np.stack(shifts)}


def _shift(image: jax.Array, shift: jax.Array, most: int, fill: float) -> jax.Array:
    """One image [H, W, C] moved by shift (dy, dx); vacated pixels = fill (augment.shift_images)."""
    h, w, c = image.shape
    padded = jnp.pad(image, ((most, most), (most, most), (0, 0)), constant_values=fill)
    return jax.lax.dynamic_slice(padded, (most - shift[0], most - shift[1], 0), (h, w, c))


def gather(resident: Resident, index: jax.Array, slots: jax.Array, shifts: jax.Array) -> dict:
    """The batch of one step, as TrainData.batch builds it on the host."""
    images = resident.table[resident.images[index].astype(jnp.int32)]
    if resident.max_shift:
        most = resident.max_shift
        shift = jax.vmap(lambda x, s: _shift(x, s, most, resident.fill))
        images = jnp.where(slots[:, None, None, None], shift(images, shifts), images)
    labels, masks = {}, {}
    for name, values in resident.labels.items():
        mask = slots & resident.known[name][index]
        sentinel = -1 if jnp.issubdtype(values.dtype, jnp.integer) else jnp.nan
        labels[name] = jnp.where(mask, values[index], jnp.asarray(sentinel, values.dtype))
        masks[name] = mask.astype(jnp.float32)
    return {"image": images, "label_masks": masks, "labels": labels}


def multi_step(
    state: train_lib.TrainState,
    resident: Resident,
    plan: Plan,
    *,
    step_fn: train_lib.TrainStep,
    unroll: int | bool = 1,
) -> tuple[train_lib.TrainState, dict[str, jax.Array]]:
    """len(plan['index']) train steps in one `lax.scan`; metrics stacked per step.

    `unroll`: as `lax.scan`'s, except True: no loop at all, every step inlined. (A scan
    unrolled whole still compiles to a `while` loop of one trip, which XLA:CPU runs as slowly as
    any loop: 4x the same step at the top level, measured in benchmarks/README.md.)"""

    def body(state, xs):
        return step_fn(state, gather(resident, xs["index"], xs["slots"], xs["shifts"]))

    if unroll is not True:
        return jax.lax.scan(body, state, plan, unroll=unroll)
    metrics = []
    for i in range(len(plan["index"])):
        state, step_metrics = body(state, jax.tree.map(lambda x, i=i: x[i], plan))
        metrics.append(step_metrics)
    return state, jax.tree.map(lambda *xs: jnp.stack(xs), *metrics)


def loops_in_program(backend: str | None = None) -> bool:
    """Whether a call's k steps run as one `lax.scan` (GPUs, TPUs: one launch for k steps) or
    as k calls of a program without a loop (XLA:CPU, which runs the body of a `while` loop
    about 4x slower than the same step compiled at the top level; benchmarks/README.md, 'Steps
    per call'). The batches are the same either way; without the loop every k gives the bits
    of the host loop's steps."""
    return (backend or jax.default_backend()) != "cpu"


def make_multi_step(
    step_fn: train_lib.TrainStep,
    donate: bool = False,
    unroll: int | bool = 1,
    mesh: jax.sharding.Mesh | None = None,
    loop: bool | None = None,
) -> Callable[..., Any]:
    """`multi_step` of a bound train step (train.bind_train_step), jitted: (state, resident,
    plan) -> (state, metrics {name: [k]}), for a host plan (`plan`), placed here.

    `loop`: the plan's k steps as one `lax.scan` in one call (`unroll` as scan's), or as k
    calls of one step each; None: per backend (`loops_in_program`). `mesh`
    (parallel.DataParallel.mesh, a 1-D mesh over the batch): the resident data must be
    replicated over it (`put(data, replicated(mesh))`), each plan is sharded over its batch
    axis, and the state and metrics come back replicated, so XLA's partitioner splits every
    step over the devices as it splits the step of parallel's 'jit'. `.jitted` is the
    compiled function itself (placed plans)."""
    loop = loops_in_program() if loop is None else loop
    fn = lambda state, resident, plan: multi_step(
        state, resident, plan, step_fn=step_fn, unroll=unroll if loop else True
    )
    out = None if mesh is None else replicated(mesh)
    jitted = jax.jit(fn, out_shardings=out, donate_argnums=(0,) if donate else ())
    return per_call(jitted, lambda plan: place_plan(plan, mesh), loop, axis=0)


def per_call(jitted: Callable[..., Any], place: Callable[[Plan], Plan], loop: bool, axis: int):
    """fn(state, *shared, plan) over a host plan whose steps lie on `axis`: one call of
    `jitted` with the whole plan placed (`loop`), or one call per step, the metrics
    concatenated on `axis`."""

    def run(state, *args):
        *shared, plan = args
        if loop:
            return jitted(state, *shared, place(plan))
        count, metrics = plan["index"].shape[axis], []
        for i in range(count):
            one = jax.tree.map(lambda x, i=i: np.take(np.asarray(x), [i], axis=axis), plan)
            state, step_metrics = jitted(state, *shared, place(one))
            metrics.append(step_metrics)
        if count == 1:
            return state, metrics[0]
        return state, jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=axis), *metrics)

    run.jitted = jitted
    return run


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
    """Every device of `mesh` holds the whole array."""
    return NamedSharding(mesh, PartitionSpec())


def place_plan(plan: Plan, mesh: jax.sharding.Mesh | None) -> Plan:
    """A plan on JAX's default device, or sharded over `mesh` on its batch axis [k, b, ...]."""
    if mesh is None:
        return jax.device_put(plan)
    return jax.device_put(plan, NamedSharding(mesh, PartitionSpec(None, mesh.axis_names[0])))


def stepper(exp, data, dp, start_step: int):
    """How the loop advances `exp`'s run over `data` (input_pipeline.TrainData) with `dp`
    (parallel.DataParallel): (advance(state, step, count) -> (state, metrics), chunk(step) ->
    count). One step per call from host batches, or `steps_per_dispatch` per call with the
    data on the device, under parallel's 'jit' in one process (on one device or a mesh of
    several, the batch sharded over them) where the train split fits; the log says which."""
    k = exp.cadences.steps_per_dispatch
    size = nbytes(data)
    if k > 1 and dp.kind == "jit" and jax.process_count() == 1 and fits(size):
        devices = 1 if dp.mesh is None else dp.mesh.size
        logging.info(
            "Training on the device: the train split (%.0f MB) resident, %d steps %s%s.",
            size / 2**20,
            k,
            "per call" if loops_in_program() else "per host iteration, one call each (CPU)",
            f", the batch over {devices} devices" if devices > 1 else "",
        )
        resident = put(data, None if dp.mesh is None else replicated(dp.mesh))
        step_fn = train_lib.bind_train_step(exp)
        multi = make_multi_step(step_fn, donate=train_lib.default_donation(), mesh=dp.mesh)
        end = exp.cadences.num_train_steps
        chunk = lambda step: min(k - step % k, end - step)  # Calls end on multiples of k.

        return lambda state, step, count: multi(state, resident, plan(data, step, count)), chunk
    if k > 1:
        logging.warning(
            "Training from the host, one step per call: steps_per_dispatch=%d needs "
            "config.parallel 'auto' or 'jit', one process, and the train split (%.0f MB) in "
            "device memory.",
            k,
            size / 2**20,
        )
    else:
        logging.info("Training from the host: one step per call (config.steps_per_dispatch=1).")
    batches = data.iterate(start_step)
    return lambda state, step, n: dp.train_step(state, dp.shard(next(batches))), lambda step: 1


def fits(size: int) -> bool:
    """Whether `size` bytes take at most half of the first device's memory (unknown: yes)."""
    stats = jax.devices()[0].memory_stats() or {}
    return size <= stats.get("bytes_limit", float("inf")) / 2
