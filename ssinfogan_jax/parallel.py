"""Data parallelism over the devices of one host and over hosts.

A train step is written once, and this module runs *any* such step over the devices; it knows
nothing of what the step computes. Three kinds (`config.parallel`; 'auto' is 'jit'):

  * 'jit' (the default): `jax.jit` with `NamedSharding` over a 1-D mesh of every device. The
    step is the one-device step (built without an axis name); the state is one replicated
    global array per leaf, the batch one global array sharded on its first axis, and XLA's
    partitioner (GSPMD) splits the step over the devices and inserts the all-reduces itself
    (batch norm's mean over the sharded batch is global). On one device this is plain jit.
    JAX's documentation recommends this way; `sweep.py` adds a runs axis to the same mesh.
  * 'shard_map' inside `jax.jit` over the same mesh: the step is written per device
    (`train.bind_train_step(experiment, axis_name=AXIS)`: gradients, metrics and batch-norm
    statistics averaged over the named device axis); the placements are those of 'jit'.
  * 'pmap' (the design card's, and JAX's old way): the same per-device step; the state is
    replicated, one copy per local device ([D, ...] leaves), and a host batch is split into
    [D, B/D, ...].

Each way N devices give the update one device gives on the same global batch: example i of
the global batch draws its codes from its own key (see `train.train_step`), batch norm uses
global statistics, and the gradients are those of the global-batch mean loss. (Per device:
autodiff through batch norm's cross-device mean transposes to a sum, so each device's
gradient is that of the *sum* of all devices' losses w.r.t. its own copy of the parameters;
their mean over devices is exactly the gradient of the global-batch mean loss.) L_ss on real
data is a mean over the *labelled* examples of the whole global batch (its count is summed
over devices, see `losses._masked_mean`), so it is exact even when devices hold different
numbers of labelled examples ('mix' mode). `tests/test_parallel.py` checks all three kinds
numerically, and the k-steps-per-call path (`on_device.stepper`) under 'jit' on several
devices.

Multi-host: call `initialize_distributed` first (before anything touches a device); every
process then builds the same state from the same seed, reads its own shard of the data and runs
the same step.

    initialize_distributed()                        # auto on TPU VMs; no-op on one host
    kind = parallel.resolve_kind(config.parallel)   # 'auto' -> 'jit'
    step = train.bind_train_step(experiment, axis_name=parallel.axis_name(kind))
    dp = parallel.DataParallel.create(step, kind)
    state = dp.replicate(train.create_train_state(rng, experiment))
    for batch in process_local_batches:             # [B / num_processes, ...] each
        state, metrics = dp.train_step(state, dp.shard(batch))
    state = dp.unreplicate(state)                   # one host-side copy, e.g. to inspect
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "batch"  # The device axis: gradients, metrics and batch-norm statistics average over it.
KINDS = ("jit", "pmap", "shard_map")
DEFAULT_KIND = "jit"  # What config.parallel='auto' means, on one device or many.

PyTree = Any
TrainStep = Callable[[PyTree, PyTree], tuple[PyTree, dict]]  # (state, batch) -> (state, metrics)


# ----------------------------------------------------------------------------- processes


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    local_device_ids: int | list[int] | None = None,
) -> bool:
    """Joins this process to a multi-process JAX run; call before any other JAX work.

    With no arguments JAX detects the cluster itself (TPU VMs and pod slices, SLURM, Open MPI,
    Kubernetes); where it finds none this is a one-process run and nothing happens. CPU and GPU
    clusters without such an environment give all three of `coordinator_address` ('host:port'
    of process 0), `num_processes` and `process_id`.

    Returns:
      True if `jax.distributed` was initialised (now or before), False for a one-process run.
    """
    if jax.distributed.is_initialized():
        return True
    explicit = (coordinator_address, num_processes, process_id)
    if all(v is None for v in explicit) and local_device_ids is None:
        try:
            jax.distributed.initialize()
        except ValueError as e:  # No cluster detected: one process.
            if "coordinator_address" not in str(e):
                raise
            return False
        return True
    if any(v is None for v in explicit):
        raise ValueError(
            "initialize_distributed: give all of coordinator_address, num_processes and "
            f"process_id (or none, to auto-detect); got {coordinator_address=}, "
            f"{num_processes=}, {process_id=}"
        )
    if not 0 <= process_id < num_processes:
        raise ValueError(f"initialize_distributed: {process_id=} not in [0, {num_processes})")
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        local_device_ids=local_device_ids,
    )
    return True


def resolve_kind(kind: str) -> str:
    """config.parallel as a kind of KINDS: 'auto' is 'jit' (jax.jit with NamedSharding) on
    any number of devices; pmap and shard_map only when asked for."""
    if kind == "auto":
        return DEFAULT_KIND
    if kind not in KINDS:
        raise ValueError(f"parallel kind: {kind!r}, expected 'auto' or one of {KINDS}")
    return kind


def axis_name(kind: str) -> str | None:
    """The axis name the step of `kind` is built with: none for 'jit' (the partitioner adds
    the collectives), AXIS for the per-device kinds."""
    return None if resolve_kind(kind) == "jit" else AXIS


def _check_divisible(batch_size: int, num_devices: int) -> None:
    if batch_size % num_devices:
        raise ValueError(
            f"batch of {batch_size} examples cannot be split evenly over {num_devices} devices"
        )


# ----------------------------------------------------------------------------- pmap


def make_pmap_train_step(
    step: TrainStep, donate: bool = True, devices: list[jax.Device] | None = None
) -> TrainStep:
    """A per-device step under `jax.pmap`: (replicated state, [D, B/D, ...] batch) -> (state,
    metrics).

    `step` must average over `AXIS` (built with `axis_name=AXIS`). The state is donated (its
    buffers are reused for the new state) unless `donate=False`. Metrics come back replicated,
    [D] per scalar. `devices` (default: all local devices) must then also be given to
    `replicate` and `shard`.
    """
    return jax.pmap(step, axis_name=AXIS, donate_argnums=(0,) if donate else (), devices=devices)


def _pmap_sharding(devices: list[jax.Device] | None) -> NamedSharding:
    # The sharding pmap gives its own outputs: placing inputs the same way keeps the step from
    # being traced a second time on its second call.
    devices = jax.local_devices() if devices is None else devices
    return NamedSharding(Mesh(np.asarray(devices), (AXIS,)), PartitionSpec(AXIS))


def replicate(tree: PyTree, devices: list[jax.Device] | None = None) -> PyTree:
    """One copy of every leaf on each local device: [D, ...] (for the pmap step)."""
    sharding = _pmap_sharding(devices)
    devices = list(sharding.mesh.devices.flat)

    def put(x):
        x = np.asarray(x)[None]
        copies = [jax.device_put(x, d) for d in devices]
        return jax.make_array_from_single_device_arrays(
            (len(devices), *x.shape[1:]), sharding, copies
        )

    return jax.tree.map(put, tree)


def unreplicate(tree: PyTree) -> PyTree:
    """The first local device's copy of a replicated [D, ...] tree."""
    return jax.tree.map(lambda x: x[0], tree)


def split_batch(batch: PyTree, num_devices: int) -> PyTree:
    """Host-side reshape of every leaf [B, ...] -> [num_devices, B / num_devices, ...]."""

    def split(x):
        x = np.asarray(x)
        _check_divisible(x.shape[0], num_devices)
        return x.reshape(num_devices, x.shape[0] // num_devices, *x.shape[1:])

    return jax.tree.map(split, batch)


def shard(batch: PyTree, devices: list[jax.Device] | None = None) -> PyTree:
    """A process-local batch [B, ...] as [D, B/D, ...], row block d on local device d.

    D is the number of `devices` (default: every local device), as for `replicate`.
    """
    sharding = _pmap_sharding(devices)
    return jax.device_put(split_batch(batch, sharding.mesh.size), sharding)


# ----------------------------------------------------------------------------- shard_map


def make_mesh(devices: list[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh with axis `AXIS` over `devices` (default: every device of every process)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (AXIS,))


def make_sharded_train_step(step: TrainStep, mesh: Mesh, donate: bool = True) -> TrainStep:
    """A per-device step under `jax.shard_map` in `jax.jit` over `mesh`.

    (replicated global state, global batch sharded on axis 0) -> (state, metrics), all outputs
    replicated. `check_vma=False` keeps pmap's autodiff: each device differentiates its own
    copy of the replicated parameters and the step averages those gradients itself. (With
    the replication checker on, the parameters would be axis-invariant, autodiff would already
    sum their gradients over devices, and the average would come out N times too large.)
    """
    replicated, sharded = PartitionSpec(), PartitionSpec(AXIS)
    mapped = jax.shard_map(
        step,
        mesh=mesh,
        in_specs=(replicated, sharded),
        out_specs=(replicated, replicated),
        check_vma=False,
    )
    return jax.jit(mapped, donate_argnums=(0,) if donate else ())


def make_jit_train_step(step: TrainStep, mesh: Mesh, donate: bool = True) -> TrainStep:
    """The one-device `step` under `jax.jit` over `mesh`: (replicated global state, global
    batch sharded on axis 0) -> (state, metrics), all outputs replicated. XLA's partitioner
    splits the step over the batch and inserts the reductions (gradients, batch-norm
    statistics, metrics) itself."""
    replicated = NamedSharding(mesh, PartitionSpec())
    return jax.jit(step, out_shardings=replicated, donate_argnums=(0,) if donate else ())


def replicate_on_mesh(tree: PyTree, mesh: Mesh) -> PyTree:
    """Every leaf as a global array replicated on every device of `mesh`.

    Works across processes: each process supplies its own (identical) host copy.
    """
    sharding = NamedSharding(mesh, PartitionSpec())

    def put(x):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree.map(put, tree)


def shard_on_mesh(batch: PyTree, mesh: Mesh) -> PyTree:
    """A process-local batch [B/P, ...] as one global array [B, ...] sharded over `mesh`.

    Process p supplies rows [p * B/P, (p + 1) * B/P) of the global batch.
    """
    sharding = NamedSharding(mesh, PartitionSpec(AXIS))
    local_devices = sum(d.process_index == jax.process_index() for d in mesh.devices.flat)

    def put(x):
        x = np.asarray(x)
        _check_divisible(x.shape[0], local_devices)
        return jax.make_array_from_process_local_data(sharding, x)

    return jax.tree.map(put, batch)


def fetch_replicated(tree: PyTree) -> PyTree:
    """Host (numpy) copy of a tree of replicated global arrays, from this process's devices."""
    return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), tree)


# ----------------------------------------------------------------------------- one interface


@dataclasses.dataclass(frozen=True)
class DataParallel:
    """A train step with the matching ways to place the state and a batch.

    Attributes:
      kind: 'jit', 'pmap' or 'shard_map'.
      train_step: (placed state, placed batch) -> (placed state, metrics); metrics are
        replicated ([D] per scalar under pmap, a replicated scalar under shard_map).
      replicate: host state -> placed state.
      shard: process-local batch [B / num_processes, ...] -> placed batch.
      unreplicate: placed state (or metrics) -> one host-side copy.
      mesh: the 1-D mesh of 'jit' over several devices (or processes) and of 'shard_map';
        None for 'jit' on one device (plain jit, JAX's default device) and for 'pmap'.
    """

    kind: str
    train_step: TrainStep
    replicate: Callable[[PyTree], PyTree]
    shard: Callable[[PyTree], PyTree]
    unreplicate: Callable[[PyTree], PyTree]
    mesh: Mesh | None = None

    @classmethod
    def create(
        cls,
        step: TrainStep,
        kind: Literal["auto", "jit", "pmap", "shard_map"] = "auto",
        donate: bool = True,
    ) -> DataParallel:
        """Wraps `step`, built with `axis_name=axis_name(kind)`: none for 'jit' (and 'auto'),
        AXIS for the per-device kinds."""
        kind = resolve_kind(kind)
        if kind == "pmap":
            return cls(kind, make_pmap_train_step(step, donate), replicate, shard, unreplicate)
        mesh = make_mesh()
        if kind == "jit" and mesh.size == 1:
            jitted = jax.jit(step, donate_argnums=(0,) if donate else ())
            return cls(kind, jitted, jax.device_put, jax.device_put, jax.device_get)
        wrap = make_jit_train_step if kind == "jit" else make_sharded_train_step
        return cls(
            kind,
            wrap(step, mesh, donate),
            lambda tree: replicate_on_mesh(tree, mesh),
            lambda batch: shard_on_mesh(batch, mesh),
            fetch_replicated,
            mesh,
        )
