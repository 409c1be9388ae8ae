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
}


def _assert_close(actual, expected, rtol=1e-5):
    """Equal up to float32 summation-order error, relative to the largest entry."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    scale = np.abs(expected).max() + 1e-12
    np.testing.assert_allclose(actual / scale, expected / scale, rtol=0, atol=rtol)


@pytest.mark.parametrize("name", list(CASES))
def test_fast_layer_matches_flax(name):
    plain, fast, shape = CASES[name]
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
    _assert_close(y_fast, y_plain)

    cotangent = jax.random.normal(jax.random.PRNGKey(3), y_plain.shape)

    def loss(module):
        return lambda p, x: jnp.vdot(module.apply(p, x), cotangent)

    g_plain = jax.grad(loss(plain), argnums=(0, 1))(params, x)
    g_fast = jax.jit(jax.grad(loss(fast), argnums=(0, 1)))(params, x)
    jax.tree.map(_assert_close, g_fast, g_plain)


@pytest.mark.parametrize("shape", [(2, 6, 6, 3), (1, 8, 4, 2)])
def test_col2im_is_the_adjoint_of_im2col(shape):
    x = jax.random.normal(jax.random.PRNGKey(0), shape)
    patches = layers.im2col_k4s2(x)
    assert patches.shape == (shape[0], shape[1] // 2 - 1, shape[2] // 2 - 1, 4, 4, shape[3])
    p = jax.random.normal(jax.random.PRNGKey(1), patches.shape)
    np.testing.assert_allclose(jnp.vdot(patches, p), jnp.vdot(x, layers.col2im_k4s2(p)), rtol=1e-5)
    # patches[b, i, j, kh, kw] = x[b, 2 i + kh, 2 j + kw].
    np.testing.assert_array_equal(patches[:, 1, 0, 3, 2], x[:, 5, 2])
