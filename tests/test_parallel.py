"""Data parallelism: N devices (or 2 processes) give the one-device update on the same batch.

Fake CPU devices (`--xla_force_host_platform_device_count`) must be configured before JAX starts
its backend, so the multi-device checks run this file as a script in subprocesses; the rest of
the suite keeps one device. XLA:CPU collectives deadlock when many steps are queued, so every
loop blocks on each step's result.

The equivalence runs use float64 (`JAX_ENABLE_X64`, the state cast to float64): several biases
feed straight into batch norm, so their true gradient is exactly zero and what float32 computes
for them is rounding noise, which Adam's normalisation turns into full-size steps of either
sign. In float64 that noise is 1e-17 and the comparison measures the parallel step itself.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

STEPS = 3
GLOBAL_BATCH = 8
TOLERANCE = 1e-5  # Relative error allowed between N devices and one device.
# XLA:CPU runs each fake device's program on the PjRt CPU client's thread pool, whose size is
# the number of cores (2 here) unless PJRT_NPROC says otherwise. A collective needs every
# device's program running at once, so with fewer pool threads than busy device programs one
# device never arrives and XLA aborts after 40 s ("Expected 4 threads to join the rendezvous,
# but only 3 of them arrived"; seen for 4 devices every time and for 2 devices about one run
# in three before PJRT_NPROC was set). The workers run with PJRT_NPROC = 8.
PJRT_NPROC = "8"
DEVICES = 4
# 2 and 4 devices; the 2-process test adds 2 x 1 device. 'jit' is config.parallel's default.
RUNS = ["pmap:2", "shard_map:4", "jit:4"]
K = 2  # Steps per call of the device path (on_device.stepper), two calls.
SWEEP_RUNS = 2  # A group of runs on all DEVICES: a 2 x 2 mesh of runs x batch.
# A worker that has not finished by then is stuck; it dumps its stacks a minute before. Generous:
# on 2 cores shared with two training runs the devices worker took over 200 s.
WORKER_TIMEOUT = 1200


# ----------------------------------------------------------------------------- shared helpers


def _config(**data):
    """Two supervised codes with a mask each (a categorical and a continuous label); `data`:
    experiment.from_config's (arrays for a TrainData)."""
    from ssinfogan_jax import default_config as default

    config = default.get_config()
    config.batch_size = GLOBAL_BATCH
    config.instance_noise.stddev = 0.1  # Exercise the noise path too.
    config.instance_noise.decay = 0.9
    config.optimizer.g_ema_decay = 0.9  # And G's moving average.
    config.latents.codes = [
        default.code("digit", "categorical", 10, label="label"),
        default.code("thickness", "continuous", 1, label="thickness"),
        default.code("c_us", "continuous", 2),
    ]
    from ssinfogan_jax import experiment

    return experiment.from_config(config, check=False, **data)  # 'thickness': not MNIST's.


# One mask per label and step. They differ between the labels and give devices different
# labelled counts: e.g. step 0's thickness mask is 4/1 on 2 devices and 2/2/1/0 on 4; step
# 2's label mask 3/0 and 2/1/0/0, its thickness mask 0/2 and 0/0/1/1.
_MASKS = [
    {"label": np.ones(GLOBAL_BATCH), "thickness": np.arange(GLOBAL_BATCH) < 5},
    {"label": np.zeros(GLOBAL_BATCH), "thickness": np.zeros(GLOBAL_BATCH)},
    {"label": np.arange(GLOBAL_BATCH) < 3, "thickness": np.arange(GLOBAL_BATCH) >= 5},
]


def _batches() -> list[dict]:
    """Deterministic global batches with uneven masks per label (sentinels where unlabelled)."""
    rs = np.random.RandomState(0)
    batches = []
    for i in range(STEPS):
        masks = {k: v.astype(np.float64) for k, v in _MASKS[i % len(_MASKS)].items()}
        digit = rs.randint(0, 10, GLOBAL_BATCH).astype(np.int32)
        thickness = rs.uniform(-1, 1, GLOBAL_BATCH)
        batches.append(
            dict(
                image=rs.rand(GLOBAL_BATCH, 28, 28, 1),
                label_masks=masks,
                labels={
                    "label": np.where(masks["label"] > 0, digit, -1).astype(np.int32),
                    "thickness": np.where(masks["thickness"] > 0, thickness, np.nan),
                },
            )
        )
    return batches


def _exp(config):
    """`config` if it is an Experiment, else its Experiment, unchecked."""
    from ssinfogan_jax import experiment

    if isinstance(config, experiment.Experiment):
        return config
    return experiment.from_config(config, check=False)


def _initial_state(config):
    import jax
    import jax.numpy as jnp

    from ssinfogan_jax import train

    state = train.create_train_state(jax.random.PRNGKey(0), _exp(config))
    # Only the float leaves (not the step counter or the key) go to float64.
    to64 = lambda x: x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x
    return jax.tree.map(to64, state)


def _arrays(state) -> dict[str, np.ndarray]:
    """Flat {path: array} of the parameters and batch-norm statistics of G, D and G's average."""
    import jax

    out = {}
    for net in ("generator", "discriminator"):
        for part in ("params", "batch_stats"):
            tree = getattr(getattr(state, net), part)
            for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
                out[f"{net}/{part}{jax.tree_util.keystr(path)}"] = np.asarray(leaf, np.float64)
    for path, leaf in jax.tree_util.tree_leaves_with_path(state.generator_ema):
        out[f"generator_ema{jax.tree_util.keystr(path)}"] = np.asarray(leaf, np.float64)
    out["step"] = np.asarray(state.step, np.float64)
    return out


def _relative_errors(arrays: dict, reference: dict) -> dict[str, float]:
    """||a - b|| / ||b|| per network and part ('generator/params', ...)."""
    groups: dict[str, list[float]] = {}
    for key, ref in reference.items():
        if key == "step":
            continue
        group = key.split("[")[0]
        diff = np.sum((arrays[key] - ref) ** 2)
        groups.setdefault(group, [0.0, 0.0])
        groups[group][0] += diff
        groups[group][1] += np.sum(ref**2)
    return {g: float(np.sqrt(d / n)) for g, (d, n) in groups.items()}


def _run_worker(args: list[str], devices: int) -> subprocess.Popen:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["PJRT_NPROC"] = PJRT_NPROC
    env["JAX_ENABLE_X64"] = "1"
    env["JAX_PLATFORMS"] = "cpu"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), *args],
        env=env,
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc: subprocess.Popen) -> dict:
    try:
        out, _ = proc.communicate(timeout=WORKER_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"worker timed out:\n{out[-4000:]}") from None
    if proc.returncode != 0:
        raise AssertionError(f"worker failed ({proc.returncode}):\n{out[-6000:]}")
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    assert lines, f"worker printed no result:\n{out[-4000:]}"
    return json.loads(lines[-1][len("RESULT ") :])


# ----------------------------------------------------------------------------- workers


def _count_traces():
    """Wraps train.train_step (before binding) to count how often it is traced."""
    from ssinfogan_jax import train

    counter = {"n": 0}
    inner = train.train_step

    def counted(*args, **kwargs):
        counter["n"] += 1
        return inner(*args, **kwargs)

    train.train_step = counted
    return counter


def worker_devices(out_path: str, runs: str) -> dict:
    """One process, fake devices: 1 device vs each run ('pmap:2,shard_map:2', ...)."""
    from ssinfogan_jax import parallel, train

    # First, before JAX starts: no arguments on a machine that is no cluster = one process.
    initialized = parallel.initialize_distributed()
    import jax

    jax.config.update("jax_disable_most_optimizations", True)
    config, batches = _config(), _batches()
    state0 = _initial_state(config)
    traces = _count_traces()
    result: dict = {"devices": jax.device_count(), "auto_initialized": initialized}
    start = time.time()

    step = jax.jit(train.bind_train_step(_exp(config)))
    state = state0
    for batch in batches:
        state, _ = step(state, batch)
        jax.block_until_ready(state)
    reference = _arrays(state)
    np.savez(out_path, **reference)
    result["single_traces"] = traces["n"]

    finals = {}
    runs = [(kind, int(n)) for kind, n in (run.split(":") for run in runs.split(","))]
    result["single_seconds"] = time.time() - start
    for kind, n in runs:
        start = time.time()
        devices = jax.devices()[:n]
        traces["n"] = 0
        if kind == "pmap":
            per_device = train.bind_train_step(_exp(config), axis_name=parallel.AXIS)
            step = parallel.make_pmap_train_step(per_device, donate=True, devices=devices)
            state = parallel.replicate(state0, devices)
            for batch in batches:
                state, metrics = step(state, parallel.shard(batch, devices))
                jax.block_until_ready(state)
            copies = [_arrays(jax.tree.map(lambda x, i=i: x[i], state)) for i in range(n)]
            spread = max(float(np.max(np.abs(c[k] - copies[0][k]))) for c in copies[1:] for k in c)
            final = copies[0]
            metrics = jax.device_get(metrics)
            metric_spread = max(float(np.ptp(np.asarray(v))) for v in metrics.values())
        else:  # jit (with NamedSharding) and shard_map place the same way.
            mesh = parallel.make_mesh(devices)
            step = train.bind_train_step(_exp(config), axis_name=parallel.axis_name(kind))
            wrap = (
                parallel.make_jit_train_step if kind == "jit" else parallel.make_sharded_train_step
            )
            step = wrap(step, mesh, donate=True)
            state = parallel.replicate_on_mesh(state0, mesh)
            for batch in batches:
                state, metrics = step(state, parallel.shard_on_mesh(batch, mesh))
                jax.block_until_ready(state)
            shards = [
                _arrays(jax.tree.map(lambda x, i=i: x.addressable_data(i), state)) for i in range(n)
            ]
            spread = max(float(np.max(np.abs(c[k] - shards[0][k]))) for c in shards[1:] for k in c)
            final = _arrays(parallel.fetch_replicated(state))
            metric_spread = 0.0
        finals[(kind, n)] = final
        result[f"{kind}{n}"] = {
            "relative_error": _relative_errors(final, reference),
            "max_abs_error": max(float(np.max(np.abs(final[k] - reference[k]))) for k in reference),
            "step": float(final["step"]),
            "replica_spread": spread,
            "metric_spread": metric_spread,
            "traces": traces["n"],
            "seconds": time.time() - start,
        }
    pmap = next(v for k, v in finals.items() if k[0] == "pmap")
    sharded = next(v for k, v in finals.items() if k[0] == "shard_map")
    result["pmap_vs_shard_map"] = _relative_errors(pmap, sharded)
    return result


def worker_device_path() -> dict:
    """One process, DEVICES fake devices: `_device_path`."""
    import jax

    jax.config.update("jax_disable_most_optimizations", True)
    start = time.time()
    result = _device_path(jax.devices())
    result["seconds"] = time.time() - start
    return result


def _train_data_arrays(n: int, seed: int) -> tuple:
    rs = np.random.RandomState(seed)
    images = rs.randint(0, 256, (n, 28, 28, 1)).astype(np.uint8)
    labels = {"label": rs.randint(0, 10, n).astype(np.int32)}
    labels["thickness"] = rs.uniform(-1, 1, n).astype(np.float32)
    return images, labels


def _device_path(devices) -> dict:
    """The train split on the device over every device: the loop's k steps per call under
    config.parallel's default ('jit'), and a group of SWEEP_RUNS runs (sweep.py) on a runs x
    batch mesh, each against the same run trained alone on one device from host batches."""
    import jax

    from ssinfogan_jax import experiment, input_pipeline, on_device, parallel, sweep, train

    arrays = {"train": _train_data_arrays(64, 1), "test": _train_data_arrays(16, 2)}
    runs = []  # (experiment, train data, float64 initial state) per run: other subsets, seeds.
    for i, num_labeled in enumerate((20, 40)[:SWEEP_RUNS]):
        config = _config(data=arrays).config
        config.data.num_labeled = num_labeled
        config.steps_per_dispatch = K
        exp = experiment.from_config(config, data=arrays, check=False)
        # As sweep.py: every run's state made by the group's first experiment, its own seed.
        state = train.create_train_state(jax.random.PRNGKey(i), runs[0][0] if runs else exp)
        to64 = lambda x: x.astype(np.float64) if np.issubdtype(x.dtype, np.floating) else x
        state = jax.device_get(jax.tree.map(to64, state))
        runs.append((exp, input_pipeline.create_train_data(exp, None), state))
    stacked = sweep.stack_states([s for _, _, s in runs])  # One optimizer object for all.
    runs = [(e, d, jax.tree.map(lambda x, i=i: x[i], stacked)) for i, (e, d, _) in enumerate(runs)]
    single = jax.jit(train.bind_train_step(runs[0][0]))
    alone = []
    for _, data, state in runs:  # One device, one step per call, host batches.
        for t in range(2 * K):
            state, _ = single(state, data.batch(t))
        alone.append(_arrays(state))
    result: dict = {}
    _progress("device path: the references trained")

    # The loop's path: on_device.stepper under DataParallel 'jit' on every device.
    exp, data, state = runs[0]
    dp = parallel.DataParallel.create(train.bind_train_step(exp), "auto", donate=False)
    advance, chunk = on_device.stepper(exp, data, dp, 0)
    state, step, calls = dp.replicate(state), 0, 0
    while step < 2 * K:
        count = chunk(step)
        state, metrics = advance(state, step, count)
        jax.block_until_ready(state)
        step, calls = step + count, calls + 1
    leaf = jax.tree.leaves(state.generator.params)[0]
    result["stepper"] = {
        "kind": dp.kind,
        "mesh_devices": dp.mesh.size,
        "calls": calls,
        "metrics_shape": list(metrics["d_loss"].shape),
        "replicated": bool(leaf.sharding.is_fully_replicated),
        "state_devices": len(leaf.sharding.device_set),
        "relative_error": _relative_errors(_arrays(dp.unreplicate(state)), alone[0]),
    }

    _progress("device path: the stepper on every device done")
    # A group of runs as one program on a runs x batch mesh.
    mesh = sweep.group_mesh(SWEEP_RUNS, GLOBAL_BATCH, devices)
    resident = on_device.put(data, on_device.replicated(mesh))
    stack = lambda trees: jax.tree.map(lambda *xs: np.stack(xs), *trees)
    states = sweep.place(stacked, mesh, sweep.BY_RUN)
    knowns = stack([{k: np.asarray(v) for k, v in d.known.items()} for _, d, _ in runs])
    knowns = sweep.place(knowns, mesh, sweep.BY_RUN)
    # The scan (accelerators' way; the stepper above ran XLA:CPU's, one call per step).
    step = train.bind_train_step(exp, axis_name=sweep.BATCH)
    group = sweep.make_group_step(step, mesh=mesh, loop=True)
    compiled = None
    for first in range(0, 2 * K, K):
        plans = stack([on_device.plan(d, first, K) for _, d, _ in runs])
        plans = sweep.place(plans, mesh, sweep.BY_RUN_AND_EXAMPLE)
        compiled = compiled or group.jitted.lower(states, resident, knowns, plans).compile()
        states, metrics = compiled(states, resident, knowns, plans)
        jax.block_until_ready(states)
    leaf = jax.tree.leaves(states.generator.params)[0]
    hlo = compiled.as_text()
    result["group"] = {
        "mesh": dict(mesh.shape),
        "state_spec": str(leaf.sharding.spec),
        "state_shard_shape": list(leaf.addressable_shards[0].data.shape),
        "plan_shard_shape": list(plans["index"].addressable_shards[0].data.shape),
        "plan_shape": list(plans["index"].shape),
        "devices": len(leaf.sharding.device_set),
        "collectives": {
            op: hlo.count(f"{op}(") for op in ("all-reduce", "all-gather", "all-to-all")
        },
        "metrics_shape": list(metrics["d_loss"].shape),
        "relative_error": [
            _relative_errors(_arrays(jax.tree.map(lambda x, i=i: np.asarray(x)[i], states)), ref)
            for i, ref in enumerate(alone)
        ],
    }
    # The same runs vmapped on one device (no mesh): each equals itself alone too.
    group = sweep.make_group_step(train.bind_train_step(exp), loop=True, vmap=True)
    knowns = [{k: np.asarray(v) for k, v in d.known.items()} for _, d, _ in runs]
    states, knowns = sweep.group_state([s for _, _, s in runs], knowns, None, vmap=True)
    for first in range(0, 2 * K, K):
        plans = stack([on_device.plan(d, first, K) for _, d, _ in runs])
        states, metrics = group(states, on_device.put(data), knowns, plans)
    result["group_one_device"] = [
        _relative_errors(_arrays(jax.device_get(sweep.run_state(states, i))), ref)
        for i, ref in enumerate(alone)
    ]
    return result


def _progress(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def worker_process(process_id: int, port: int, reference_path: str, out_dir: str) -> dict:
    """One of two processes training together through jax.distributed (cross-process gloo)."""
    from ssinfogan_jax import parallel

    assert parallel.initialize_distributed(f"127.0.0.1:{port}", 2, process_id)
    import jax

    from ssinfogan_jax import train

    jax.config.update("jax_disable_most_optimizations", True)
    config, batches = _config(), _batches()
    size = GLOBAL_BATCH // jax.process_count()
    rows = slice(jax.process_index() * size, (jax.process_index() + 1) * size)
    local = [jax.tree.map(lambda x: x[rows], b) for b in batches]  # This host's data only.
    state0 = _initial_state(config)
    reference = dict(np.load(reference_path))
    result: dict = {
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "devices": jax.device_count(),
        "local_devices": jax.local_device_count(),
        "rows": [rows.start, rows.stop],
    }
    for kind in ("pmap", "shard_map", "jit"):
        step = train.bind_train_step(_exp(config), parallel.axis_name(kind))
        dp = parallel.DataParallel.create(step, kind)
        state = dp.replicate(state0)
        for i, batch in enumerate(local):
            _progress(f"process {process_id}: {kind} step {i}")
            state, metrics = dp.train_step(state, dp.shard(batch))
            jax.block_until_ready(state)
        _progress(f"process {process_id}: {kind} fetch")
        final = _arrays(dp.unreplicate(state))
        result[kind] = {
            "relative_error": _relative_errors(final, reference),
            "step": float(final["step"]),
            "d_loss": float(np.asarray(dp.unreplicate(metrics)["d_loss"])),
        }
    jax.distributed.shutdown()
    return result


# ----------------------------------------------------------------------------- tests


RENDEZVOUS_ABORT = "Termination timeout for `all reduce"


@pytest.fixture(scope="module")
def devices_result(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("parallel") / "reference.npz")
    start = time.time()
    # Should XLA:CPU's in-process rendezvous still time out (see PJRT_NPROC above), that is the
    # runtime, not the step: such an abort (SIGABRT) is retried, up to twice.
    for attempt in range(3):
        try:
            result = _finish(_run_worker(["devices", path, ",".join(RUNS)], devices=DEVICES))
            break
        except AssertionError as e:
            if RENDEZVOUS_ABORT not in str(e) or attempt == 2:
                raise
            print(f"retrying after an XLA:CPU rendezvous abort (attempt {attempt + 1})")
    result["attempts"] = attempt + 1
    result["seconds"] = time.time() - start
    result["reference_path"] = path
    print(json.dumps(result, indent=1))
    return result


@pytest.fixture(scope="module")
def device_path_result():
    result = _finish(_run_worker(["device_path"], devices=DEVICES))
    print(json.dumps(result, indent=1))
    return result


@pytest.mark.parametrize("name", [r.replace(":", "") for r in RUNS])
def test_n_devices_equal_one_device(devices_result, name):
    run = devices_result[name]
    assert run["step"] == STEPS
    assert "generator_ema" in run["relative_error"]
    for group, err in run["relative_error"].items():
        assert err < TOLERANCE, (name, group, err)


@pytest.mark.parametrize("name", [r.replace(":", "") for r in RUNS])
def test_replicas_stay_identical_and_step_compiles_once(devices_result, name):
    run = devices_result[name]
    assert run["replica_spread"] == 0.0
    assert run["metric_spread"] == 0.0
    assert run["traces"] == 1
    assert devices_result["single_traces"] == 1


def test_pmap_and_shard_map_agree(devices_result):
    for group, err in devices_result["pmap_vs_shard_map"].items():
        assert err < TOLERANCE, (group, err)


def test_k_steps_per_call_on_several_devices(device_path_result):
    """The loop's device path under the default kind, on every device: the state stays
    replicated and equals one device's host loop."""
    run = device_path_result["stepper"]
    assert (run["kind"], run["mesh_devices"], run["state_devices"]) == ("jit", DEVICES, DEVICES)
    assert run["replicated"] and run["calls"] == 2 and run["metrics_shape"] == [K]
    for group, err in run["relative_error"].items():
        assert err < TOLERANCE, (group, err)


def test_a_group_of_runs_shards_runs_and_batch(device_path_result):
    """2 runs on 4 devices: the runs over 2 devices, each run's batch over 2 more (all-reduces
    in the program: batch norm and the gradients reduce over the batch's devices); each run
    equals itself trained alone on one device (float64: ~1e-11 measured)."""
    group = device_path_result["group"]
    assert group["mesh"] == {"runs": SWEEP_RUNS, "batch": DEVICES // SWEEP_RUNS}
    assert group["devices"] == DEVICES and group["state_spec"] == "P('runs',)"
    assert group["state_shard_shape"][0] == 1  # One run's parameters per device.
    assert group["plan_shape"] == [SWEEP_RUNS, K, GLOBAL_BATCH]
    assert group["plan_shard_shape"] == [1, K, GLOBAL_BATCH // 2]  # Half of a run's batch.
    # Only reductions over a run's batch cross devices: no activations re-sharded.
    assert group["collectives"]["all-reduce"] > 0
    assert group["collectives"]["all-gather"] == group["collectives"]["all-to-all"] == 0
    assert group["metrics_shape"] == [SWEEP_RUNS, K]
    # The runs vmapped on one device (sweep.make_group_step(vmap=True), a GPU's way).
    for run in group["relative_error"] + device_path_result["group_one_device"]:
        assert len(run) == 5  # G's and D's parameters and statistics, and G's average.
        for name, err in run.items():
            assert err < 1e-6, (name, err)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one_process(devices_result, tmp_path):
    port = _free_port()
    procs = [
        _run_worker(
            ["process", str(i), str(port), devices_result["reference_path"], str(tmp_path)],
            devices=1,  # Cross-process collectives only (gloo): no in-process rendezvous.
        )
        for i in range(2)
    ]
    results = [_finish(p) for p in procs]
    for i, r in enumerate(results):
        assert (r["process_index"], r["process_count"]) == (i, 2)
        assert (r["devices"], r["local_devices"]) == (2, 1)
        assert r["rows"] == [4 * i, 4 * i + 4]
        for kind in ("pmap", "shard_map", "jit"):
            assert r[kind]["step"] == STEPS
            for group, err in r[kind]["relative_error"].items():
                assert err < TOLERANCE, (i, kind, group, err)
    # Every process saw the same global metrics.
    assert results[0]["pmap"]["d_loss"] == results[1]["pmap"]["d_loss"]


def test_initialize_distributed_without_cluster_is_one_process(devices_result):
    assert devices_result["auto_initialized"] is False
    assert devices_result["devices"] == DEVICES


def test_initialize_distributed_needs_all_explicit_arguments():
    from ssinfogan_jax import parallel

    with pytest.raises(ValueError, match="give all of"):
        parallel.initialize_distributed("127.0.0.1:1234", num_processes=2)
    with pytest.raises(ValueError, match="process_id"):
        parallel.initialize_distributed("127.0.0.1:1234", num_processes=2, process_id=2)


def test_shard_splits_the_batch_over_devices():
    from ssinfogan_jax import parallel

    batch = {"image": np.arange(24.0).reshape(6, 2, 2), "labels": {"label": np.arange(6)}}
    split = parallel.split_batch(batch, num_devices=3)
    assert split["image"].shape == (3, 2, 2, 2)
    np.testing.assert_array_equal(split["labels"]["label"], [[0, 1], [2, 3], [4, 5]])
    with pytest.raises(ValueError, match="cannot be split evenly"):
        parallel.split_batch(batch, num_devices=4)
    sharded = parallel.shard(batch)  # One device here.
    assert sharded["image"].shape == (1, 6, 2, 2)
    np.testing.assert_array_equal(sharded["image"][0], batch["image"])


def test_unknown_kind_is_a_clear_error():
    from ssinfogan_jax import parallel

    with pytest.raises(ValueError, match="parallel kind"):
        parallel.DataParallel.create(lambda state, batch: (state, {}), kind="pjit")


if __name__ == "__main__":
    import faulthandler

    faulthandler.dump_traceback_later(WORKER_TIMEOUT - 60, exit=False)  # Where it is stuck.
    mode, *rest = sys.argv[1:]
    if mode == "devices":
        out = worker_devices(*rest)
    elif mode == "device_path":
        out = worker_device_path()
    elif mode == "process":
        out = worker_process(int(rest[0]), int(rest[1]), rest[2], rest[3])
    else:
        raise SystemExit(f"unknown mode {mode}")
    print("RESULT " + json.dumps(out), flush=True)
