"""Tests of the evaluation library: class mappings, Frechet maths, image grids, classifier."""

from __future__ import annotations

import itertools
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from ssinfogan_jax import default_config as default
from ssinfogan_jax import latents as latents_lib
from ssinfogan_jax.data import digit_scenes
from ssinfogan_jax.evaluation import classifier as classifier_lib
from ssinfogan_jax.evaluation import frechet, images, metrics

# --- conditional accuracy and class mappings -------------------------------------------------


def test_permuted_perfect_generator_direct_low_mapped_one():
    permutation = np.array([3, 7, 0, 9, 1, 2, 8, 4, 6, 5])
    predictions = np.repeat(permutation[:, None], 50, axis=1)  # Code k always gives class p[k].
    for method in metrics.MAPPING_METHODS:
        result = metrics.conditional_accuracy(predictions, 10, method=method)
        assert result.direct == 0.0  # No fixed points in the permutation.
        assert result.mapped == 1.0
        np.testing.assert_array_equal(result.mapping, permutation)
        np.testing.assert_array_equal(result.per_value_mapped, np.ones(10))


def test_identity_generator_direct_equals_mapped():
    predictions = np.repeat(np.arange(10)[:, None], 8, axis=1)
    predictions[0, :2] = 5  # 2 of 80 samples wrong.
    result = metrics.conditional_accuracy(predictions)
    assert result.direct == pytest.approx(78 / 80)
    assert result.mapped == pytest.approx(78 / 80)
    np.testing.assert_array_equal(result.mapping, np.arange(10))
    assert result.confusion[0, 5] == 2 and result.confusion.sum() == 80


def _counts_to_predictions(counts: np.ndarray) -> np.ndarray:
    return np.stack([np.repeat(np.arange(len(row)), row) for row in counts])


def test_greedy_is_suboptimal_where_hungarian_is_not():
    # Greedy takes 9 (2->2), then 5 (0->0), leaving 1->1 with 0: 14 of 27 correct.
    # The best bijection is 0->1, 1->0, 2->2: 4 + 4 + 9 = 17 of 27.
    counts = np.array([[5, 4, 0], [4, 0, 5], [0, 0, 9]])
    predictions = _counts_to_predictions(counts)
    greedy = metrics.conditional_accuracy(predictions, 3, method="greedy")
    hungarian = metrics.conditional_accuracy(predictions, 3, method="hungarian")
    np.testing.assert_array_equal(greedy.mapping, [0, 1, 2])
    np.testing.assert_array_equal(hungarian.mapping, [1, 0, 2])
    assert greedy.mapped == pytest.approx(14 / 27)
    assert hungarian.mapped == pytest.approx(17 / 27)
    assert greedy.direct == hungarian.direct == pytest.approx(14 / 27)
    np.testing.assert_array_equal(greedy.confusion, counts)


def test_mappings_are_bijections_and_hungarian_is_optimal_on_random_scores():
    rng = np.random.default_rng(0)
    for _ in range(20):
        scores = rng.random((6, 6))
        best = max(scores[np.arange(6), list(p)].sum() for p in itertools.permutations(range(6)))
        for method in metrics.MAPPING_METHODS:
            mapping = metrics.class_mapping(scores, method)
            assert sorted(mapping) == list(range(6))
        hungarian = metrics.hungarian_mapping(scores)
        assert scores[np.arange(6), hungarian].sum() == pytest.approx(best)
        assert scores[np.arange(6), metrics.greedy_mapping(scores)].sum() <= best + 1e-12


def test_more_code_values_than_classes_leaves_some_unmapped():
    predictions = np.array([[0, 0], [1, 1], [1, 0]])  # 3 code values, 2 classes.
    result = metrics.conditional_accuracy(predictions, num_classes=2)
    assert (result.mapping == -1).sum() == 1
    assert result.mapped == pytest.approx(4 / 6)
    assert result.direct == pytest.approx(4 / 6)  # Value 2 has no class 2.


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="outside"):
        metrics.conditional_accuracy(np.array([[0, 3]]), num_classes=2)
    with pytest.raises(ValueError, match="method"):
        metrics.class_mapping(np.eye(2), "best")


def test_label_accuracy_direct_and_mapped():
    labels = np.array([0, 0, 1, 1, 2, 2, 2, 0])
    swapped = np.array([1, 0, 2, 2, 0, 0, 0, 1])  # Code 0 -> class 2, code 1 -> 0, code 2 -> 1.
    result = metrics.label_accuracy(swapped, labels, num_classes=3)
    assert result.direct == pytest.approx(1 / 8)
    assert result.mapped == pytest.approx(7 / 8)
    np.testing.assert_array_equal(result.mapping, [2, 0, 1])


def test_code_recovery():
    rng = np.random.default_rng(1)
    codes = rng.uniform(-1, 1, (1000, 2))
    predictions = np.stack([codes[:, 0] + 0.1, -codes[:, 1]], axis=1)
    result = metrics.code_recovery(codes, predictions)
    np.testing.assert_allclose(result["mse"][0], 0.01)
    np.testing.assert_allclose(result["correlation"], [1.0, -1.0])
    constant = metrics.code_recovery(codes[:, :1], np.zeros((1000, 1)))
    assert np.isnan(constant["correlation"][0])


LAYOUT = latents_lib.LatentLayout(
    codes=(
        latents_lib.Code("digit", latents_lib.CATEGORICAL, 4, label="label"),
        latents_lib.Code("c_us", latents_lib.CONTINUOUS, 2),
    ),
    noise_size=3,
)


def _fake_generate(z):
    """A 'generator' that writes its digit code into every pixel: [B, 2, 2, 1]."""
    value = z["digit"].astype(jnp.float32)[:, None, None, None]
    return jnp.broadcast_to(value, (value.shape[0], 2, 2, 1))


def test_conditional_samples_fix_the_code_and_vary_the_rest():
    rng = jax.random.key(0)
    samples = metrics.conditional_samples(_fake_generate, LAYOUT, "digit", 5, rng, batch_size=2)
    assert samples.shape == (4, 5, 2, 2, 1)
    np.testing.assert_array_equal(samples[:, :, 0, 0, 0], np.repeat(np.arange(4)[:, None], 5, 1))
    z = latents_lib.conditional_latents(rng, LAYOUT, "digit", 5)
    assert not np.allclose(z[0]["noise"], z[1]["noise"])  # Independent per value ...
    paired = latents_lib.conditional_latents(rng, LAYOUT, "digit", 5, paired=True)
    np.testing.assert_array_equal(paired[0]["noise"], paired[3]["noise"])  # ... or shared.
    for k in range(4):  # Value k draws what `sample` draws from fold_in(rng, k).
        fixed = {"digit": jnp.full((5,), k, jnp.int32)}
        drawn = latents_lib.sample(jax.random.fold_in(rng, k), LAYOUT, 5, fixed=fixed)
        chex.assert_trees_all_close(z[k], drawn, rtol=1e-6, atol=1e-6)
    again = metrics.conditional_samples(_fake_generate, LAYOUT, "digit", 5, rng)
    np.testing.assert_array_equal(samples, again)
    with pytest.raises(ValueError, match="categorical"):
        latents_lib.conditional_latents(rng, LAYOUT, "c_us", 5)


@pytest.mark.parametrize("method", metrics.MAPPING_METHODS)
def test_evaluate_conditional_with_a_permuting_classifier(method):
    permutation = np.array([2, 0, 3, 1])

    def classify(x):  # Class permutation[code] with certainty.
        codes = np.asarray(x[:, 0, 0, 0]).astype(int)
        return np.eye(4)[permutation[codes]] * 10.0

    result = metrics.evaluate_conditional(
        _fake_generate, classify, LAYOUT, "digit", 6, jax.random.key(1), method=method
    )
    assert result.direct == 0.0 and result.mapped == 1.0
    np.testing.assert_array_equal(result.mapping, permutation)
    assert result.as_dict("cond_acc_") == {"cond_acc_direct": 0.0, "cond_acc_mapped": 1.0}


def test_within_group_spread_is_the_mean_total_variance_per_group():
    features = np.array([[0.0, 0.0], [2.0, 0.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [9.0, 9.0]])
    groups = np.array([0, 0, 1, 1, 1, -1])  # -1: unlabelled, left out.
    assert metrics.within_group_spread(features, groups) == pytest.approx((1.0 + 0.0) / 2)
    with pytest.raises(ValueError, match="2 or more"):
        metrics.within_group_spread(features[:1], groups[:1])


def test_within_group_spread_of_samples_is_zero_when_g_ignores_its_other_latents():
    def uses_noise(z):  # The digit code, plus the noise in the second pixel row.
        image = _fake_generate(z)
        return image.at[:, 1, :, 0].add(z["noise"][:, :2])

    spreads = {}
    for name, generate in (("collapsed", _fake_generate), ("varied", uses_noise)):
        samples = metrics.conditional_samples(generate, LAYOUT, "digit", 50, jax.random.key(0))
        features = samples.reshape(4 * 50, -1)
        spreads[name] = metrics.within_group_spread(features, np.repeat(np.arange(4), 50))
    assert spreads["collapsed"] == 0.0
    # Two pixels carry a standard normal draw each: total variance ~2 per code value.
    assert spreads["varied"] == pytest.approx(2.0, rel=0.25)


# --- Frechet distance ------------------------------------------------------------------------


def test_frechet_identical_gaussians_is_zero():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 5))
    sigma = a @ a.T + np.eye(5)
    mu = rng.normal(size=5)
    assert frechet.frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-8)


def test_frechet_equal_covariances_is_squared_mean_distance():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(4, 4))
    sigma = a @ a.T + 0.5 * np.eye(4)
    mu1, mu2 = rng.normal(size=4), rng.normal(size=4)
    expected = float(np.sum((mu1 - mu2) ** 2))
    assert frechet.frechet_distance(mu1, sigma, mu2, sigma) == pytest.approx(expected, rel=1e-8)


def test_frechet_diagonal_covariances_closed_form():
    a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)  # 5 + 5
    result = frechet.frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
    assert result == pytest.approx(expected, rel=1e-10)
    assert result == pytest.approx(10.0)


def test_frechet_commuting_covariances_closed_form():
    # Same eigenvectors: d = ||mu1 - mu2||^2 + sum (sqrt(l1) - sqrt(l2))^2 over eigenvalues.
    q, _ = np.linalg.qr(np.random.default_rng(2).normal(size=(3, 3)))
    l1, l2 = np.array([1.0, 2.0, 3.0]), np.array([4.0, 0.5, 3.0])
    s1, s2 = q @ np.diag(l1) @ q.T, q @ np.diag(l2) @ q.T
    expected = np.sum((np.sqrt(l1) - np.sqrt(l2)) ** 2)
    assert frechet.frechet_distance(np.zeros(3), s1, np.zeros(3), s2) == pytest.approx(expected)


def test_frechet_singular_covariances_give_a_finite_answer():
    s = np.zeros((3, 3))
    s[0, 0] = 1.0  # Rank 1: S1 S2 is singular.
    result = frechet.frechet_distance(np.zeros(3), s, np.ones(3), s)
    assert np.isfinite(result)
    assert result == pytest.approx(3.0, abs=1e-4)


def test_frechet_from_features_matches_statistics_and_is_float64():
    rng = np.random.default_rng(3)
    f1 = rng.normal(size=(4000, 3)).astype(np.float32)
    f2 = (rng.normal(size=(4000, 3)) * 2.0 + 1.0).astype(np.float32)
    mu, sigma = frechet.gaussian_statistics(f1)
    assert mu.dtype == np.float64 and sigma.shape == (3, 3)
    np.testing.assert_allclose(sigma, np.cov(f1.astype(np.float64), rowvar=False))
    # Population answer: N(0, I) vs N(1, 4I): 3 * 1 + 3 * (1 - 2)^2 = 6.
    assert frechet.frechet_distance_from_features(f1, f2) == pytest.approx(6.0, rel=0.05)
    assert frechet.frechet_distance_from_features(f1, f1) == pytest.approx(0.0, abs=1e-6)


# --- image grids -----------------------------------------------------------------------------


def test_to_uint8_range_conversion():
    x = np.array([-1.0, 0.0, 1.0, 2.0, -3.0])
    np.testing.assert_array_equal(images.to_uint8(x, (-1.0, 1.0)), [0, 128, 255, 255, 0])
    np.testing.assert_array_equal(images.to_uint8(np.array([0.0, 0.5, 1.0])), [0, 128, 255])
    with pytest.raises(ValueError):
        images.to_uint8(x, (1.0, 1.0))


def test_grid_layout_pixel_positions():
    n, h, w = 5, 3, 4
    x = np.stack([np.full((h, w, 1), i / 10.0) for i in range(n)])  # Image i has value i / 10.
    grid = images.make_grid(x, rows=2, cols=3, padding=1, pad_value=7)
    assert grid.shape == (2 * (h + 1) + 1, 3 * (w + 1) + 1, 1) and grid.dtype == np.uint8
    for i in range(n):
        r, c = divmod(i, 3)
        top, left = 1 + r * (h + 1), 1 + c * (w + 1)
        cell = grid[top : top + h, left : left + w, 0]
        np.testing.assert_array_equal(cell, np.rint(i / 10.0 * 255))
        assert grid[top - 1, left, 0] == 7 and grid[top, left - 1, 0] == 7
    empty = grid[1 + (h + 1) : 1 + (h + 1) + h, 1 + 2 * (w + 1) : 1 + 2 * (w + 1) + w, 0]
    np.testing.assert_array_equal(empty, 7)  # Sixth cell left blank.


def test_grid_from_rows_by_columns_and_scale_and_png(tmp_path):
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 4, 4, 3)).astype(np.float32)
    flat = images.make_grid(x.reshape(6, 4, 4, 3), rows=2, value_range=(-1, 1))
    grid = images.make_grid(x, value_range=(-1, 1))  # [rows, cols, H, W, C] input.
    np.testing.assert_array_equal(grid, flat)
    np.testing.assert_array_equal(grid[2:6, 2 + 6 : 6 + 6], images.to_uint8(x[0, 1], (-1, 1)))
    big = images.make_grid(x, value_range=(-1, 1), scale=2)
    np.testing.assert_array_equal(big[::2, ::2], grid)
    path = images.save_image(str(tmp_path / "sub" / "grid.png"), grid)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), grid)
    gray = images.save_grid(str(tmp_path / "g.png"), x[..., :1], value_range=(-1, 1))
    loaded = np.asarray(Image.open(tmp_path / "g.png"))
    assert loaded.shape == gray.shape[:2]
    np.testing.assert_array_equal(loaded, gray[..., 0])
    with pytest.raises(ValueError, match="fit"):
        images.make_grid(x.reshape(6, 4, 4, 3), rows=2, cols=2)


# --- the independent classifier --------------------------------------------------------------


def _digits():
    """scikit-learn's 8x8 digits (bundled, offline) as float32 [N, 8, 8, 1] in [0, 1]."""
    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[..., None]
    return x, data.target.astype(np.int32)


SMALL = dict(
    widths=(16, 32),
    convs_per_stage=1,
    feature_size=64,
    batch_size=64,
    batch_norm=False,
    max_shift=0.0,
    max_rotation=0.0,
    max_scale=0.0,
)


def test_classifier_learns_digits_and_round_trips(tmp_path):
    x, y = _digits()
    clf, val_accuracy = classifier_lib.train_classifier(
        x[:1200], y[:1200], x[1200:], y[1200:], num_classes=10, seed=0, num_steps=300, **SMALL
    )
    assert val_accuracy >= 0.93, val_accuracy
    assert clf.val_accuracy == val_accuracy and clf.info["num_val"] == len(x) - 1200
    logits, features = clf.predict(x[1200:], batch_size=256), clf.features(x[1200:])
    assert logits.shape == (len(x) - 1200, 10) and features.shape == (len(x) - 1200, 64)
    # Batching does not change the answer.
    np.testing.assert_allclose(clf.predict(x[1200:], batch_size=100), logits, atol=1e-5)

    path = clf.save(str(tmp_path / "clf"))
    loaded = classifier_lib.load(path)
    np.testing.assert_array_equal(loaded.predict(x[1200:], batch_size=256), logits)
    np.testing.assert_array_equal(loaded.features(x[1200:]), features)
    assert loaded.spec == clf.spec and loaded.val_accuracy == val_accuracy


def test_classifier_is_deterministic_and_batch_norm_round_trips(tmp_path):
    x, y = _digits()
    kwargs = dict(SMALL, num_classes=10, seed=3, num_steps=5)
    kwargs.update(batch_norm=True, max_shift=1.0, max_rotation=10.0, max_scale=0.1)
    a, _ = classifier_lib.train_classifier(x[:300], y[:300], **kwargs)
    b, _ = classifier_lib.train_classifier(x[:300], y[:300], **kwargs)
    assert "batch_stats" in a.variables
    np.testing.assert_array_equal(a.predict(x[300:400]), b.predict(x[300:400]))
    loaded = classifier_lib.load(a.save(str(tmp_path / "bn")))
    np.testing.assert_array_equal(loaded.predict(x[300:400]), a.predict(x[300:400]))
    with pytest.raises(ValueError, match="images"):
        a.predict(np.zeros((2, 28, 28, 1), np.float32))


def test_random_affine_identity_and_shift():
    x = jnp.arange(2 * 5 * 5, dtype=jnp.float32).reshape(2, 5, 5, 1)
    same = classifier_lib.random_affine(jax.random.key(0), x, 0.0, 0.0, 0.0)
    np.testing.assert_array_equal(same, x)
    moved = classifier_lib.random_affine(jax.random.key(0), x, 1.0, 0.0, 0.0)
    assert moved.shape == x.shape and not np.allclose(moved, x)


def test_classifier_takes_32x32_rgb():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (40, 32, 32, 3)).astype(np.float32)  # The infogan_32 range.
    y = rng.integers(0, 10, 40).astype(np.int32)
    clf, accuracy = classifier_lib.train_classifier(
        x,
        y,
        x,
        y,
        **dict(SMALL, widths=(8,), feature_size=16, batch_size=8),
        num_classes=10,
        num_steps=2,
    )
    assert clf.predict(x).shape == (40, 10) and clf.features(x).shape == (40, 16)
    assert 0.0 <= accuracy <= 1.0 and len(clf.spec.mean) == 3


def test_batched_apply_matches_one_call_and_compiles_once_per_chunk_size():
    from ssinfogan_jax.evaluation import batching

    calls = []

    @jax.jit
    def fn(tree):
        calls.append(tree["x"].shape)  # Runs at trace time only.
        return {"sum": tree["x"].sum(-1), "twice": 2 * tree["y"]}

    rng = np.random.default_rng(0)
    inputs = {"x": rng.normal(size=(7, 3)), "y": np.arange(7)}
    out = batching.batched_apply(fn, inputs, batch_size=3)
    np.testing.assert_allclose(out["sum"], inputs["x"].sum(-1), rtol=1e-6)
    np.testing.assert_array_equal(out["twice"], 2 * np.arange(7))
    assert calls == [(3, 3)]  # 3 + 3 + 1 (padded to 3): one traced shape.
    small = batching.batched_apply(fn, {k: v[:2] for k, v in inputs.items()}, batch_size=3)
    assert small["sum"].shape == (2,) and calls[-1] == (2, 3)
    empty = batching.batched_apply(fn, {k: v[:0] for k, v in inputs.items()}, batch_size=3)
    assert empty["sum"].shape == (0,)


def _mnist_evaluator(g_ema_decay: float = 0.0):
    """(experiment, evaluator) of the MNIST config on 30 random test images, with no judge."""
    from ssinfogan_jax import default_config as default
    from ssinfogan_jax import experiment
    from ssinfogan_jax.evaluation import evaluator as evaluator_lib

    config = default.get_config()
    config.eval.samples_per_value = 4
    config.optimizer.g_ema_decay = g_ema_decay
    exp = experiment.from_config(config, check=False)
    rng = np.random.default_rng(0)
    test_images = rng.uniform(0, 1, (30, 28, 28, 1)).astype(np.float32)
    test_labels = {"label": rng.integers(0, 10, 30).astype(np.int32)}
    return exp, evaluator_lib.Evaluator(exp, test_images, test_labels, classifier=None)


def test_a_second_evaluation_compiles_nothing():
    from ssinfogan_jax import train

    exp, evaluator = _mnist_evaluator()
    first = evaluator.evaluate(train.create_train_state(jax.random.PRNGKey(0), exp))
    compiles = []
    listener = lambda event, duration, **kwargs: compiles.append(event)
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        other = train.create_train_state(jax.random.PRNGKey(1), exp)  # New parameters.
        compiles.clear()
        second = evaluator.evaluate(other)
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert [e for e in compiles if e == "/jax/core/compile/backend_compile_duration"] == []
    assert set(first) == set(second) and first != second
    assert 0.0 <= second["q_ss_test_acc"] <= 1.0


def test_evaluation_reads_the_moving_average_of_g_where_one_is_kept():
    from ssinfogan_jax import train

    exp, evaluator = _mnist_evaluator(g_ema_decay=0.999)
    state = train.create_train_state(jax.random.PRNGKey(0), exp)
    other = train.create_train_state(jax.random.PRNGKey(1), exp)  # Another G as the average.
    averaged = state.replace(generator_ema=train.generator_variables(other))
    g = state.generator
    as_g = state.replace(generator_ema={"params": g.params, "batch_stats": g.batch_stats})
    swapped = state.replace(
        generator=g.replace(params=other.generator.params, batch_stats=other.generator.batch_stats)
    )
    result = evaluator.evaluate(averaged)
    assert result == evaluator.evaluate(swapped.replace(generator_ema=averaged.generator_ema))
    assert result["recovery_mse/c_us"] != evaluator.evaluate(as_g)["recovery_mse/c_us"]
    assert evaluator.evaluate(as_g) == evaluator.evaluate(train.without_generator_ema(state))


# --- every supervised code judged ---------------------------------------------------------------


def _digit_heads():
    """The 8x8 digits with three labels: the digit, a binary one (digit >= 5) and a
    continuous one (the digit mapped onto [-1, 1])."""
    x, y = _digits()
    labels = {"label": y, "big": (y >= 5).astype(np.int32), "value": (y / 4.5 - 1).astype("f4")}
    return x, labels


def test_multi_head_classifier_learns_each_label_and_round_trips(tmp_path):
    x, labels = _digit_heads()
    train = {k: v[:1200] for k, v in labels.items()}
    val = {k: v[1200:] for k, v in labels.items()}
    heads = {"label": 10, "big": 2, "value": 0}
    clf, scores = classifier_lib.train_classifier(
        x[:1200], train, x[1200:], val, num_classes=heads, seed=0, num_steps=300, **SMALL
    )
    assert set(scores) == set(heads) and clf.heads == heads
    assert scores["label"] >= 0.9 and scores["big"] >= 0.9 and scores["value"] >= 0.8, scores
    assert clf.val_accuracy == scores["label"] and clf.info["val_by_head"] == scores
    assert clf.predict(x[1200:]).shape == (len(x) - 1200, 10)  # The first head.
    assert clf.predict(x[1200:], head="big").shape == (len(x) - 1200, 2)
    assert clf.predict(x[1200:], head="value").shape == (len(x) - 1200,)
    loaded = classifier_lib.load(clf.save(str(tmp_path / "heads")))
    assert loaded.spec == clf.spec
    for name, out in clf.predict_heads(x[1200:]).items():
        np.testing.assert_array_equal(loaded.predict(x[1200:], head=name), out)
    with pytest.raises(ValueError, match="heads"):
        clf.predict(x[:2], head="nope")


def test_each_head_trains_on_the_rows_labelled_for_it():
    """Labels filled in independently per head (as a CSV's columns): no row carries all three,
    yet every head learns from its own rows, and a NaN or -1 elsewhere changes nothing."""
    x, labels = _digit_heads()
    rows = np.arange(1200)
    train = {
        "label": np.where(rows % 3 == 0, labels["label"][:1200], -1).astype(np.int32),
        "big": np.where(rows % 3 == 1, labels["big"][:1200], -1).astype(np.int32),
        "value": np.where(rows % 3 == 2, labels["value"][:1200], np.nan).astype("f4"),
    }
    val = {k: v[1200:].copy() for k, v in labels.items()}
    val["big"][::2] = -1  # Scored on the rows labelled for it only.
    val["value"][1::2] = np.nan
    heads = {"label": 10, "big": 2, "value": 0}
    clf, scores = classifier_lib.train_classifier(
        x[:1200], train, x[1200:], val, num_classes=heads, seed=0, num_steps=300, **SMALL
    )
    assert np.isfinite(clf.info["final_train_loss"]), clf.info
    assert scores["label"] >= 0.8 and scores["big"] >= 0.8 and scores["value"] >= 0.7, scores
    kept = val["big"] >= 0
    expected = np.mean(clf.predict(x[1200:][kept], head="big").argmax(-1) == val["big"][kept])
    assert scores["big"] == pytest.approx(expected)
    # A row labelled for no head is dropped; a head labelled nowhere is refused.
    train["label"][:3], train["big"][:3], train["value"][:3] = -1, -1, np.nan
    clf, _ = classifier_lib.train_classifier(
        x[:1200], train, num_classes=heads, num_steps=1, **SMALL
    )
    assert clf.info["num_train"] == 1197
    train["big"][:] = -1
    with pytest.raises(ValueError, match="train_labels\\['big'\\]: no row carries"):
        classifier_lib.train_classifier(x[:1200], train, num_classes=heads, num_steps=1, **SMALL)


def _value_generator(z):
    """A fake G: an 8x8 image whose brightness is the 'thickness' code and whose first row
    shows the digit code (so a judge can read both)."""
    images = jnp.broadcast_to(z["thickness"][:, :, None, None], (len(z["thickness"]), 8, 8, 1))
    return images.at[:, 0, :, 0].set(jax.nn.one_hot(z["digit"], 8))


def test_continuous_sweep_correlates_with_a_judge_that_reads_the_code():
    config = default.get_config()
    config.latents.codes = [
        default.code("digit", "categorical", 8, label="label"),
        default.code("thickness", "continuous", 1, label="thickness"),
    ]
    layout = latents_lib.LatentLayout.from_config(config.latents)
    z, values = metrics.continuous_sweep_latents(jax.random.key(0), layout, "thickness", 5, 3)
    np.testing.assert_allclose(values, np.repeat(np.linspace(-1, 1, 5), 3), atol=1e-6)
    np.testing.assert_allclose(np.asarray(z["thickness"])[:, 0], values, atol=1e-6)
    assert len(set(np.asarray(z["digit"]).tolist())) > 1  # Other codes from the prior.
    reads = lambda images: -3 * np.asarray(images)[:, 4, 4, 0] + 1  # Any linear read-out.
    corr = metrics.evaluate_continuous(
        _value_generator, reads, layout, "thickness", 20, jax.random.key(1)
    )
    assert corr == pytest.approx(-1.0, abs=1e-6)
    blind = lambda images: np.asarray(images)[:, 0, :, 0].argmax(-1).astype(np.float32)
    corr = metrics.evaluate_continuous(
        _value_generator, blind, layout, "thickness", 50, jax.random.key(1)
    )
    assert abs(corr) < 0.2


def test_evaluator_judges_every_supervised_code():
    from conftest import experiment_of, rich_config

    from ssinfogan_jax import train
    from ssinfogan_jax.evaluation import evaluator as evaluator_lib

    config = rich_config()
    config.latents.codes.insert(1, default.code("odd", "categorical", 2, label="odd"))
    config.eval.samples_per_value = 4
    exp = experiment_of(config)
    assert evaluator_lib.judged_labels(exp.layout) == {"label": 10, "odd": 2, "thickness": 0}
    rng = np.random.default_rng(0)
    n = 64
    test_images = rng.uniform(0, 1, (n, 28, 28, 1)).astype(np.float32)
    test_labels = {
        "label": rng.integers(0, 10, n).astype(np.int32),
        "odd": rng.integers(0, 2, n).astype(np.int32),
        "thickness": rng.uniform(-1, 1, n).astype(np.float32),
    }
    clf, _ = classifier_lib.train_classifier(
        test_images,
        test_labels,
        num_classes=evaluator_lib.judged_labels(exp.layout),
        num_steps=2,
        **dict(SMALL, widths=(8,), feature_size=16, batch_size=16),
    )
    evaluator = evaluator_lib.Evaluator(exp, test_images, test_labels, clf)
    result = evaluator.evaluate(train.create_train_state(jax.random.PRNGKey(0), exp))
    for key in (
        "cond_acc_direct/digit",
        "cond_acc_mapped/digit",
        "cond_acc_direct/odd",
        "q_ss_test_acc/odd",
    ):
        assert 0.0 <= result[key] <= 1.0, key
    # Two judged categorical codes: no bare name (it read as "every code"; issue 33).
    assert not {"cond_acc_direct", "cond_acc_mapped", "q_ss_test_acc"} & set(result)
    assert set(result) <= evaluator_lib.possible_metric_names(exp.layout)
    mean = (result["cond_acc_direct/digit"] + result["cond_acc_direct/odd"]) / 2
    assert result["cond_acc_direct_mean"] == pytest.approx(mean)
    for key in ("cond_corr/thickness", "q_ss_test_corr/thickness"):
        assert -1.0 <= result[key] <= 1.0, key
    assert "cond_acc_direct/style" not in result  # A free code is not judged.
    assert np.isfinite(result["frechet_distance"])
    assert result["sample_spread/digit"] > 0  # A random G's samples vary with z.


def test_judged_labels_are_the_supervised_ones_then_the_data_sets_others():
    from ssinfogan_jax.evaluation import evaluator as evaluator_lib

    config = default.get_config()
    config.latents.codes = [
        default.code("rotation", "continuous", 1, label="rotation"),
        default.code("thick", "categorical", 2, label="thick_stroke"),
        default.code("c_us", "continuous", 2),
    ]
    layout = latents_lib.LatentLayout.from_config(config.latents)
    data = {"label": 10, "thick_stroke": 2, "rotation": 0, "neighbours": 2}
    heads = evaluator_lib.judged_labels(layout, data)
    assert list(heads.items()) == [
        ("rotation", 0),
        ("thick_stroke", 2),
        ("label", 10),
        ("neighbours", 2),
    ]
    assert evaluator_lib.judged_labels(layout) == {"rotation": 0, "thick_stroke": 2}
    config.latents.codes = [default.code("c_us", "continuous", 2)]
    free = latents_lib.LatentLayout.from_config(config.latents)
    assert evaluator_lib.judged_labels(free, data) == {}  # Nothing to judge: no classifier.


def test_q_ss_on_test_counts_only_the_examples_labelled_for_each_code():
    from conftest import experiment_of, rich_config

    from ssinfogan_jax import train
    from ssinfogan_jax.evaluation import evaluator as evaluator_lib

    exp = experiment_of(rich_config())
    rng = np.random.default_rng(0)
    n = 64
    images = rng.uniform(0, 1, (n, 28, 28, 1)).astype(np.float32)
    labels = {
        "label": rng.integers(0, 10, n).astype(np.int32),
        "thickness": rng.uniform(-1, 1, n).astype(np.float32),
    }
    labels["label"][::3] = -1  # A folder's test rows may lack a label.
    labels["thickness"][1::4] = np.nan
    evaluator = evaluator_lib.Evaluator(exp, images, labels, None)
    state = train.create_train_state(jax.random.PRNGKey(0), exp)
    result = evaluator.q_ss_on_test(state)

    q = evaluator._q_outputs(state, images)
    known = labels["label"] >= 0
    expected = np.mean(q["digit"][known].argmax(-1) == labels["label"][known])
    assert result["q_ss_test_acc/digit"] == pytest.approx(expected)
    assert result["q_ss_test_acc"] == result["q_ss_test_acc/digit"]
    known = ~np.isnan(labels["thickness"])
    expected = np.corrcoef(q["thickness"][known, 0], labels["thickness"][known])[0, 1]
    assert result["q_ss_test_corr/thickness"] == pytest.approx(expected, abs=1e-5)
    with pytest.raises(ValueError, match="is_labeled"):
        metrics.label_accuracy(np.zeros(3, int), np.array([0, -1, 2]), 10)


@pytest.mark.parametrize(
    "config_name, max_shift, expected, cache_suffix",
    [
        # Categorical labels only: shifted.
        ("mnist", -1.0, dict(max_shift=2.0, batch_size=128), "_steps2000_seed0"),
        ("digits", -1.0, dict(max_shift=2.0, batch_size=32), "_steps300_seed0_batch32"),
        (
            "digit_scenes",
            -1.0,
            dict(max_shift=0.0, max_rotation=0.0, max_scale=0.0),
            f"_steps3000_seed0_v{digit_scenes.VERSION}",  # Rendered here: its version's judge.
        ),
        (
            "digit_scenes",
            2.0,
            dict(max_shift=2.0, max_rotation=0.0, max_scale=0.0),
            f"_steps3000_seed0_v{digit_scenes.VERSION}_shift2",
        ),
    ],
)
def test_judge_settings_and_cache_key_follow_the_config(
    config_name, max_shift, expected, cache_suffix, monkeypatch, tmp_path
):
    """Continuous labels turn rotation and scaling off (and the shift, unless it is set); a
    set shift, a batch size other than 128 or a version of a set rendered here makes a judge
    of its own in the cache."""
    import collections
    import importlib

    from ssinfogan_jax import evaluation, experiment

    config = importlib.import_module(f"configs.{config_name}").get_config()
    config.eval.judge_max_shift = max_shift
    config.eval.judge_dir = str(tmp_path)
    config.eval.judge_ensemble = 1  # One judge's settings (digit_scenes judges by 3).
    exp = experiment.from_config(config, check=False)
    calls = []

    class Saved:
        def __init__(self):
            self.info = {}

        def save(self, path):
            calls[-1]["path"] = path

    def train(*args, **kwargs):
        calls.append(kwargs)
        return Saved(), None

    monkeypatch.setattr(evaluation.classifier, "train_classifier", train)
    labels = collections.defaultdict(lambda: np.zeros(4, np.int32))  # Every label it asks for.
    images = np.zeros((4, *exp.data.image_shape), np.float32)
    evaluation.judge_for(exp, (images, labels), (images, labels))
    (kwargs,) = calls
    assert {k: kwargs.get(k) for k in expected} == expected
    for name in {"max_rotation", "max_scale"} - set(expected):
        assert name not in kwargs  # train_classifier's defaults: rotated and scaled.
    assert kwargs["path"].endswith(cache_suffix)


def test_a_set_rebuilt_from_other_files_gets_a_judge_of_its_own(tmp_path, caplog):
    """digit_scenes built from one raw folder, then rebuilt in the same data dir from another:
    the same name and version, other images. The second run trains a judge of its own (the old
    one is kept for the old data); rebuilt from the first folder again, the first judge is
    used, also where it was cached before judges recorded their data (issue 37 defect 9)."""
    import json
    import shutil

    from test_synthetic import procedural_glyphs, write_idx

    from configs import digit_scenes as digit_scenes_config
    from ssinfogan_jax import evaluation, experiment
    from ssinfogan_jax.data import builders

    raws = []
    for k, seed in enumerate((1, 5)):
        raw = tmp_path / f"raw{k}"
        raw.mkdir()
        write_idx(raw, "train", *procedural_glyphs(20, seed))
        write_idx(raw, "t10k", *procedural_glyphs(12, seed + 1))
        raws.append(str(raw))
    data_dir = str(tmp_path / "tfds")
    config = digit_scenes_config.get_config()
    config.data.data_dir = data_dir
    config.eval.judge_dir = str(tmp_path / "judges")
    config.eval.judge_steps = 2
    config.eval.judge_ensemble = 1  # One judge per build is the point here.

    def judge_of(raw):
        shutil.rmtree(os.path.join(data_dir, "digit_scenes"), ignore_errors=True)
        builders.prepare("digit_scenes", raw, data_dir)
        exp = experiment.from_config(config, check=False)
        judge = evaluation.judge_for(exp)
        return exp, judge

    exp, first = judge_of(raws[0])
    heads = evaluation.evaluator.judged_labels(exp.layout, exp.data.labels)
    base = evaluation.judge.cache_path(exp, heads)
    assert os.listdir(config.eval.judge_dir) == [os.path.basename(base)]
    _, second = judge_of(raws[1])
    judges = sorted(os.listdir(config.eval.judge_dir))
    assert len(judges) == 2 and judges[0] == os.path.basename(base), judges
    assert judges[1].startswith(os.path.basename(base) + "_data")
    assert second.info["data_fingerprint"] != first.info["data_fingerprint"]
    assert "trained on other data under the same name" in caplog.text
    # Back to the first folder: its judge, from the cache; also without a recorded fingerprint.
    info_file = os.path.join(base, evaluation.classifier.INFO_FILE)
    record = json.loads(open(info_file).read())
    del record["info"]["data_fingerprint"]
    with open(info_file, "w") as f:
        json.dump(record, f)
    _, again = judge_of(raws[0])
    assert again.info.get("data_fingerprint") is None and again.spec == first.spec
    assert len(os.listdir(config.eval.judge_dir)) == 2


# --- the ensemble judge (config.eval.judge_ensemble) -------------------------------------------


@pytest.fixture(scope="module")
def scenes_judge_inputs(tmp_path_factory):
    """digit_scenes `:celeba`'s judge config (6 heads: 5 categorical, rotation regressed) with
    2 training steps of batch 8, a fresh cache dir, and small random splits carrying every
    label (-1 / NaN in a few rows)."""
    from configs import digit_scenes as digit_scenes_config

    config = digit_scenes_config.get_config("celeba")
    config.eval.judge_dir = str(tmp_path_factory.mktemp("judges"))
    config.eval.judge_steps = 2
    config.eval.judge_batch_size = 8
    rng = np.random.default_rng(3)

    def split(n):
        images = rng.uniform(-1, 1, (n, *digit_scenes.IMAGE_SHAPE)).astype(np.float32)
        labels = {"label": rng.integers(0, 10, n).astype(np.int64)}
        labels |= {
            a: rng.integers(-1, 2, n).astype(np.int64) for a in digit_scenes_config.ATTRIBUTES
        }
        labels["rotation"] = rng.uniform(-30, 30, n).astype(np.float32)
        labels["rotation"][:2] = np.nan
        return images, labels

    return config, split(24), split(16)


def _scenes_judge(config, ensemble, test_split, train_split):
    from ssinfogan_jax import evaluation, experiment

    config = config.copy_and_resolve_references()
    config.eval.judge_ensemble = ensemble
    exp = experiment.from_config(config, check=False)
    heads = evaluation.evaluator.judged_labels(exp.layout, exp.data.labels)
    return exp, heads, evaluation.judge_for(exp, test_split, train_split)


def test_an_ensemble_of_one_is_the_single_judge_bit_for_bit(scenes_judge_inputs):
    """judge_ensemble = 1 (the default but for digit_scenes): the single judge as before,
    trained with the options judge_for has always given it, under its key of before."""
    from ssinfogan_jax import default_config, evaluation

    config, test_split, train_split = scenes_judge_inputs
    assert default_config.get_config().eval.judge_ensemble == 1
    exp, heads, judge = _scenes_judge(config, 1, test_split, train_split)
    assert type(judge) is classifier_lib.Classifier
    path = evaluation.judge.cache_path(exp, heads)
    assert path.endswith(f"_steps2_seed0_v{digit_scenes.VERSION}_batch8_shift2")
    assert os.listdir(config.eval.judge_dir) == [os.path.basename(path)]
    images, labels = test_split
    by_hand, _ = classifier_lib.train_classifier(
        images,
        {k: labels[k] for k in heads},
        num_classes=heads,
        seed=0,
        num_steps=2,
        batch_size=8,
        max_shift=2.0,
        max_rotation=0.0,
        max_scale=0.0,
    )
    chex.assert_trees_all_equal(judge.variables, by_hand.variables)
    fakes = train_split[0]
    chex.assert_trees_all_equal(judge.predict_heads(fakes), by_hand.predict_heads(fakes))
    np.testing.assert_array_equal(judge.features(fakes), by_hand.features(fakes))


def test_an_ensemble_of_three_means_its_members_probabilities(scenes_judge_inputs):
    """judge_ensemble = 3: judges of seeds 0, 1, 2, each cached under its own key, seed 0's
    the single judge's entry (reused, not retrained); softmax of each categorical head's output
    is the mean of the members' softmax, the rotation head the members' mean, the features
    the first member's."""
    from ssinfogan_jax import evaluation

    config, test_split, train_split = scenes_judge_inputs
    exp, heads, single = _scenes_judge(config, 1, test_split, train_split)  # Cached (or not).
    before = set(os.listdir(config.eval.judge_dir))
    _, _, judge = _scenes_judge(config, 3, test_split, train_split)
    assert isinstance(judge, classifier_lib.Ensemble) and len(judge.members) == 3
    paths = [evaluation.judge.cache_path(exp, heads, seed=i) for i in range(3)]
    assert [os.path.basename(p).split("_seed")[1][:1] for p in paths] == ["0", "1", "2"]
    assert sorted(os.listdir(config.eval.judge_dir)) == sorted(map(os.path.basename, paths))
    assert before == {os.path.basename(paths[0])}
    chex.assert_trees_all_equal(judge.members[0].variables, single.variables)
    members = [classifier_lib.load(p) for p in paths]
    assert [m.info["seed"] for m in members] == [0, 1, 2]

    fakes = train_split[0]
    outputs = judge.predict_heads(fakes)
    by_member = [m.predict_heads(fakes) for m in members]
    assert set(outputs) == set(heads)
    for name, classes in heads.items():
        each = np.stack([np.asarray(o[name], np.float64) for o in by_member])
        if classes:
            probabilities = np.exp(each - each.max(-1, keepdims=True))
            probabilities /= probabilities.sum(-1, keepdims=True)
            ensemble = np.exp(outputs[name].astype(np.float64))
            np.testing.assert_allclose(ensemble, probabilities.mean(0), rtol=1e-5, atol=1e-7)
            assert not np.allclose(probabilities[0], probabilities[1])  # Members differ.
            np.testing.assert_array_equal(
                judge.predict_classes(fakes, head=name), probabilities.mean(0).argmax(-1)
            )
        else:
            np.testing.assert_allclose(outputs[name], each.mean(0), rtol=1e-5, atol=1e-5)
            assert not np.allclose(each[0], each[1])
    np.testing.assert_array_equal(judge.features(fakes), members[0].features(fakes))
