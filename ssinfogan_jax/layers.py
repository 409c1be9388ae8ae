"""Fast drop-in layers for the k4 s2 convolutions of both architectures.

XLA:CPU runs large float32 matrix multiplies near the machine's peak, its convolutions
well below it, and the weight gradient of its transposed convolution (a convolution with a
dilated input) at a few GFLOP/s. The layers here compute exactly the same function as
`flax.linen.Conv` / `flax.linen.ConvTranspose` with kernel 4, stride 2 and the reference's
padding (Torch p = 1), each the fastest way measured here (README "Benchmarks"):
- `ConvTranspose`: one matmul + overlap-add, so its weight gradient is a matmul too.
- `Conv` with at most 4 input channels (the first layer): patches + one matmul.
- `Conv` otherwise: XLA's convolution and weight gradient, but the input gradient (a
  convolution with a dilated input, 160 GFLOP/s) computed as the gradient of the equivalent
  stride-1 convolution on a space-to-depth view (2x faster), through a custom VJP.

Each class has the name, the parameters (`kernel` [4, 4, in, out] and `bias` [out]), the
initialisers and the arithmetic of the Flax layer it replaces, so parameter trees, counts and
checkpoints are unchanged; tests/test_layers.py checks values and gradients against Flax.

Stride-2 index algebra used below (Torch convention, kernel index k in 0..3, padding 1):
  conv:            y[o]  = sum_k x_pad[2 o + k] w[k]
  transposed conv: y[o] += x[i] w'[k] at o = 2 i + k - 1, w' the Flax kernel flipped.
Writing k = 2 a + p (a, p in {0, 1}) turns both into shifts by a on the half-resolution grid
of a space-to-depth view with parity p, so no strided gather or scatter is needed.

Mixed precision (`dtype='bfloat16'`): every matmul takes bfloat16 operands and accumulates
and returns float32 (`matmul`), with bfloat16 operands in its gradients too; parameters,
bias, batch norm and activation functions stay float32. On XLA:CPU only the dot with a
float32 result reaches the bfloat16 matrix units (AMX/AVX512-BF16: 300-1250 GFLOP/s here
against 75-280 for float32); a bfloat16-result dot or a bfloat16 convolution runs at
40-80. So in bfloat16 every convolution, the deeper ones included, is patches + matmul.

All of this is tuned for XLA:CPU. On GPU and TPU, XLA's own convolutions are what the
compiler is built for, so `conv_impl='auto'` (models.create_models, `config.model.conv_impl`)
uses Flax's `nn.Conv` / `nn.ConvTranspose` there, with `flax_precision(dtype)` for bfloat16.
The two give the same parameter tree (names, shapes, initial values), so a checkpoint moves
between them.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

KERNEL = 4
DTYPES = ("float32", "bfloat16")
# How the k4 s2 convolutions are computed: 'cpu_fast' (this module's layers), 'flax' (Flax's
# own `nn.Conv` / `nn.ConvTranspose`, what XLA's GPU and TPU compilers are built for) or
# 'auto' ('cpu_fast' on the CPU backend, 'flax' elsewhere). All give the same parameters.
CONV_IMPLS = ("auto", "flax", "cpu_fast")
PATCHES_MAX_CHANNELS = 4  # Conv inputs with at most this many channels use patches + matmul.
# XLA:CPU's weight gradient of a convolution slows down more than linearly with the batch (D's
# 64->128: 4.8 ms at 32 examples, 32 ms at 128, 92 ms at 256), so it is summed over chunks.
WEIGHT_GRAD_CHUNK = 32
_NHWC = ("NHWC", "HWIO", "NHWC")


def check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise ValueError(f"model.dtype: {dtype!r} is not one of {DTYPES}")
    return dtype


def check_conv_impl(conv_impl: str) -> str:
    if conv_impl not in CONV_IMPLS:
        raise ValueError(f"model.conv_impl: {conv_impl!r} is not one of {CONV_IMPLS}")
    return conv_impl


def resolve_conv_impl(conv_impl: str, backend: str | None = None) -> str:
    """'flax' or 'cpu_fast': 'auto' picks 'cpu_fast' on the CPU backend (`backend`, default
    JAX's default backend) and 'flax' on any other."""
    if check_conv_impl(conv_impl) != "auto":
        return conv_impl
    return "cpu_fast" if (backend or jax.default_backend()) == "cpu" else "flax"


def _promote_operands(inputs, kernel, bias=None, *, dtype=None):
    """A Flax `promote_dtype` for mixed precision: `inputs` and `kernel` in `dtype` (the
    convolution's operands), `bias` left float32, so that the layer's output is float32."""
    cast = lambda x: None if x is None else jnp.asarray(x, dtype or jnp.float32)
    return cast(inputs), cast(kernel), None if bias is None else jnp.asarray(bias, jnp.float32)


def flax_precision(dtype: str) -> dict:
    """Keyword arguments that make a Flax `nn.Conv` / `nn.ConvTranspose` compute in `dtype` the
    way this module's layers do: bfloat16 operands; float32 parameters and output."""
    if check_dtype(dtype) == "float32":
        return {}
    return {"dtype": jnp.bfloat16, "promote_dtype": _promote_operands}


def _dot_f32(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.matmul(a, b, preferred_element_type=jnp.float32)


@jax.custom_vjp
def matmul_bf16(a: jax.Array, b: jax.Array) -> jax.Array:
    """`a @ b` ([M, K] x [K, N]) with bfloat16 operands, accumulated and returned in float32.

    Both gradients are bfloat16 x bfloat16 -> float32 matmuls as well (JAX's own transpose
    would multiply the float32 cotangent with a bfloat16 operand, off the fast path), and
    come back in the dtypes of `a` and `b`.
    """
    return _dot_f32(a.astype(jnp.bfloat16), b.astype(jnp.bfloat16))


def _matmul_bf16_fwd(a, b):
    a16, b16 = a.astype(jnp.bfloat16), b.astype(jnp.bfloat16)
    return _dot_f32(a16, b16), (a16, b16, jnp.zeros((), a.dtype), jnp.zeros((), b.dtype))


def _matmul_bf16_bwd(residuals, dy):
    a16, b16, a_like, b_like = residuals
    dy16 = dy.astype(jnp.bfloat16)
    da = _dot_f32(dy16, b16.T).astype(a_like.dtype)
    db = _dot_f32(a16.T, dy16).astype(b_like.dtype)
    return da, db


matmul_bf16.defvjp(_matmul_bf16_fwd, _matmul_bf16_bwd)


def matmul(a: jax.Array, b: jax.Array, dtype: str = "float32") -> jax.Array:
    """[M, K] x [K, N] -> [M, N] float32: plain `a @ b` in float32, `matmul_bf16` in bfloat16."""
    return a @ b if dtype == "float32" else matmul_bf16(a, b)


class Dense(nn.Module):
    """`flax.linen.Dense(features)` (same name, parameters, values in float32), whose matmul
    runs in `dtype` (see `matmul`)."""

    features: int
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
    bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()
    dtype: str = "float32"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        check_dtype(self.dtype)
        kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", self.bias_init, (self.features,), jnp.float32)
        if self.dtype == "float32":
            y = jax.lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))
        else:
            y = matmul_bf16(x.reshape(-1, x.shape[-1]), kernel)
            y = y.reshape(*x.shape[:-1], self.features)
        return y + bias


def im2col_k4s2(x_pad: jax.Array) -> jax.Array:
    """Patches of a padded image: [B, 2h+2, 2w+2, C] -> [B, h, w, 4, 4, C].

    `patches[b, i, j, kh, kw, c] = x_pad[b, 2 i + kh, 2 j + kw, c]`.
    """
    b, hp, wp, c = x_pad.shape
    h, w = hp // 2 - 1, wp // 2 - 1
    s = x_pad.reshape(b, h + 1, 2, w + 1, 2, c)  # [b, n, ph, m, pw, c]: row 2 n + ph.
    rows = jnp.stack([s[:, a : a + h] for a in (0, 1)], axis=3)  # [b, h, ph, ah, m, pw, c]
    cols = jnp.stack([rows[:, :, :, :, a : a + w] for a in (0, 1)], axis=6)
    # cols: [b, h, ph, ah, w, pw, aw, c]; kernel row kh = 2 ah + ph, column kw = 2 aw + pw.
    return cols.transpose(0, 1, 4, 3, 2, 6, 5, 7).reshape(b, h, w, KERNEL, KERNEL, c)


def col2im_k4s2(patches: jax.Array) -> jax.Array:
    """Overlap-add, the adjoint of `im2col_k4s2`: [B, h, w, 4, 4, C] -> [B, 2h+2, 2w+2, C].

    `out[b, 2 i + kh, 2 j + kw, c] += patches[b, i, j, kh, kw, c]`.
    """
    b, h, w, _, _, c = patches.shape
    p = patches.reshape(b, h, w, 2, 2, 2, 2, c)  # [b, i, j, ah, ph, aw, pw, c]
    # Accumulated in place into one buffer (dynamic-update-slices), not as a sum of padded
    # parts: XLA kept those four padded parts as buffers of their own and re-added them in
    # each of the result's consumers (bias, batch norm), 4 x ~10 ms at batch 256.
    out = jnp.zeros((b, h + 1, w + 1, 2, 2, c), patches.dtype)
    for ah in (0, 1):
        for aw in (0, 1):
            part = p[:, :, :, ah, :, aw, :, :]  # [b, i, j, ph, pw, c] lands at row i + ah.
            out = out.at[:, ah : ah + h, aw : aw + w].add(part)
    # out: [b, n, m, ph, pw, c] -> row 2 n + ph, column 2 m + pw.
    return out.transpose(0, 1, 3, 2, 4, 5).reshape(b, 2 * h + 2, 2 * w + 2, c)


def conv_k4s2(x: jax.Array, kernel: jax.Array, dtype: str = "float32") -> jax.Array:
    """Torch Conv2d(k=4, s=2, p=1) in NHWC: [B, 2h, 2w, Cin] x [4, 4, Cin, Cout] -> [B, h, w, Cout].

    Same as `lax.conv_general_dilated(x, kernel, (2, 2), ((1, 1), (1, 1)))` (HWIO kernel).
    """
    b, hh, ww, cin = x.shape
    cout = kernel.shape[-1]
    if dtype != "float32":
        x = x.astype(jnp.bfloat16)  # The patches are built in bfloat16: half the traffic.
    patches = im2col_k4s2(jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))))
    h, w = hh // 2, ww // 2
    y = matmul(patches.reshape(b * h * w, KERNEL * KERNEL * cin), kernel.reshape(-1, cout), dtype)
    return y.reshape(b, h, w, cout)


def _xla_conv_k4s2(x: jax.Array, kernel: jax.Array) -> jax.Array:
    padding = ((1, 1), (1, 1))
    return jax.lax.conv_general_dilated(x, kernel, (2, 2), padding, dimension_numbers=_NHWC)


def _space_to_depth_conv_k4s2(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """The same function as a k2 s1 convolution of the padded image's space-to-depth view."""
    b, hh, ww, cin = x.shape
    h, w, cout = hh // 2, ww // 2, kernel.shape[-1]
    x_pad = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    s2d = x_pad.reshape(b, h + 1, 2, w + 1, 2, cin).transpose(0, 1, 3, 2, 4, 5)
    # Kernel row kh = 2 ah + ph: [ah, ph, aw, pw, c, o] -> [ah, aw, (ph, pw, c), o].
    k = kernel.reshape(2, 2, 2, 2, cin, cout).transpose(0, 2, 1, 3, 4, 5)
    return jax.lax.conv_general_dilated(
        s2d.reshape(b, h + 1, w + 1, 4 * cin),
        k.reshape(2, 2, 4 * cin, cout),
        (1, 1),
        "VALID",
        dimension_numbers=_NHWC,
    )


@jax.custom_vjp
def conv_k4s2_fast_input_grad(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """`lax.conv_general_dilated(x, kernel, (2, 2), ((1, 1), (1, 1)))`, with the input
    gradient taken through the space-to-depth form (see the module docstring)."""
    return _xla_conv_k4s2(x, kernel)


def _conv_fwd(x, kernel):
    return _xla_conv_k4s2(x, kernel), (x, kernel)


def _conv_bwd(residuals, dy):
    x, kernel = residuals
    (dx,) = jax.vjp(lambda x_: _space_to_depth_conv_k4s2(x_, kernel), x)[1](dy)
    weight_grad = lambda x_, dy_: jax.vjp(lambda k_: _xla_conv_k4s2(x_, k_), kernel)[1](dy_)[0]
    chunks = range(0, x.shape[0], WEIGHT_GRAD_CHUNK)
    dkernel = functools.reduce(
        jnp.add,
        (weight_grad(x[i : i + WEIGHT_GRAD_CHUNK], dy[i : i + WEIGHT_GRAD_CHUNK]) for i in chunks),
    )
    return dx, dkernel


conv_k4s2_fast_input_grad.defvjp(_conv_fwd, _conv_bwd)


def conv_transpose_k4s2(x: jax.Array, kernel: jax.Array, dtype: str = "float32") -> jax.Array:
    """Torch ConvTranspose2d(k=4, s=2, p=1) in NHWC with a Flax (unflipped) kernel.

    [B, h, w, Cin] x [4, 4, Cin, Cout] -> [B, 2h, 2w, Cout]; equals
    `flax.linen.ConvTranspose(kernel_size=(4, 4), strides=(2, 2), padding=((2, 2), (2, 2)))`,
    i.e. `lax.conv_transpose(x, kernel, (2, 2), ((2, 2), (2, 2)))`.
    """
    b, h, w, cin = x.shape
    cout = kernel.shape[-1]
    # Flax's kernel index is 3 - k in the Torch convention used by col2im_k4s2.
    k = kernel[::-1, ::-1].transpose(2, 0, 1, 3).reshape(cin, KERNEL * KERNEL * cout)
    contributions = matmul(x.reshape(b * h * w, cin), k, dtype)
    contributions = contributions.reshape(b, h, w, KERNEL, KERNEL, cout)
    return col2im_k4s2(contributions)[:, 1:-1, 1:-1]


class Conv(nn.Module):
    """`flax.linen.Conv(features, (4, 4), (2, 2), ((1, 1), (1, 1)))`: patches + matmul for
    inputs of at most PATCHES_MAX_CHANNELS channels (and for all in bfloat16), else XLA's
    convolution with a faster input gradient."""

    features: int
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
    bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()
    dtype: str = "float32"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        check_dtype(self.dtype)
        shape = (KERNEL, KERNEL, x.shape[-1], self.features)
        kernel = self.param("kernel", self.kernel_init, shape, jnp.float32)
        bias = self.param("bias", self.bias_init, (self.features,), jnp.float32)
        if x.shape[-1] <= PATCHES_MAX_CHANNELS or self.dtype != "float32":
            return conv_k4s2(x, kernel, self.dtype) + bias
        return conv_k4s2_fast_input_grad(x, kernel) + bias


class ConvTranspose(nn.Module):
    """`flax.linen.ConvTranspose(features, (4, 4), (2, 2), ((2, 2), (2, 2)))`, as one matmul
    followed by overlap-add."""

    features: int
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
    bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()
    dtype: str = "float32"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        check_dtype(self.dtype)
        shape = (KERNEL, KERNEL, x.shape[-1], self.features)
        kernel = self.param("kernel", self.kernel_init, shape, jnp.float32)
        bias = self.param("bias", self.bias_init, (self.features,), jnp.float32)
        return conv_transpose_k4s2(x, kernel, self.dtype) + bias
