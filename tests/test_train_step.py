"""The train step: gradient routing, update order, batch-norm statistics, label masking,
compile-once, per-step randomness, instance noise, and use from research code.

A spy wraps `train.discriminator_loss` and `train.generator_loss` (the two loss functions the
step differentiates) with `jax.debug.callback`, so the tests see exactly what each update was
given (images, codes, D parameters) without depending on how the step derives its randomness.
"""

from __future__ import annotations

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import (
    create_models,
    experiment_of,
    make_batch,
    rich_config,
    small_config,
    to_host,
    trees_equal,
)
from scipy import stats

from ssinfogan_jax import augment, latents, losses, models, train

B = 8
MASK = [1, 0, 1, 1, 0, 0, 1, 0]
GROUPS = ("G", "trunk", "d_head", "q_ss", "q_us")


@pytest.fixture(scope="module", autouse=True)
def _fast(fast_compile):
    yield


def initial_state(config_name: str = "default"):
    """A host copy of a fresh train state (donation-proof); the same nets for all but those
    with nets of their own (`OWN_NETS`)."""
    return _initial_state(config_name if config_name in OWN_NETS else "default")


@functools.cache
def _initial_state(config_name: str):
    config = CONFIGS[config_name]()
    return to_host(train.create_train_state(jax.random.PRNGKey(0), experiment_of(config)))


def baseline_config():
    config = small_config(lambda_us_d=0.0)
    config.data.num_labeled = 0
    return config


def noisy_config():
    config = small_config()
    config.instance_noise.stddev = 0.5
    config.instance_noise.decay = 0.9
    return config


def late_fakes_config():
    config = small_config(q_ss_on_fakes=True, q_ss_on_fakes_start=5)
    return config


def consistency_config():
    return small_config(lambda_consistency=0.5, consistency_max_shift=2)


def own_trunk_config():
    config = small_config(q_ss_max_shift=2)
    config.model.q_ss_trunk = "own"
    return config


def recolour_config():
    config = own_trunk_config()
    config.loss.q_ss_recolour = True
    config.loss.q_ss_on_fakes = True
    return config


def varied_labeled_config():
    config = small_config()
    config.data.labeled_max_rotation = 15.0
    config.data.labeled_max_scale = 0.1
    config.data.labeled_restroke = True
    return config


CONFIGS = {
    "default": small_config,
    "baseline": baseline_config,
    "rich": rich_config,
    "noisy": noisy_config,
    "consistency": consistency_config,
    "late_fakes": late_fakes_config,
    "own_trunk": own_trunk_config,
    "recolour": recolour_config,
    "varied_labeled": varied_labeled_config,
}
OWN_NETS = ("rich", "own_trunk", "recolour")


class Spy:
    """Records the inputs of every D-update and G-update loss evaluation of a compiled step."""

    def __init__(self):
        self.d_inputs, self.g_inputs = [], []

    def clear(self):
        self.d_inputs.clear()
        self.g_inputs.clear()

    def wrap(self, monkeypatch):
        d_loss, g_loss = train.discriminator_loss, train.generator_loss

        def record(store, **values):
            jax.debug.callback(lambda v: store.append(to_host(v)), values)

        def spied_d_loss(d_params, d_stats, real, fake, batch, codes, **kwargs):
            shifted = kwargs.get("shifted_real_images")
            record(
                self.d_inputs,
                d_params=d_params,
                real=real,
                fake=fake,
                codes=codes,
                shifted=shifted,
                q_ss_real=kwargs.get("q_ss_real_images"),
                q_ss_fake=kwargs.get("q_ss_fake_images"),
            )
            return d_loss(d_params, d_stats, real, fake, batch, codes, **kwargs)

        def spied_g_loss(fake, d_params, d_stats, codes, **kwargs):
            view = kwargs.get("q_ss_view")
            q_ss_fake = None if view is None else view(fake)
            record(self.g_inputs, d_params=d_params, fake=fake, codes=codes, q_ss_fake=q_ss_fake)
            return g_loss(fake, d_params, d_stats, codes, **kwargs)

        monkeypatch.setattr(train, "discriminator_loss", spied_d_loss)
        monkeypatch.setattr(train, "generator_loss", spied_g_loss)

    def run(self, step, state, batch):
        self.clear()
        new_state, metrics = step(state, batch)
        jax.block_until_ready((new_state, metrics))
        jax.effects_barrier()
        assert len(self.d_inputs) == 1 and len(self.g_inputs) == 1
        return to_host(new_state), to_host(metrics), self.d_inputs[0], self.g_inputs[0]


@functools.cache
def spied_step(config_name: str):
    """(compiled step with a spy, spy); traced once under the patch, reused afterwards."""
    spy = Spy()
    with pytest.MonkeyPatch.context() as monkeypatch:
        spy.wrap(monkeypatch)
        step = jax.jit(train.bind_train_step(experiment_of(CONFIGS[config_name]())))
        config = CONFIGS[config_name]()
        batch = make_batch(config, MASK)
        compiled = step.lower(initial_state(config_name), batch).compile()
    return compiled, spy


def models_for(config_name: str):
    config = CONFIGS[config_name]()
    layout, generator, discriminator = create_models(config)
    return layout, generator, discriminator, experiment_of(config).weights


# --- Gradient routing of every term -----------------------------------------------------------


def abs_sum(tree) -> jax.Array:
    return sum(jnp.sum(jnp.abs(x)) for x in jax.tree.leaves(tree))


TERMS = ("d_gan", "d_ss_real", "d_us", "d_ss_fake", "d_consistency", "d_loss")
TERMS += ("g_gan", "g_ss", "g_us")


@functools.cache
def term_gradient_norms_fn(config_name: str = "baseline"):
    """jitted (state, batch, codes) -> {term: {group: sum |grad|}}, w.r.t. G and D jointly.

    The fakes are G's output, not stop-gradiented, so a term's gradient reaches G wherever it
    depends on the fakes; the step then applies each gradient to one network only.
    """
    layout, generator, discriminator, _ = models_for(config_name)
    # Also computes the Q_ss-on-fakes and consistency terms.
    weights = losses.LossWeights(q_ss_on_fakes=True, lambda_consistency=1.0)
    kwargs = dict(discriminator=discriminator, layout=layout, weights=weights)

    def term(g_params, d_params, name, state, batch, codes):
        z = latents.generator_input(layout, codes)
        variables = {"params": g_params, "batch_stats": state.generator.batch_stats}
        fake, _ = generator.apply(variables, z, train=True, mutable=["batch_stats"])
        d_stats = state.discriminator.batch_stats
        shifted = jnp.roll(batch["image"], 1, axis=2)
        _, (_, d_terms) = train.discriminator_loss(
            d_params,
            d_stats,
            batch["image"],
            fake,
            batch,
            codes,
            **kwargs,
            shifted_real_images=shifted,
        )
        _, g_terms = train.generator_loss(fake, d_params, d_stats, codes, **kwargs)
        return {**d_terms, **g_terms}[name]

    def norms(state, batch, codes):
        result = {}
        for name in TERMS:
            g_grads, d_grads = jax.grad(term, argnums=(0, 1))(
                state.generator.params, state.discriminator.params, name, state, batch, codes
            )
            result[name] = {"G": abs_sum(g_grads), **{k: abs_sum(v) for k, v in d_grads.items()}}
        return result

    return jax.jit(norms)


def term_gradients(mask, config_name: str = "baseline") -> dict[str, dict[str, float]]:
    layout = models_for(config_name)[0]
    codes = latents.sample(jax.random.PRNGKey(3), layout, B)
    batch = make_batch(small_config(), list(mask))
    norms_fn = term_gradient_norms_fn(config_name)
    return to_host(norms_fn(initial_state(config_name), batch, codes))


ROUTES = {
    # term: the parameter groups its gradient reaches (joint G + D differentiation).
    "d_gan": {"G", "trunk", "d_head"},
    "d_ss_real": {"trunk", "q_ss"},  # Reals only: never G, never from fakes.
    "d_us": {"G", "trunk", "q_us"},
    "d_ss_fake": {"G", "trunk", "q_ss"},  # InfoGAN baseline only.
    "d_consistency": {"trunk", "q_ss"},  # Reals only.
    "g_gan": {"G", "trunk", "d_head"},
    "g_ss": {"G", "trunk", "q_ss"},
    "g_us": {"G", "trunk", "q_us"},
}


@pytest.mark.parametrize("term", sorted(ROUTES))
def test_each_term_moves_exactly_its_parameter_groups(term):
    norms = term_gradients(MASK)[term]
    assert set(norms) == set(GROUPS)
    moved = {group for group in GROUPS if norms[group] > 0}
    assert moved == ROUTES[term], norms
    for group in ROUTES[term]:
        assert np.isfinite(norms[group]) and norms[group] > 1e-8, (group, norms)


def test_a_q_ss_trunk_of_its_own_is_moved_by_the_q_ss_terms_alone():
    norms = term_gradients(MASK, "own_trunk")
    groups = (*GROUPS, "q_ss_trunk")
    own_routes = {
        term: {"q_ss_trunk" if g == "trunk" and "q_ss" in route else g for g in route}
        for term, route in ROUTES.items()
    }
    assert own_routes["d_ss_real"] == {"q_ss_trunk", "q_ss"}
    assert own_routes["d_gan"] == {"G", "trunk", "d_head"}
    for term, route in own_routes.items():
        assert set(norms[term]) == set(groups)
        moved = {group for group in groups if norms[term][group] > 0}
        assert moved == route, (term, norms[term])


def test_an_own_q_ss_trunk_reads_the_fakes_in_the_d_step_only_to_learn_from_them():
    # Without Q_ss on fakes its trunk's fake half changes no gradient, so the D step skips it:
    # the same gradients as reading the fakes at weight 0 (Q_ss on fakes from a later step),
    # Q_ss's running statistics of the reals alone, and fewer FLOPs.
    skip = own_trunk_config()
    read = own_trunk_config()
    read.loss.q_ss_on_fakes, read.loss.q_ss_on_fakes_start = True, 10**6
    layout, _, discriminator = create_models(skip)
    d = initial_state("own_trunk").discriminator
    batch = make_batch(skip, MASK)
    fake, q_ss_real = (make_batch(skip, MASK, seed)["image"] for seed in (1, 2))
    codes = latents.sample(jax.random.PRNGKey(3), layout, B)

    def d_update(config):
        loss = functools.partial(
            train.discriminator_loss,
            discriminator=discriminator,
            layout=layout,
            weights=experiment_of(config).weights,
            q_ss_real_images=q_ss_real,
        )
        args = (d.params, d.batch_stats, batch["image"], fake, batch, codes)
        return to_host(jax.jit(jax.grad(loss, has_aux=True))(*args))

    grads_skip, (stats_skip, terms_skip) = d_update(skip)
    grads_read, (stats_read, terms_read) = d_update(read)
    chex.assert_trees_all_close(grads_skip, grads_read, rtol=1e-4, atol=1e-5)  # Sum order.
    assert terms_skip["d_loss"] == pytest.approx(float(terms_read["d_loss"]), rel=1e-6)
    assert trees_equal(
        {k: v for k, v in stats_skip.items() if k != "q_ss_trunk"},
        {k: v for k, v in stats_read.items() if k != "q_ss_trunk"},
    )
    _, reals_only = discriminator.apply(
        {"params": d.params, "batch_stats": d.batch_stats},
        batch["image"],
        q_ss_images=q_ss_real,
        mutable=["batch_stats"],
    )
    chex.assert_trees_all_close(
        stats_skip["q_ss_trunk"], reals_only["batch_stats"]["q_ss_trunk"], rtol=1e-5, atol=1e-7
    )
    assert not trees_equal(stats_read["q_ss_trunk"], stats_skip["q_ss_trunk"])

    def step_flops(config):  # Of the lowered step: no compile needed.
        step = jax.jit(train.bind_train_step(experiment_of(config)))
        state = train.create_train_state(jax.random.PRNGKey(0), experiment_of(config))
        return step.lower(state, batch).cost_analysis()["flops"]

    assert step_flops(skip) < 0.95 * step_flops(read)


def test_q_ss_learning_rate_moves_q_ss_alone_at_its_rate():
    # Adam's first update moves each parameter by its rate times g / (|g| + eps): so after one
    # step the largest move in every group is that group's rate.
    config = own_trunk_config()
    d_rate, q_ss_rate = config.optimizer.d_learning_rate, 1e-3
    exp = experiment_of(config)
    plain = train.create_train_state(jax.random.PRNGKey(0), exp).discriminator
    config.optimizer.q_ss_learning_rate = q_ss_rate
    exp = experiment_of(config)
    state0 = to_host(train.create_train_state(jax.random.PRNGKey(0), exp))
    state1, _ = train.make_train_step(exp, donate=False)(state0, make_batch(config, MASK))
    moved = jax.tree.map(
        lambda a, b: float(np.max(np.abs(np.asarray(a) - b))),
        state1.discriminator.params,
        state0.discriminator.params,
    )
    largest = {group: max(jax.tree.leaves(tree)) for group, tree in moved.items()}
    expected = {"trunk": d_rate, "d_head": d_rate, "q_us": d_rate}
    expected |= {"q_ss": q_ss_rate, "q_ss_trunk": q_ss_rate}
    assert largest.keys() == expected.keys()
    for group, rate in expected.items():
        assert largest[group] == pytest.approx(rate, rel=1e-3), (group, largest)
    # Without a rate of its own, D keeps the one Adam (and the checkpoints' layout).
    assert not isinstance(plain.opt_state, optax.transforms.PartitionState)
    assert isinstance(state0.discriminator.opt_state, optax.transforms.PartitionState)


def test_a_moving_average_of_g_follows_g_and_changes_nothing_else():
    config = small_config()
    state0 = initial_state("default")
    batches = [make_batch(config, MASK, seed=i) for i in range(3)]
    plain_step = train.make_train_step(experiment_of(config), donate=False)
    config.optimizer.g_ema_decay = decay = 0.2  # Capped by (1 + t) / (10 + t) at steps 0 and 1.
    exp = experiment_of(config)
    created = train.create_train_state(jax.random.PRNGKey(0), exp)
    assert isinstance(created, train.EmaTrainState)
    plain_created = train.without_generator_ema(created)
    assert type(plain_created) is train.TrainState
    assert trees_equal(created.generator_ema, train.generator_variables(plain_created))
    averaged_step = train.make_train_step(exp, donate=False)
    plain = state0
    averaged = train.EmaTrainState(**vars(state0), generator_ema=train.generator_variables(state0))
    expected = to_host(train.generator_variables(state0))
    for t, batch in enumerate(batches):
        plain, plain_metrics = plain_step(plain, batch)
        averaged, metrics = averaged_step(averaged, batch)
        kept = min(decay, (1 + t) / (10 + t))
        new = to_host(train.generator_variables(plain))
        expected = jax.tree.map(lambda e, g, k=kept: k * e + (1 - k) * g, expected, new)
        assert trees_equal(metrics, plain_metrics)
    # G, D, their optimizers and the step are those of a run without the average.
    assert trees_equal(train.without_generator_ema(averaged), plain)
    chex.assert_trees_all_close(averaged.generator_ema, expected, rtol=1e-5, atol=1e-7)
    assert not trees_equal(averaged.generator_ema, train.generator_variables(plain))
    assert train.generator_variables(averaged) is averaged.generator_ema
    with pytest.raises(ValueError, match="EmaTrainState"):
        averaged_step(state0, batches[0])


def test_unlabelled_batch_gives_no_supervised_gradient():
    norms = term_gradients((0,) * B)
    assert norms["d_ss_real"] == dict.fromkeys(GROUPS, 0.0)
    assert norms["d_gan"]["trunk"] > 0  # The reals still train the GAN head.


# --- The step: update order, what each update touches, batch-norm statistics -------------------


def test_step_is_one_d_update_then_one_g_update_on_the_same_codes():
    step, spy = spied_step("default")
    layout, generator, discriminator, weights = models_for("default")
    state0 = initial_state("default")
    batch = make_batch(small_config(), MASK)
    state1, metrics, d_in, g_in = spy.run(step, state0, batch)
    codes = d_in["codes"]
    assert int(state1.step) == 1

    # What each update saw: the D update the old D, the G update the new D; same codes and
    # the same fakes (G is run once); the reals untouched (no instance noise by default).
    assert trees_equal(d_in["d_params"], state0.discriminator.params)
    assert trees_equal(g_in["d_params"], state1.discriminator.params)
    assert trees_equal(g_in["codes"], codes)
    np.testing.assert_array_equal(g_in["fake"], d_in["fake"])
    np.testing.assert_array_equal(d_in["real"], batch["image"])

    # The fakes are G(codes) in train mode, and G's statistics are updated exactly once.
    z = latents.generator_input(layout, codes)
    g_vars = {"params": state0.generator.params, "batch_stats": state0.generator.batch_stats}
    g_apply = jax.jit(functools.partial(generator.apply, train=True, mutable=["batch_stats"]))
    fake, g_mutated = g_apply(g_vars, z)
    np.testing.assert_allclose(d_in["fake"], fake, atol=1e-5)
    chex.assert_trees_all_close(state1.generator.batch_stats, g_mutated["batch_stats"], atol=1e-5)
    _, twice = g_apply({**g_vars, "batch_stats": g_mutated["batch_stats"]}, z)
    bn0 = lambda stats: np.asarray(stats["BatchNorm_0"]["var"])
    assert np.abs(bn0(twice["batch_stats"]) - bn0(state1.generator.batch_stats)).max() > 1e-3

    # D alone, by hand: one Adam step on L_D. The full step's D state (parameters, statistics,
    # optimizer) equals it, so the G update left D untouched.
    kwargs = dict(discriminator=discriminator, layout=layout, weights=weights)

    @jax.jit
    def d_update(d_state, real, fake):
        grads, (stats, _) = jax.grad(train.discriminator_loss, has_aux=True)(
            d_state.params, d_state.batch_stats, real, fake, batch, codes, **kwargs
        )
        return d_state.apply_gradients(grads, stats)

    d_alone = d_update(state0.discriminator, batch["image"], d_in["fake"])
    chex.assert_trees_all_close(state1.discriminator.params, d_alone.params, atol=2e-6, rtol=0)
    chex.assert_trees_all_close(state1.discriminator.batch_stats, d_alone.batch_stats, atol=1e-5)
    chex.assert_trees_all_close(state1.discriminator.opt_state, d_alone.opt_state, atol=1e-5)
    changed = jax.tree.map(
        lambda a, b: bool(np.any(a != b)), state0.discriminator.params, state1.discriminator.params
    )
    assert all(jax.tree.leaves(changed))  # A labelled batch moves every D parameter.

    # G alone, by hand: one Adam step on L_G through the *updated* D, same codes.
    @jax.jit
    def g_update(g_state, d_params, d_stats):
        def loss(g_params):
            images, _ = g_apply({"params": g_params, "batch_stats": g_state.batch_stats}, z)
            return train.generator_loss(images, d_params, d_stats, codes, **kwargs)[0]

        return g_state.apply_gradients(jax.grad(loss)(g_state.params), g_state.batch_stats)

    g_alone = g_update(state0.generator, d_alone.params, d_alone.batch_stats)
    chex.assert_trees_all_close(state1.generator.params, g_alone.params, atol=2e-5, rtol=0)
    g_stale = g_update(state0.generator, state0.discriminator.params, d_alone.batch_stats)
    delta = lambda a: np.abs(a["Dense_1"]["kernel"] - state1.generator.params["Dense_1"]["kernel"])
    assert delta(g_stale.params).max() > 1e-4  # Through the old D it would differ.
    assert np.isfinite(metrics["d_loss"]) and np.isfinite(metrics["g_loss"])


@functools.cache
def _train_mode_d(config_name: str):
    discriminator = models_for(config_name)[2]
    return jax.jit(functools.partial(discriminator.apply, train=True, mutable=["batch_stats"]))


def d_stats_after(config_name: str, params, stats, *passes):
    """D's running statistics after train-mode passes over each batch of images in turn."""
    for images in passes:
        stats = _train_mode_d(config_name)({"params": params, "batch_stats": stats}, images)
        stats = stats[1]["batch_stats"]
    return stats


class _DenseBatchNorm(nn.Module):
    """Dense - batch norm (the reference's momentum) - ReLU - Dense."""

    @nn.compact
    def __call__(self, x, train=True):
        x = nn.Dense(8)(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        return nn.Dense(3)(nn.relu(x))


def test_batch_norm_per_part_computes_what_separate_passes_compute():
    net = _DenseBatchNorm()
    first, second = np.random.default_rng(0).normal(size=(2, 5, 4)).astype(np.float32)
    variables = net.init(jax.random.PRNGKey(0), first)
    params = variables["params"]

    def run(params, stats, x, train=True):
        out, mutated = net.apply(
            {"params": params, "batch_stats": stats}, x, train=train, mutable=["batch_stats"]
        )
        return out, mutated["batch_stats"]

    def separate(params):
        out1, stats = run(params, variables["batch_stats"], first)
        out2, stats = run(params, stats, second)
        return jnp.sum(out1**2) + jnp.sum(out2**3), (jnp.concatenate([out1, out2]), stats)

    def joint(params):
        with train.batch_norm_per_part(2):
            out, stats = run(params, variables["batch_stats"], np.concatenate([first, second]))
        return jnp.sum(out[:5] ** 2) + jnp.sum(out[5:] ** 3), (out, stats)

    (_, (out, stats)), grads = jax.value_and_grad(separate, has_aux=True)(params)
    (_, (out_joint, stats_joint)), grads_joint = jax.value_and_grad(joint, has_aux=True)(params)
    np.testing.assert_allclose(out_joint, out, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(stats_joint, stats, rtol=1e-5, atol=1e-6)  # Chained: 2, then 1.
    chex.assert_trees_all_close(grads_joint, grads, rtol=1e-4, atol=1e-6)
    # One batch over both halves would normalise and count them together.
    whole_out, whole_stats = run(params, variables["batch_stats"], np.concatenate([first, second]))
    assert np.abs(np.asarray(whole_out) - np.asarray(out)).max() > 1e-2
    assert np.abs(whole_stats["BatchNorm_0"]["mean"] - stats["BatchNorm_0"]["mean"]).max() > 1e-3
    # In eval mode (running statistics) the parts change nothing.
    with train.batch_norm_per_part(2):
        eval_joint, _ = run(params, stats, np.concatenate([first, second]), train=False)
    eval_whole, _ = run(params, stats, np.concatenate([first, second]), train=False)
    np.testing.assert_array_equal(eval_joint, eval_whole)


def test_both_d_passes_keep_their_batch_statistics():
    """D's running statistics after the step = real pass, then fake pass on top."""
    step, spy = spied_step("default")
    state0 = initial_state("default")
    batch = make_batch(small_config(), MASK)
    state1, _, d_in, _ = spy.run(step, state0, batch)
    params, stats0 = state0.discriminator.params, state0.discriminator.batch_stats
    stats_after = functools.partial(d_stats_after, "default", params)

    after_real = stats_after(stats0, d_in["real"])
    chained = stats_after(after_real, d_in["fake"])
    chex.assert_trees_all_close(state1.discriminator.batch_stats, chained, atol=1e-5)
    # Keeping only one pass (the classic bug) gives clearly different statistics.
    for single in (stats_after(stats0, d_in["fake"]), after_real):
        diff = jax.tree.map(
            lambda a, b: float(np.abs(np.asarray(a) - np.asarray(b)).max()),
            state1.discriminator.batch_stats,
            single,
        )
        assert max(jax.tree.leaves(diff)) > 1e-3


def test_unlabelled_batch_never_moves_q_ss():
    """Q_ss learns from labelled reals only: the G update's Q_ss term does not reach D."""
    step, spy = spied_step("default")
    state0 = initial_state("default")
    batch = make_batch(small_config(), [0] * B)
    state1, metrics, _, _ = spy.run(step, state0, batch)
    d0, d1 = state0.discriminator.params, state1.discriminator.params
    assert trees_equal(d1["q_ss"], d0["q_ss"])  # Bitwise: Adam moves no zero-gradient param.
    for group in ("trunk", "d_head", "q_us"):
        assert not trees_equal(d1[group], d0[group]), group
    assert not trees_equal(state1.generator.params, state0.generator.params)
    assert float(metrics["d_ss_real"]) == 0.0 and float(metrics["labeled_fraction"]) == 0.0


def test_infogan_baseline_trains_q_ss_on_fakes_and_q_us_only_from_the_d_side():
    """No labels: Q_ss learns from fakes. lambda_us_d = 0 (same config): Q_us stays bitwise
    fixed although G still trains on L_us, so the G update's Q_us term does not reach D."""
    step, spy = spied_step("baseline")
    state0 = initial_state("baseline")
    batch = make_batch(small_config(), [0] * B)
    state1, metrics, _, _ = spy.run(step, state0, batch)
    d0, d1 = state0.discriminator.params, state1.discriminator.params
    assert not trees_equal(d1["q_ss"], d0["q_ss"])
    assert float(metrics["d_ss_fake"]) > 0.0
    assert trees_equal(d1["q_us"], d0["q_us"])
    assert float(metrics["g_us"]) > 0.0
    for group in ("trunk", "d_head"):
        assert not trees_equal(d1[group], d0[group]), group


def test_q_ss_on_fakes_starts_at_its_step():
    """With labels and q_ss_on_fakes_start = 5, an unlabelled batch moves Q_ss from step 5 on."""
    step, spy = spied_step("late_fakes")
    batch = make_batch(small_config(), [0] * B)
    for t, moves in ((4, False), (5, True), (9, True)):
        state0 = initial_state("late_fakes").replace(step=np.int32(t))
        state1, metrics, _, _ = spy.run(step, state0, batch)
        d0, d1 = state0.discriminator.params, state1.discriminator.params
        assert trees_equal(d1["q_ss"], d0["q_ss"]) is not moves, t
        assert float(metrics["d_ss_fake"]) > 0.0  # Computed (and logged) either way.


# --- Label masking ----------------------------------------------------------------------------


JUNK_CATEGORICAL = [0, 9, 2**30, -1, -(2**31)]
JUNK_CONTINUOUS = [0.0, 1e30, np.nan, np.inf, -np.inf]


def test_unlabelled_examples_have_no_influence():
    """Any label on a mask-0 example (categorical or continuous) gives bitwise the same step."""
    step, spy = spied_step("rich")
    config = rich_config()
    state0 = initial_state("rich")
    base = make_batch(config, MASK)
    assert set(base["labels"]) == {"label", "thickness"}
    unlabelled = np.asarray(MASK) == 0
    reference_state, reference_metrics, _, _ = spy.run(step, state0, base)
    for cat, cont in zip(JUNK_CATEGORICAL, JUNK_CONTINUOUS, strict=True):
        batch = {**base, "labels": dict(base["labels"])}
        batch["labels"]["label"] = np.where(unlabelled, cat, base["labels"]["label"]).astype(
            np.int32
        )
        batch["labels"]["thickness"] = np.where(
            unlabelled[:, None], np.float32(cont), base["labels"]["thickness"]
        ).astype(np.float32)
        new_state, metrics, _, _ = spy.run(step, state0, batch)
        assert trees_equal(new_state, reference_state), (cat, cont)
        assert trees_equal(metrics, reference_metrics), (cat, cont)
    # A labelled example's label does matter (the comparison can fail).
    for name, value in (("label", 7), ("thickness", 0.9)):
        batch = {**base, "labels": dict(base["labels"])}
        changed = np.array(base["labels"][name])
        changed[0] = value if name == "label" else [value]
        if name == "label" and base["labels"]["label"][0] == 7:
            changed[0] = 3
        batch["labels"][name] = changed
        new_state, _, _, _ = spy.run(step, state0, batch)
        assert not trees_equal(new_state.discriminator.params, reference_state.discriminator.params)


def test_each_code_counts_only_the_examples_labelled_for_its_label():
    """Masks per label: an example labelled for one label but not the other contributes
    exactly nothing to the other label's code, whatever that label holds (bitwise)."""
    step, spy = spied_step("rich")
    config = rich_config()
    state0 = initial_state("rich")
    masks = {
        "label": np.array([1, 0, 1, 1, 0, 0, 1, 0], np.float32),
        "thickness": np.array([0, 1, 1, 0, 0, 1, 1, 0], np.float32),
    }
    base = make_batch(config, masks)
    reference_state, reference_metrics, _, _ = spy.run(step, state0, base)
    assert 0 < float(reference_metrics["labeled_fraction"]) < 1
    np.testing.assert_allclose(reference_metrics["labeled_fraction"], 6 / 8)  # Either label.
    for name, junk in (("label", 2**30), ("thickness", np.nan), ("thickness", 1e30)):
        batch = {**base, "labels": dict(base["labels"])}
        off = masks[name] == 0
        values = np.array(base["labels"][name])
        values[off] = junk
        batch["labels"][name] = values
        new_state, metrics, _, _ = spy.run(step, state0, batch)
        assert trees_equal(new_state, reference_state), (name, junk)
        assert trees_equal(metrics, reference_metrics), (name, junk)
    # Each code's mean counts its own label's examples: one mask for both labels differs.
    shared = make_batch(config, masks["label"])
    shared["labels"] = base["labels"]
    _, shared_metrics, _, _ = spy.run(step, state0, shared)
    assert float(shared_metrics["d_ss_real"]) != float(reference_metrics["d_ss_real"])


# --- Compilation and randomness ---------------------------------------------------------------


def test_step_compiles_once():
    config = small_config()
    bound = train.bind_train_step(experiment_of(config))

    @chex.assert_max_traces(n=1)
    def traced(state, batch):
        return bound(state, batch)

    step = jax.jit(traced)
    state = jax.device_put(initial_state("default"))
    for i, mask in enumerate([[1] * B, [0] * B, MASK, MASK]):
        state, _ = step(state, make_batch(config, mask, seed=i))
    assert int(state.step) == 4
    assert step._cache_size() == 1


def test_grad_norms_are_optional_metrics_that_change_nothing_else():
    config = small_config()
    assert not config.log_grad_norms  # Off by default.
    state = initial_state("default")
    batch = make_batch(config, MASK)
    config.log_grad_norms = True
    with_norms, metrics = jax.jit(train.bind_train_step(experiment_of(config)))(state, batch)
    config.log_grad_norms = False
    without, lean = jax.jit(train.bind_train_step(experiment_of(config)))(state, batch)
    assert trees_equal(with_norms, without)
    assert set(metrics) - set(lean) == {"d_grad_norm", "g_grad_norm"}
    assert trees_equal({k: metrics[k] for k in lean}, lean)
    assert float(metrics["d_grad_norm"]) > 0 and float(metrics["g_grad_norm"]) > 0


def test_step_is_reproducible_and_codes_depend_on_the_step():
    step, spy = spied_step("default")
    state0 = initial_state("default")
    batch = make_batch(small_config(), MASK)
    first = spy.run(step, state0, batch)
    second = spy.run(step, state0, batch)
    assert trees_equal(first[0], second[0]) and trees_equal(first[1], second[1])

    def codes_for(state, batch):
        return spy.run(step, state, batch)[2]["codes"]

    codes0 = first[2]["codes"]
    # Codes are a function of (rng, step) only, not of the parameters or the batch.
    other_batch = make_batch(small_config(), [0] * B, seed=5)
    assert trees_equal(codes_for(first[0].replace(step=np.int32(0)), other_batch), codes0)
    # Another step, or another base key, draws other codes.
    for state in (state0.replace(step=np.int32(1)), state0.replace(rng=jax.random.PRNGKey(9))):
        codes = codes_for(state, batch)
        for name in ("digit", "c_us", latents.NOISE):
            assert not np.array_equal(codes[name], codes0[name]), name
    # Within a batch the codes are distinct draws of the configured priors.
    assert len(np.unique(codes0[latents.NOISE][:, 0])) == B
    assert np.all(np.abs(codes0["c_us"]) <= 1.0)
    assert set(np.asarray(codes0["digit"]).tolist()) <= set(range(10))


# --- Instance noise ---------------------------------------------------------------------------


def test_instance_noise_in_the_d_update_only():
    step, spy = spied_step("noisy")
    state0 = initial_state("noisy").replace(step=np.int32(3))
    batch = make_batch(noisy_config(), MASK)
    _, metrics, d_in, g_in = spy.run(step, state0, batch)
    sigma = 0.5 * 0.9**3
    np.testing.assert_allclose(metrics["instance_noise"], sigma, rtol=1e-6)

    # D saw reals and fakes plus independent N(0, sigma) noise ...
    real_noise = (d_in["real"] - batch["image"]).reshape(-1)
    fake_noise = (d_in["fake"] - g_in["fake"]).reshape(-1)
    for noise in (real_noise, fake_noise):
        assert stats.kstest(noise / sigma, "norm").pvalue > 1e-3
    assert abs(np.corrcoef(real_noise, fake_noise)[0, 1]) < 0.05
    # ... while the G update saw the clean fakes: exactly G(codes).
    layout, generator, _, _ = models_for("noisy")
    z = latents.generator_input(layout, g_in["codes"])
    variables = {"params": state0.generator.params, "batch_stats": state0.generator.batch_stats}
    clean = jax.jit(functools.partial(generator.apply, train=True, mutable=["batch_stats"]))
    np.testing.assert_allclose(g_in["fake"], clean(variables, z)[0], atol=1e-5)
    assert trees_equal(g_in["codes"], d_in["codes"])

    # Step 0: sigma = stddev; the same step without noise gives a different D update.
    state0 = initial_state("noisy")
    _, metrics0, _, _ = spy.run(step, state0, batch)
    np.testing.assert_allclose(metrics0["instance_noise"], 0.5, rtol=1e-6)
    plain_step, plain_spy = spied_step("default")
    _, plain_metrics, plain_d, _ = plain_spy.run(plain_step, initial_state(), batch)
    np.testing.assert_array_equal(plain_d["real"], batch["image"])
    assert float(plain_metrics["instance_noise"]) == 0.0
    assert abs(float(plain_metrics["d_loss"]) - float(metrics0["d_loss"])) > 1e-4


# --- Consistency loss (optional) ---------------------------------------------------------------


def translation_of(real, moved, max_shift: int, fill: float) -> tuple[int, int] | None:
    """The (dy, dx) that moves `real` [H, W, C] onto `moved`, if there is one."""
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            shifted = augment.shift_images(real[None], np.array([[dy, dx]]), fill)[0]
            if np.array_equal(shifted, moved):
                return dy, dx
    return None


def test_consistency_pass_sees_translated_reals_and_keeps_no_statistics():
    step, spy = spied_step("consistency")
    state0 = initial_state("consistency")
    batch = make_batch(consistency_config(), MASK)
    state1, metrics, d_in, _ = spy.run(step, state0, batch)
    # Each example of the third pass is its real moved by some (dy, dx) in [-2, 2]^2, and the
    # vacated pixels are the data's background (0 for MNIST).
    fill = models.get_architecture(consistency_config().model.arch).image_range[0]
    found = [
        translation_of(real, shifted, 2, fill)
        for real, shifted in zip(d_in["real"], d_in["shifted"], strict=True)
    ]
    assert None not in found, "not a translation of its real"
    assert len(set(found)) > 1  # Per-example shifts.
    assert float(metrics["d_consistency"]) > 0.0
    # D's running statistics are those of the real and fake passes only.
    d0 = state0.discriminator
    stats = d_stats_after("consistency", d0.params, d0.batch_stats, d_in["real"], d_in["fake"])
    chex.assert_trees_all_close(state1.discriminator.batch_stats, stats, atol=1e-5)
    # Off (the default), there is no third pass.
    plain_step, plain_spy = spied_step("default")
    _, plain_metrics, plain_d, _ = plain_spy.run(plain_step, initial_state(), batch)
    assert plain_d["shifted"] is None and "d_consistency" not in plain_metrics


def test_a_q_ss_of_its_own_reads_translated_reals_and_d_the_reals():
    step, spy = spied_step("own_trunk")
    state0 = initial_state("own_trunk")
    batch = make_batch(own_trunk_config(), MASK)
    _, metrics, d_in, _ = spy.run(step, state0, batch)
    np.testing.assert_array_equal(d_in["real"], batch["image"])
    fill = models.get_architecture(own_trunk_config().model.arch).image_range[0]
    found = [
        translation_of(real, moved, 2, fill)
        for real, moved in zip(d_in["real"], d_in["q_ss_real"], strict=True)
    ]
    assert None not in found and len(set(found)) > 1, found
    # The same D step without the translation: D's own terms are the same, Q_ss's are not.
    layout, _, discriminator, weights = models_for("own_trunk")

    def d_terms(q_ss_real):
        _, (_, terms) = train.discriminator_loss(
            d_in["d_params"],
            state0.discriminator.batch_stats,
            d_in["real"],
            d_in["fake"],
            batch,
            d_in["codes"],
            discriminator=discriminator,
            layout=layout,
            weights=weights,
            q_ss_real_images=q_ss_real,
        )
        return to_host(terms)

    shifted, plain = d_terms(d_in["q_ss_real"]), d_terms(None)
    np.testing.assert_allclose(float(metrics["d_ss_real"]), shifted["d_ss_real"], rtol=1e-5)
    np.testing.assert_allclose(shifted["d_gan"], plain["d_gan"], rtol=1e-6)
    np.testing.assert_allclose(shifted["d_us"], plain["d_us"], rtol=1e-6)
    assert abs(shifted["d_ss_real"] - plain["d_ss_real"]) > 1e-4


def test_a_recolouring_q_ss_reads_every_image_recoloured_and_d_reads_it_as_it_is():
    step, spy = spied_step("recolour")
    config = recolour_config()
    batch = make_batch(config, MASK)
    _, metrics, d_in, g_in = spy.run(step, initial_state("recolour"), batch)
    np.testing.assert_array_equal(d_in["real"], batch["image"])
    low, high = models.get_architecture(config.model.arch).image_range

    def mirrored(seen, image) -> bool | None:
        """MNIST has one channel: a recolouring of it is the image or its negative."""
        for flip in (False, True):
            if np.allclose(seen, low + high - image if flip else image, atol=1e-6):
                return flip
        return None

    # Reals: translated by up to 2 px, then recoloured; fakes (D and G step alike): recoloured.
    reals = []
    for real, seen in zip(d_in["real"], d_in["q_ss_real"], strict=True):
        shifts = [
            augment.shift_images(real[None], np.array([[dy, dx]]), low)[0]
            for dy in range(-2, 3)
            for dx in range(-2, 3)
        ]
        reals.append({mirrored(seen, moved) for moved in shifts} - {None})
    assert all(len(found) == 1 for found in reals), reals
    fakes = [mirrored(*pair) for pair in zip(d_in["q_ss_fake"], d_in["fake"], strict=True)]
    assert None not in fakes and set(fakes) == {False, True}, fakes
    np.testing.assert_array_equal(g_in["q_ss_fake"], d_in["q_ss_fake"])
    assert {found.pop() for found in reals} == {False, True}

    # G's Q_ss term reads the recoloured fakes; its GAN term the fakes as they are.
    layout, _, discriminator, weights = models_for("recolour")
    state1_d = g_in["d_params"]
    _, plain = train.generator_loss(
        g_in["fake"],
        state1_d,
        initial_state("recolour").discriminator.batch_stats,
        g_in["codes"],
        discriminator=discriminator,
        layout=layout,
        weights=weights,
    )
    np.testing.assert_allclose(float(metrics["g_gan"]), float(plain["g_gan"]), rtol=1e-5)
    assert abs(float(metrics["g_ss"]) - float(plain["g_ss"])) > 1e-4


def test_labelled_reals_are_varied_for_d_and_q_ss_and_unlabelled_ones_never():
    step, spy = spied_step("varied_labeled")
    batch = make_batch(varied_labeled_config(), MASK)
    _, metrics, d_in, _ = spy.run(step, initial_state("varied_labeled"), batch)
    labelled = np.asarray(MASK, bool)
    np.testing.assert_array_equal(d_in["real"][~labelled], batch["image"][~labelled])
    fill = models.get_architecture(varied_labeled_config().model.arch).image_range[0]
    for real, seen in zip(batch["image"][labelled], d_in["real"][labelled], strict=True):
        assert translation_of(real, seen, 2, fill) is None  # More than moved.
        assert np.abs(seen - real).mean() > 0.01
    plain_step, plain_spy = spied_step("default")
    _, plain_metrics, _, _ = plain_spy.run(plain_step, initial_state(), batch)
    assert abs(float(metrics["d_ss_real"]) - float(plain_metrics["d_ss_real"])) > 1e-4


@pytest.mark.parametrize("config_name", ["default", "own_trunk"])
def test_q_ss_dropout_changes_what_q_ss_learns_and_nothing_of_d(config_name):
    config = CONFIGS[config_name]()
    state, batch = initial_state(config_name), make_batch(config, MASK)
    stepped = {}
    for rate in (0.0, 0.5):
        config.model.q_ss_dropout = rate
        stepped[rate] = jax.jit(train.bind_train_step(experiment_of(config)))(state, batch)
    (plain, plain_metrics), (dropped, metrics) = stepped[0.0], stepped[0.5]
    assert float(metrics["d_gan"]) == float(plain_metrics["d_gan"])
    assert abs(float(metrics["d_ss_real"]) - float(plain_metrics["d_ss_real"])) > 1e-3
    assert abs(float(metrics["g_ss"]) - float(plain_metrics["g_ss"])) > 1e-3
    d, plain_d = dropped.discriminator.params, plain.discriminator.params
    assert trees_equal(d["d_head"], plain_d["d_head"])
    assert not trees_equal(d["q_ss"], plain_d["q_ss"])


def test_rotate_and_scale_turns_and_grows_about_the_centre():
    image = np.full((6, 6, 1), -1.0, np.float32)
    image[0, 1] = 1.0
    turned = np.asarray(augment.rotate_and_scale(jnp.asarray(image), 90.0, 1.0, -1.0))
    np.testing.assert_allclose(turned, np.rot90(image, -1), atol=1e-5)  # Clockwise on screen.
    square = np.full((20, 20, 1), -1.0, np.float32)
    square[8:12, 8:12] = 1.0
    grown = np.asarray(augment.rotate_and_scale(jnp.asarray(square), 0.0, 2.0, -1.0))
    assert (grown > 0.99).sum() == 36 and (grown[7:13, 7:13] > 0.99).all()  # Side 4 -> 6 + rims.
    assert grown[:4].max() == -1.0 and grown[:, :4].max() == -1.0  # Nothing moved off-centre.
    np.testing.assert_array_equal(augment.rotate_and_scale(jnp.asarray(square), 0, 1, -1), square)


def test_restroke_thickens_thins_or_keeps_each_a_third_of_the_time():
    digit = np.full((8, 8, 1), -1.0, np.float32)
    digit[2:6, 3:5] = 1.0  # A stroke two pixels wide.
    padded = np.pad(digit, ((0, 1), (0, 1), (0, 0)), constant_values=-1.0)
    windows = [padded[dy : dy + 8, dx : dx + 8] for dy in (0, 1) for dx in (0, 1)]
    thick, thin = np.max(windows, axis=0), np.min(windows, axis=0)
    assert (thick > 0).sum() == 15 and (thin > 0).sum() == 3
    keys = jax.random.split(jax.random.PRNGKey(0), 300)
    outs = np.asarray(jax.vmap(lambda k: augment.restroke(k, jnp.asarray(digit), -1.0))(keys))
    kinds = [
        next(i for i, ref in enumerate((thick, thin, digit)) if np.array_equal(out, ref))
        for out in outs
    ]
    counts = np.bincount(kinds, minlength=3)
    assert all(80 <= n <= 120 for n in counts), counts


def test_instance_noise_schedule():
    noise = train.InstanceNoise(stddev=0.3, decay=0.99)
    for t in (0, 1, 10, 1000):
        np.testing.assert_allclose(noise.sigma(jnp.int32(t)), 0.3 * 0.99**t, rtol=1e-5)
    assert float(train.InstanceNoise().sigma(jnp.int32(5))) == 0.0


# --- Use from research code (README) ---------------------------------------------------------


def test_readme_research_code_snippet():
    import jax

    from ssinfogan_jax import default_config as default
    from ssinfogan_jax import experiment, latents, losses, models, train  # noqa: F401

    exp = experiment.from_config(default.get_config())
    state = train.create_train_state(jax.random.PRNGKey(0), exp)
    step = train.make_train_step(exp)  # jitted, pure: (state, batch) -> (state, metrics)
    rng = np.random.default_rng(0)
    first = state
    for _ in range(2):
        batch = {
            "image": rng.uniform(0, 1, (B, 28, 28, 1)).astype(np.float32),
            "label_masks": {"label": np.ones(B, np.float32)},
            "labels": {"label": rng.integers(0, 10, B).astype(np.int32)},
        }
        state, metrics = step(state, batch)
    assert int(state.step) == 2
    # On CPU the state is not donated (faster there): the caller's old state stays readable.
    assert int(first.step) == 0
    assert not jax.tree.leaves(first.generator.params)[0].is_deleted()
    donating = train.make_train_step(exp, donate=True)
    donating(first, batch)
    assert jax.tree.leaves(first.generator.params)[0].is_deleted()
    assert step._cache_size() == 1  # Compiled once.
    for key in ("d_loss", "g_loss", "d_gan", "d_ss_real", "d_us", "g_gan", "g_ss", "g_us",
                "d_real", "d_fake", "q_ss_real_acc/digit", "recovery_acc/digit",
                "recovery_mse/c_us", "mi_lower_bound"):  # fmt: skip
        assert np.isfinite(float(metrics[key])), key
    assert 0.0 < float(metrics["d_fake"]) < 1.0 and 0.0 < float(metrics["d_real"]) < 1.0
