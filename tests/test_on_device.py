"""The data on the device and k steps per call (on_device.py) against the host loop."""

from __future__ import annotations

import json
import logging
import types

import jax
import numpy as np
import pytest
from conftest import digits_config, saved_state, trees_equal

from ssinfogan_jax import experiment, input_pipeline, loop, on_device, train

pytestmark = pytest.mark.usefixtures("fast_compile")


def _train_data(config, data=None):
    exp = experiment.from_config(config, data=data)
    return exp, input_pipeline.create_train_data(exp, None)


def test_device_batches_hold_the_host_batches_bits(digits_shared):
    """Shifted labelled digits, and labels that some examples lack (arrays with -1)."""
    config = digits_config(digits_shared, batch_size=32)
    config.data.labeled_max_shift = 2
    source = experiment.data_source(config)
    arrays = {split: source.load(split) for split in ("train", "test")}
    images, labels = arrays["train"]
    partial = labels["label"].copy()
    partial[::3] = -1  # A third of the examples lack the label.
    arrays["train"] = (images, {"label": partial})
    config.data.num_labeled = 200
    for data in (None, arrays):
        _, train_data = _train_data(config, data)
        resident = on_device.put(train_data)
        plan = on_device.plan(train_data, 40, 12)
        gather = jax.jit(on_device.gather)
        shifted = 0
        for i, step in enumerate(range(40, 52)):
            host = train_data.batch(step)
            device = jax.device_get(
                gather(resident, plan["index"][i], plan["slots"][i], plan["shifts"][i])
            )
            assert trees_equal(host, device), step
            shifted += int(np.abs(plan["shifts"][i]).sum() > 0)
        assert shifted > 0  # The shifts were exercised.


@pytest.fixture(scope="module")
def smoke(digits_shared):
    """The digits smoke run's experiment and train data, the data on the device, and its
    3-steps-per-call function: compiled once, for every test of the module."""
    exp, data = _train_data(digits_config(digits_shared))
    multi = on_device.make_multi_step(train.bind_train_step(exp))
    return types.SimpleNamespace(exp=exp, data=data, resident=on_device.put(data), multi=multi)


def test_any_number_of_steps_per_call_gives_the_same_bits(smoke):
    """k = 1 and 3 steps per call in a `lax.scan` (accelerators' way): the same state after 6
    steps, so a run resumed at a call boundary continues exactly. (On XLA:CPU the loop makes
    one call per step: the same program for any k; see the next test.)"""
    exp, data, resident = smoke.exp, smoke.data, smoke.resident
    multis = {k: on_device.make_multi_step(train.bind_train_step(exp), loop=True) for k in (1, 3)}
    state0 = train.create_train_state(jax.random.PRNGKey(1), exp)
    finals, losses = {}, {}
    for k in (1, 3):
        state, seen = state0, []
        for start in range(0, 6, k):
            state, metrics = multis[k](state, resident, on_device.plan(data, start, k))
            seen.append(np.asarray(metrics["d_loss"]))
        finals[k], losses[k] = jax.device_get(state), np.concatenate(seen)
        assert losses[k].shape == (6,)
    assert trees_equal(finals[3], finals[1])
    np.testing.assert_array_equal(losses[3], losses[1])
    # Against one step per call from host batches: XLA compiles a loop body apart from a
    # top-level step (other fusions, so sums round otherwise): the first step's losses agree
    # to float rounding, not to the bit.
    host_step = jax.jit(train.bind_train_step(exp))
    host_state, host_metrics = host_step(state0, data.batch(0))
    np.testing.assert_allclose(float(host_metrics["d_loss"]), losses[1][0], rtol=1e-5)
    assert int(host_state.step) == int(finals[1].step) - 5
    # XLA:CPU's way, one call per step and no loop in the program, holds the host loop's bits.
    for t in range(1, 6):
        host_state, _ = host_step(host_state, data.batch(t))
    device_state, _ = smoke.multi(state0, resident, on_device.plan(data, 0, 6))
    assert trees_equal(jax.device_get(device_state), jax.device_get(host_state))


def test_a_run_on_the_device_resumes_exactly_and_checks_its_cadences(
    smoke, digits_shared, tmp_path
):
    """The loop stopped at step 3 and resumed to 6 holds the bits of 6 steps straight (two
    calls of 3 steps from the run's seed, as the loop makes them on this backend)."""
    half = digits_config(
        digits_shared,
        steps_per_dispatch=3,
        log_every_steps=3,
        eval_every_steps=0,
        num_train_steps=3,
    )
    loop.train_and_evaluate(half, str(tmp_path / "resumed"))
    assert saved_state(tmp_path / "resumed")[0] == 3
    config = digits_config(
        digits_shared, steps_per_dispatch=3, log_every_steps=3, eval_every_steps=0
    )
    loop.train_and_evaluate(config, str(tmp_path / "resumed"))
    _, resumed, step = loop.restore(config, str(tmp_path / "resumed"), which="latest")
    straight = train.create_train_state(jax.random.PRNGKey(config.seed), smoke.exp)
    for start in (0, 3):
        plan = on_device.plan(smoke.data, start, 3)
        straight, _ = smoke.multi(straight, smoke.resident, plan)
    # The values, leaf by leaf (the two states' optimizer objects, static fields, differ).
    leaves = lambda state: jax.tree.leaves(jax.device_get(state))
    assert step == 6 and trees_equal(leaves(resumed), leaves(straight))

    bad = digits_config(digits_shared, steps_per_dispatch=4, log_every_steps=2)
    problems = experiment.find_problems(bad)
    assert problems == [
        "config.steps_per_dispatch: 4 steps per call, but log_every_steps=2, "
        "checkpoint_every_steps=3 are not a multiple of 4; use multiples of 4 (0 = only at the "
        "end) or a smaller steps_per_dispatch"
    ]


def test_a_group_of_runs_equals_each_run_alone(smoke, digits_shared):
    """Two runs (other seeds and labelled subsets, one copy of the images) as one group, 3
    steps: taking turns at one compiled step (XLA:CPU's way), each run holds the bits of the
    run alone; vmapped into one program (accelerators' way), the first step's losses to float
    rounding. (Later steps differ by more: GAN training and Adam's first, sign-like updates
    amplify rounding, by 3e-3 at step 3. In float64 a vmapped run equals the run alone to
    1e-6: tests/test_parallel.py.)"""
    from ssinfogan_jax import sweep

    config = digits_config(digits_shared)
    config.data.num_labeled = 40
    _, other_data = _train_data(config)
    datas = [smoke.data, other_data]
    assert not np.array_equal(datas[0].known["label"], datas[1].known["label"])
    states = [train.create_train_state(jax.random.PRNGKey(i), smoke.exp) for i in (1, 2)]
    stacked = sweep.stack_states(states)  # One optimizer object for all, as sweep.py.
    states = [sweep.run_state(stacked, i) for i in (0, 1)]
    alone = [
        smoke.multi(s, on_device.put(d), on_device.plan(d, 0, 3))
        for s, d in zip(states, datas, strict=True)
    ]
    knowns = [{k: np.asarray(v) for k, v in d.known.items()} for d in datas]
    plans = jax.tree.map(lambda *xs: np.stack(xs), *[on_device.plan(d, 0, 3) for d in datas])
    step_fn = train.bind_train_step(smoke.exp)
    for vmap in (False, True):
        group = sweep.make_group_step(step_fn, vmap=vmap)
        state, known = sweep.group_state(states, knowns, None, vmap=vmap)
        assert isinstance(state, list) != vmap
        state, metrics = group(state, smoke.resident, known, plans)
        assert metrics["d_loss"].shape == (2, 3)
        for i, (ref_state, ref_metrics) in enumerate(alone):
            got = jax.device_get(sweep.run_state(state, i))
            if not vmap:
                assert trees_equal(got, jax.device_get(ref_state)), i
                np.testing.assert_array_equal(metrics["d_loss"][i], ref_metrics["d_loss"])
            for name, values in ref_metrics.items():  # Later steps: rounding, amplified.
                np.testing.assert_allclose(metrics[name][i][0], values[0], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("vmap", [False, True], ids=["in_turns", "vmapped"])
def test_runs_train_as_one_program_each_in_its_own_folder(
    digits_shared, tmp_path, capsys, caplog, monkeypatch, vmap
):
    """Two runs that share a train step train together, a third (no labels, other losses) as
    a program of its own; each keeps a run's files, its grids and its best checkpoint;
    sweep.png plots them; the end names each run's accuracy. In turns (XLA:CPU's way) and
    vmapped (an accelerator's: the group's state one stacked tree)."""
    from ssinfogan_jax import sweep

    monkeypatch.setattr(sweep, "vmaps_runs", lambda backend=None: vmap)
    caplog.set_level(logging.INFO)

    config = digits_config(
        digits_shared, steps_per_dispatch=3, log_every_steps=3, eval_every_steps=0
    )
    config.runs = (
        "seed=1,data.num_labeled=20;seed=2,data.num_labeled=100;"
        "seed=1,data.num_labeled=0,loss.lambda_consistency=1.0"
    )
    configs = sweep.run_configs(config)
    unlabelled = "seed=1_num_labeled=0_lambda_consistency=1.0"
    assert list(configs) == ["seed=1_num_labeled=20", "seed=2_num_labeled=100", unlabelled]
    assert configs["seed=2_num_labeled=100"].data.num_labeled == 100
    results = loop.train_and_evaluate(config, str(tmp_path / "sweep"))
    assert sorted(results) == sorted(configs)
    histories = {}
    for name in configs:
        run = tmp_path / "sweep" / name
        rows = [json.loads(x) for x in (run / "eval_history.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows] == [6] and saved_state(run)[0] == 6
        histories[name] = rows[0]
        subset = json.loads((run / "labeled_subset.json").read_text())
        assert subset["num_labeled"] == configs[name].data.num_labeled
        assert (run / "images" / "step_6" / "samples_digit.png").stat().st_size > 1000
        meta = json.loads((run / "checkpoints_best" / "6" / "meta" / "metadata").read_text())
        assert meta["step"] == 6
    assert (tmp_path / "sweep" / "sweep.png").stat().st_size > 1000
    # A run without labels is plotted, ranked and summed up by the best map's accuracy.
    curves = sweep.accuracy_curves(str(tmp_path / "sweep"), {unlabelled: "cond_acc_mapped"})
    assert curves == {
        "num_labeled=0_lambda_consistency=1.0, mapped": [
            {6: histories[unlabelled]["cond_acc_mapped"]}
        ]
    }
    assert ("vmapped" if vmap else "taking turns at one compiled step") in caplog.text
    assert caplog.text.count("(independent classifier)") == 2  # Once per program, not per run.
    out = capsys.readouterr().out.splitlines()
    end = out[out.index(next(x for x in out if x.startswith("Finished 3 runs in"))) :]
    assert end[1].startswith("  seed=1_num_labeled=20: direct conditional accuracy: ")
    assert end[3].startswith(f"  {unlabelled}: mapped conditional accuracy: ")
    assert f"{100 * histories[unlabelled]['cond_acc_mapped']:.1f}%" in end[3]
    assert end[4] == f"accuracy against steps: {tmp_path / 'sweep' / 'sweep.png'}"
    if vmap:
        return
    # Trained again: nothing trains; each run's last evaluation is its result.
    assert loop.train_and_evaluate(config, str(tmp_path / "sweep")) == {
        name: {k: v for k, v in row.items() if k != "step"} for name, row in histories.items()
    }
    assert caplog.text.count("runs already trained to step 6: nothing to train") == 2  # 2 programs
    # --mode=eval and --mode=sample on the group's work dir: each run's, in its folder.
    reported = []
    evaluated = loop.evaluate(
        config, str(tmp_path / "sweep"), report=lambda step, m, run: reported.append((run, step))
    )
    assert reported == [(name, 6) for name in configs] and list(evaluated) == list(configs)
    for name in configs:
        saved = json.loads((tmp_path / "sweep" / name / "eval_6.json").read_text())
        assert saved == {"step": 6, **evaluated[name]}
        assert saved["cond_acc_direct"] == histories[name]["cond_acc_direct"]
    config.sample.per_value = 2
    written = loop.sample(config, str(tmp_path / "sweep"))
    assert list(written) == list(configs)
    assert written[unlabelled]["samples"].startswith(str(tmp_path / "sweep" / unlabelled))
    # A run in a group equals the same run alone (to 1e-6, in float64, on 1 and 4 devices):
    # tests/test_parallel.py, test_a_group_of_runs_shards_runs_and_batch.
