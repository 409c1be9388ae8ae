"""The latent layout: priors (statistically), G's input order, traversals, overrides."""

import jax
import ml_collections
import numpy as np
import pytest
from scipy import stats

from ssinfogan_jax import default_config as default
from ssinfogan_jax import latents

N = 100_000  # Samples per distribution test.
P_MIN = 1e-3  # A correct prior passes with probability 0.999 (fixed seeds: deterministic).


def layout_from(codes, noise_size=62, noise_distribution="normal", continuous_range=1.0):
    config = ml_collections.ConfigDict(
        dict(
            codes=codes,
            noise_size=noise_size,
            noise_distribution=noise_distribution,
            continuous_range=continuous_range,
        )
    )
    return latents.LatentLayout.from_config(config)


def reference_layout():
    return latents.LatentLayout.from_config(default.get_config().latents)


def test_reference_mnist_layout():
    layout = reference_layout()
    assert layout.input_size == 74  # 10 + 2 + 62
    assert [(c.name, c.kind, c.size, c.label) for c in layout.codes] == [
        ("digit", "categorical", 10, "label"),
        ("c_us", "continuous", 2, ""),
    ]
    assert [c.name for c in layout.supervised_codes] == ["digit"]
    assert [c.name for c in layout.unsupervised_codes] == ["c_us"]
    assert layout.noise_distribution == "normal"


@pytest.mark.parametrize(
    "codes, kwargs, message",
    [
        ([default.code("a", "categorical", 3), default.code("a", "continuous", 1)], {}, "unique"),
        ([default.code("noise", "continuous", 1)], {}, "unique"),
        ([default.code("a", "gaussian", 3)], {}, "kind"),
        ([default.code("a", "categorical", 1)], {}, "too small"),
        ([default.code("a", "continuous", 0)], {}, "too small"),
        ([], {"noise_distribution": "laplace"}, "noise_distribution"),
        ([], {"noise_size": -1}, "negative"),
    ],
)
def test_bad_layouts_are_rejected(codes, kwargs, message):
    with pytest.raises(ValueError, match=message):
        layout_from(codes, **kwargs)


def test_categorical_code_is_uniform():
    layout = layout_from([default.code("c", "categorical", 10)], noise_size=1)
    values = np.asarray(latents.sample(jax.random.PRNGKey(0), layout, N)["c"])
    assert values.dtype == np.int32
    counts = np.bincount(values, minlength=10)
    assert counts.shape == (10,)  # No value outside 0..9.
    assert stats.chisquare(counts).pvalue > P_MIN
    # The test has the power to see a mildly skewed categorical (class 0 at 11% instead of 10%).
    skewed = np.random.default_rng(0).choice(10, N, p=[0.11] + [0.89 / 9] * 9)
    assert stats.chisquare(np.bincount(skewed, minlength=10)).pvalue < 1e-6


def test_continuous_code_is_uniform_on_minus_one_one():
    layout = layout_from([default.code("c", "continuous", 3)], noise_size=1)
    values = np.asarray(latents.sample(jax.random.PRNGKey(1), layout, N)["c"])
    assert values.shape == (N, 3) and values.dtype == np.float32
    assert values.min() >= -1.0 and values.max() <= 1.0
    for d in range(3):
        assert stats.kstest(values[:, d], stats.uniform(-1, 2).cdf).pvalue > P_MIN
        # A normal sample clipped to the range would fail the same test.
        wrong = np.clip(np.random.default_rng(d).normal(0, 0.6, N), -1, 1)
        assert stats.kstest(wrong, stats.uniform(-1, 2).cdf).pvalue < 1e-6
    # The dimensions are independent draws.
    assert abs(np.corrcoef(values.T)[0, 1]) < 0.02


def test_continuous_range_is_configurable():
    layout = layout_from([default.code("c", "continuous", 1)], continuous_range=2.0)
    values = np.asarray(latents.sample(jax.random.PRNGKey(2), layout, N)["c"])[:, 0]
    assert stats.kstest(values, stats.uniform(-2, 4).cdf).pvalue > P_MIN
    assert stats.kstest(values, stats.uniform(-1, 2).cdf).pvalue < 1e-6


def test_noise_is_standard_normal_by_default():
    layout = layout_from([], noise_size=62)
    noise = np.asarray(latents.sample(jax.random.PRNGKey(3), layout, N // 10)[latents.NOISE])
    assert noise.shape == (N // 10, 62)
    flat = noise.reshape(-1)
    assert stats.kstest(flat, "norm").pvalue > P_MIN
    assert stats.kstest(flat, stats.uniform(-1, 2).cdf).pvalue < 1e-6
    # Per-dimension moments: mean 0, std 1 (standard errors ~0.01 with 10,000 samples).
    np.testing.assert_allclose(noise.mean(0), 0.0, atol=0.05)
    np.testing.assert_allclose(noise.std(0), 1.0, atol=0.05)


def test_uniform_noise_is_uniform_on_minus_one_one():
    layout = layout_from([], noise_size=62, noise_distribution="uniform")
    noise = np.asarray(latents.sample(jax.random.PRNGKey(4), layout, N // 10)[latents.NOISE])
    flat = noise.reshape(-1)
    assert flat.min() >= -1.0 and flat.max() <= 1.0
    assert stats.kstest(flat, stats.uniform(-1, 2).cdf).pvalue > P_MIN
    assert stats.kstest(flat, "norm").pvalue < 1e-6


def test_codes_and_noise_use_independent_keys():
    layout = layout_from(
        [default.code("a", "continuous", 4), default.code("b", "continuous", 4)],
        noise_size=4,
        noise_distribution="uniform",
    )
    draw = latents.sample(jax.random.PRNGKey(5), layout, 1000)
    a, b, z = (np.asarray(draw[k]) for k in ("a", "b", latents.NOISE))
    assert not np.allclose(a, b) and not np.allclose(a, z)
    assert np.abs(np.corrcoef(a.T, b.T)[:4, 4:]).max() < 0.15


def test_sampling_is_a_function_of_the_key():
    layout = reference_layout()
    first = latents.sample(jax.random.PRNGKey(6), layout, 16)
    again = latents.sample(jax.random.PRNGKey(6), layout, 16)
    other = latents.sample(jax.random.PRNGKey(7), layout, 16)
    for k in first:
        np.testing.assert_array_equal(first[k], again[k])
        assert not np.array_equal(first[k], other[k])


def test_fixed_overrides_replace_only_the_given_codes():
    layout = reference_layout()
    key = jax.random.PRNGKey(8)
    free = latents.sample(key, layout, 6)
    fixed_noise = np.arange(6 * 62, dtype=np.float32).reshape(6, 62)
    draw = latents.sample(key, layout, 6, fixed={"digit": 7, latents.NOISE: fixed_noise})
    np.testing.assert_array_equal(draw["digit"], np.full(6, 7))
    assert draw["digit"].dtype == np.int32
    np.testing.assert_array_equal(draw[latents.NOISE], fixed_noise)
    np.testing.assert_array_equal(draw["c_us"], free["c_us"])  # Not overridden: as sampled.
    row = latents.sample(key, layout, 6, fixed={"c_us": np.array([0.5, -0.25])})
    np.testing.assert_array_equal(row["c_us"], np.tile([0.5, -0.25], (6, 1)))


def test_generator_input_order_and_one_hot():
    layout = layout_from(
        [
            default.code("digit", "categorical", 4, label="label"),
            default.code("c_us", "continuous", 2),
            default.code("style", "categorical", 3),
        ],
        noise_size=5,
    )
    assert layout.input_size == 4 + 2 + 3 + 5
    values = {
        "digit": np.array([2, 0], np.int32),
        "c_us": np.array([[0.1, -0.2], [0.3, 0.4]], np.float32),
        "style": np.array([1, 2], np.int32),
        latents.NOISE: np.array([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]], np.float32),
    }
    expected = np.array(
        [
            [0, 0, 1, 0, 0.1, -0.2, 0, 1, 0, 1, 2, 3, 4, 5],
            [1, 0, 0, 0, 0.3, 0.4, 0, 0, 1, 6, 7, 8, 9, 10],
        ],
        np.float32,
    )
    np.testing.assert_array_equal(latents.generator_input(layout, values), expected)


def test_split_outputs():
    codes = (latents.Code("a", "categorical", 3), latents.Code("b", "continuous", 2))
    out = np.arange(10).reshape(2, 5)
    parts = latents.split_outputs(codes, out)
    np.testing.assert_array_equal(parts["a"], [[0, 1, 2], [5, 6, 7]])
    np.testing.assert_array_equal(parts["b"], [[3, 4], [8, 9]])


def test_categorical_traversal():
    layout = reference_layout()
    draw, values = latents.traversal(jax.random.PRNGKey(9), layout, "digit", num_rows=3)
    np.testing.assert_array_equal(values, np.arange(10))
    assert draw["digit"].shape == (30,)
    np.testing.assert_array_equal(np.asarray(draw["digit"]).reshape(3, 10), np.tile(values, (3, 1)))
    for k in ("c_us", latents.NOISE):
        grid = np.asarray(draw[k]).reshape(3, 10, -1)
        np.testing.assert_array_equal(grid, np.repeat(grid[:, :1], 10, axis=1))  # Fixed per row.
        assert not np.array_equal(grid[0, 0], grid[1, 0])  # Differs between rows.


def test_continuous_traversal_sweeps_one_dimension():
    layout = reference_layout()
    draw, values = latents.traversal(jax.random.PRNGKey(10), layout, "c_us", num_rows=4, dim=1)
    np.testing.assert_allclose(values, np.linspace(-2, 2, 12))
    c = np.asarray(draw["c_us"]).reshape(4, 12, 2)
    np.testing.assert_array_equal(c[:, :, 1], np.tile(values, (4, 1)))
    np.testing.assert_array_equal(c[:, :, 0], np.repeat(c[:, :1, 0], 12, axis=1))
    assert len(np.unique(c[:, 0, 0])) == 4
    for k in ("digit", latents.NOISE):
        grid = np.asarray(draw[k]).reshape(4, 12, -1)
        np.testing.assert_array_equal(grid, np.repeat(grid[:, :1], 12, axis=1))
    # The traversal is a valid G input.
    assert latents.generator_input(layout, draw).shape == (48, 74)
