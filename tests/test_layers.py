"""Each fast layer against the plain Flax layer: parameters, values and gradients."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssinfogan_jax import layers

K4S2 = dict(kernel_size=(4, 4), strides=(2, 2))
CASES = {
    # name: (plain Flax layer, fast layer, input shape [B, H, W, C])
    "conv 1->64 28->14": (
        nn.Conv(64, padding=((1, 1), (1, 1)), **K4S2),
        layers.Conv(64),
        (3, 28, 28, 1),
    ),
    "conv 64->128 14->7": (
        nn.Conv(128, padding=((1, 1), (1, 1)), **K4S2),
        layers.Conv(128),
        (3, 14, 14, 64),
    ),
    "conv 128->256 8->4": (
        nn.Conv(256, padding=((1, 1), (1, 1)), **K4S2),
        layers.Conv(256),
        (2, 8, 8, 128),
    ),
    "conv 3->8 32->16": (
        nn.Conv(8, padding=((1, 1), (1, 1)), **K4S2),
        layers.Conv(8),
        (2, 32, 32, 3),
    ),
    "conv_t 128->64 7->14": (
        nn.ConvTranspose(64, padding=((2, 2), (2, 2)), **K4S2),
        layers.ConvTranspose(64),
        (3, 7, 7, 128),
    ),
    "conv_t 64->1 14->28": (
        nn.ConvTranspose(1, padding=((2, 2), (2, 2)), **K4S2),
        layers.ConvTranspose(1),
        (3, 14, 14, 64),
    ),
    "conv_t 448->256 2->4": (
        nn.ConvTranspose(256, padding=((2, 2), (2, 2)), **K4S2),
        layers.ConvTranspose(256),
        (2, 2, 2, 448),
    ),
    "dense 6272->1024": (nn.Dense(1024), layers.Dense(1024), (3, 6272)),
}


def _assert_close(actual, expected, rtol=1e-5):
    """Equal up to float32 summation-order error, relative to the largest entry."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    scale = np.abs(expected).max() + 1e-12
    np.testing.assert_allclose(actual / scale, expected / scale, rtol=0, atol=rtol)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("name", list(CASES))
def test_fast_layer_matches_flax(name, dtype):
    """float32: the Flax layer's values and gradients to summation order; bfloat16 (matmul
    operands rounded to 8 bits of mantissa, float32 accumulation): to bfloat16 precision."""
    plain, fast, shape = CASES[name]
    fast = fast.clone(dtype=dtype)
    tolerance = 1e-5 if dtype == "float32" else 2e-2
    x = jax.random.normal(jax.random.PRNGKey(0), shape)
    params = plain.init(jax.random.PRNGKey(1), x)
    # Same names, shapes and initial values (same initialisers, same order).
    fast_params = fast.init(jax.random.PRNGKey(1), x)
    assert jax.tree.structure(fast_params) == jax.tree.structure(params)
    jax.tree.map(np.testing.assert_array_equal, fast_params, params)
    # Random, non-zero biases so that their gradients and values are exercised.
    params = jax.tree.map(
        lambda p: p + 0.1 * jax.random.normal(jax.random.PRNGKey(2), p.shape), params
    )

    y_plain, y_fast = plain.apply(params, x), fast.apply(params, x)
    assert y_fast.dtype == jnp.float32
    _assert_close(y_fast, y_plain, tolerance)

    cotangent = jax.random.normal(jax.random.PRNGKey(3), y_plain.shape)

    def loss(module):
        return lambda p, x: jnp.vdot(module.apply(p, x), cotangent)

    g_plain = jax.grad(loss(plain), argnums=(0, 1))(params, x)
    g_fast = jax.jit(jax.grad(loss(fast), argnums=(0, 1)))(params, x)
    assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(g_fast))
    jax.tree.map(lambda a, e: _assert_close(a, e, tolerance), g_fast, g_plain)


def test_unknown_dtype_is_a_clear_error():
    with pytest.raises(ValueError, match=r"model\.dtype"):
        layers.Dense(4, dtype="float16").init(jax.random.PRNGKey(0), jnp.ones((1, 3)))


def test_bfloat16_matmul_gradients_run_in_bfloat16():
    """Both gradient matmuls take bfloat16 operands and return float32 (the fast path)."""
    a, b = jnp.ones((8, 4)), jnp.ones((4, 2))
    text = jax.jit(jax.value_and_grad(lambda a, b: layers.matmul_bf16(a, b).sum(), (0, 1))).lower(
        a, b
    )
    dots = [line for line in text.as_text().splitlines() if "dot_general" in line]
    assert len(dots) == 3
    assert all(
        "bf16>, tensor<" in d and "-> tensor<" in d and "xf32>" in d.split("->")[1] for d in dots
    )


@pytest.mark.parametrize("shape", [(2, 6, 6, 3), (1, 8, 4, 2)])
def test_col2im_is_the_adjoint_of_im2col(shape):
    x = jax.random.normal(jax.random.PRNGKey(0), shape)
    patches = layers.im2col_k4s2(x)
    assert patches.shape == (shape[0], shape[1] // 2 - 1, shape[2] // 2 - 1, 4, 4, shape[3])
    p = jax.random.normal(jax.random.PRNGKey(1), patches.shape)
    np.testing.assert_allclose(jnp.vdot(patches, p), jnp.vdot(x, layers.col2im_k4s2(p)), rtol=1e-5)
    # patches[b, i, j, kh, kw] = x[b, 2 i + kh, 2 j + kw].
    np.testing.assert_array_equal(patches[:, 1, 0, 3, 2], x[:, 5, 2])


@pytest.mark.parametrize("name", [n for n in CASES if not n.startswith("dense")])
def test_flax_precision_gives_float32_outputs_near_float32(name):
    """Flax's own layer (conv_impl 'flax') in bfloat16: float32 parameters and outputs, values
    and gradients within bfloat16 rounding of float32."""
    plain, _, shape = CASES[name]
    mixed = plain.clone(**layers.flax_precision("bfloat16"))
    assert layers.flax_precision("float32") == {}
    x = jax.random.normal(jax.random.PRNGKey(0), shape)
    params = plain.init(jax.random.PRNGKey(1), x)
    jax.tree.map(np.testing.assert_array_equal, mixed.init(jax.random.PRNGKey(1), x), params)
    y_plain, y_mixed = plain.apply(params, x), mixed.apply(params, x)
    assert y_mixed.dtype == jnp.float32
    _assert_close(y_mixed, y_plain, 2e-2)
    grad = lambda m: jax.grad(lambda p: jnp.sum(m.apply(p, x) ** 2))(params)
    g_plain, g_mixed = grad(plain), grad(mixed)
    assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(g_mixed))
    jax.tree.map(lambda a, e: _assert_close(a, e, 3e-2), g_mixed, g_plain)


def test_conv_impl_auto_is_cpu_fast_on_cpu_only():
    assert layers.resolve_conv_impl("auto", backend="cpu") == "cpu_fast"
    assert layers.resolve_conv_impl("auto", backend="gpu") == "flax"
    assert layers.resolve_conv_impl("auto", backend="tpu") == "flax"
    assert layers.resolve_conv_impl("flax", backend="cpu") == "flax"
    assert layers.resolve_conv_impl("cpu_fast", backend="gpu") == "cpu_fast"
    with pytest.raises(ValueError, match=r"model\.conv_impl"):
        layers.resolve_conv_impl("cudnn")
