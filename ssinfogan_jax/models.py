"""Flax Linen generator and discriminator, per architecture.

D is one module holding the shared trunk and three heads, as in the reference (one parameter
tree, one optimizer): `d_head` (real/fake logit), `q_ss` (one linear layer predicting every
supervised code) and `q_us` (FC 128 - BN - lReLU - FC predicting every free code). The
top-level parameter names `trunk`, `d_head`, `q_ss`, `q_us` are what the gradient-routing tests
and any research code can rely on; `q_ss_trunk` is there only when Q_ss has a trunk of its own
(`q_ss_trunk='own'`, not in the paper).

Images are NHWC. Every BatchNorm takes `axis_name` so that under `pmap`/`shard_map` its batch
statistics are global. D's trunk can go without batch norm (`d_batch_norm=False`,
`config.model.d_batch_norm`): with it, D normalises the real and the fake batch each by its own
statistics, so it cannot see that a batch of fakes lacks the real batch's spread (colour, above
all), and at 32x32 G then ignores its noise (see `dcgan_32`).

Every module takes `dtype` ('float32' or 'bfloat16', see layers.py): in bfloat16 the matmuls of
every layer take bfloat16 operands and accumulate in float32; parameters, batch norm (its
statistics included), activation functions and the outputs (G's images, D's logits and Q's
predictions, hence the losses) stay float32, so the parameter tree and the train step are the
same in both.

Every module also takes `conv_impl` ('auto', 'flax' or 'cpu_fast'; see layers.py): how its
k4 s2 convolutions are computed. The parameter tree is the same for all three.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssinfogan_jax import latents as latents_lib
from ssinfogan_jax import layers

# Reference (Torch, anibali/infogan): weights N(0, 0.02), biases 0, BN gamma N(1, 0.02),
# eps 1e-5, running = 0.9 running + 0.1 batch (Flax momentum 0.9), LeakyReLU slope 0.01.
WEIGHT_INIT = nn.initializers.normal(0.02)
LEAKY_SLOPE = 0.01
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def _gamma_init(key, shape, dtype=jnp.float32):
    return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


def _batch_norm(train: bool, axis_name: str | None, name: str | None = None) -> nn.BatchNorm:
    return nn.BatchNorm(
        use_running_average=not train,
        momentum=BN_MOMENTUM,
        epsilon=BN_EPSILON,
        scale_init=_gamma_init,
        axis_name=axis_name,
        name=name,
    )


def leaky_relu(x: jax.Array) -> jax.Array:
    return nn.leaky_relu(x, LEAKY_SLOPE)


# Flax's Dense (same name, parameters and values), with its matmul in the model's dtype.
Dense = functools.partial(layers.Dense, kernel_init=WEIGHT_INIT)
# Torch conv k4 s2 p1: 28 -> 14 -> 7 (and 32 -> 16 -> 8 -> 4, 64 -> ... -> 4). The layer is Flax's
# `Conv(kernel_size=(4, 4), strides=(2, 2), padding=((1, 1), (1, 1)))` (same name, parameters
# and values), computed the fastest way measured on XLA:CPU (see layers.py).
Conv = functools.partial(layers.Conv, kernel_init=WEIGHT_INIT)
# Torch transposed conv k4 s2 p1 doubles the size: Flax pads k - 1 - p = 2 per side. The layer
# is Flax's `ConvTranspose(kernel_size=(4, 4), strides=(2, 2), padding=((2, 2), (2, 2)))` (same
# name, parameters and values) computed as one matmul + overlap-add (see layers.py): XLA's own
# transposed convolution has a very slow weight gradient on CPU.
ConvTranspose = functools.partial(layers.ConvTranspose, kernel_init=WEIGHT_INIT)
# The same two layers as Flax computes them (conv_impl 'flax'): XLA's own convolutions. Their
# class names (hence parameter names), parameters and initialisers are those above.
FLAX_LAYERS = {
    "Conv": functools.partial(
        nn.Conv,
        kernel_size=(4, 4),
        strides=(2, 2),
        padding=((1, 1), (1, 1)),
        kernel_init=WEIGHT_INIT,
    ),
    "ConvTranspose": functools.partial(
        nn.ConvTranspose,
        kernel_size=(4, 4),
        strides=(2, 2),
        padding=((2, 2), (2, 2)),
        kernel_init=WEIGHT_INIT,
    ),
}


def _layers(dtype: str, conv_impl: str, *names: str) -> tuple:
    """The module-level layers named, computing in `dtype`, their convolutions by
    `conv_impl` (Dense is the same for all)."""
    layers.check_dtype(dtype)
    if layers.resolve_conv_impl(conv_impl) == "flax":
        flax_kwargs = layers.flax_precision(dtype)
        return tuple(
            functools.partial(FLAX_LAYERS[name], **flax_kwargs)
            if name in FLAX_LAYERS
            else functools.partial(globals()[name], dtype=dtype)
            for name in names
        )
    return tuple(functools.partial(globals()[name], dtype=dtype) for name in names)


class _Net(nn.Module):
    """What every G and trunk takes: the batch-norm device axis, the matmul dtype and how its
    convolutions are computed (see the module docstring)."""

    axis_name: str | None = None
    dtype: str = "float32"
    conv_impl: str = "auto"


class MnistGenerator(_Net):
    """infogan_mnist G: [B, input] -> [B, 28, 28, 1] in [0, 1] (reference section 4)."""

    @nn.compact
    def __call__(self, z: jax.Array, train: bool = True) -> jax.Array:
        bn = functools.partial(_batch_norm, train, self.axis_name)
        Dense, ConvTranspose = _layers(self.dtype, self.conv_impl, "Dense", "ConvTranspose")
        x = nn.relu(bn()(Dense(1024)(z)))
        x = nn.relu(bn()(Dense(7 * 7 * 128)(x)))
        x = x.reshape(x.shape[0], 7, 7, 128)
        x = nn.relu(bn()(ConvTranspose(64)(x)))
        return nn.sigmoid(ConvTranspose(1)(x))


def _trunk_norm(batch_norm: bool, train: bool, axis_name: str | None) -> Callable[[], Callable]:
    """A factory of the trunk's normalisation layers: batch norm, or none."""
    if batch_norm:
        return functools.partial(_batch_norm, train, axis_name)
    return lambda: lambda x: x


class MnistTrunk(_Net):
    """infogan_mnist D/Q trunk: [B, 28, 28, 1] -> [B, 1024]. No BN after the first conv."""

    batch_norm: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        bn = _trunk_norm(self.batch_norm, train, self.axis_name)
        Dense, Conv = _layers(self.dtype, self.conv_impl, "Dense", "Conv")
        x = leaky_relu(Conv(64)(x))
        x = leaky_relu(bn()(Conv(128)(x)))
        x = x.reshape(x.shape[0], -1)
        return leaky_relu(bn()(Dense(1024)(x)))


class Generator32(_Net):
    """infogan_32 G (InfoGAN SVHN/CelebA net): [B, input] -> [B, 32, 32, 3] in [-1, 1]."""

    @nn.compact
    def __call__(self, z: jax.Array, train: bool = True) -> jax.Array:
        bn = functools.partial(_batch_norm, train, self.axis_name)
        Dense, ConvTranspose = _layers(self.dtype, self.conv_impl, "Dense", "ConvTranspose")
        x = nn.relu(bn()(Dense(2 * 2 * 448)(z)))
        x = x.reshape(x.shape[0], 2, 2, 448)
        x = nn.relu(bn()(ConvTranspose(256)(x)))
        x = nn.relu(ConvTranspose(128)(x))
        x = nn.relu(ConvTranspose(64)(x))
        return jnp.tanh(ConvTranspose(3)(x))


class DcganGenerator32(_Net):
    """dcgan_32 G (DCGAN's, Radford et al. 2016): [B, input] -> [B, 32, 32, 3] in [-1, 1].

    FC 4x4x512 - BN - ReLU, upconv 256 and 128 each with BN - ReLU, upconv 3 - tanh. Unlike
    Generator32 (BN on two of its five layers), every hidden layer is normalised, so with the
    N(0, 0.02) initialisation its first samples already vary with the noise (Generator32's
    output varies with it by ~0.1% of the data's variance at step 0).
    """

    @nn.compact
    def __call__(self, z: jax.Array, train: bool = True) -> jax.Array:
        bn = functools.partial(_batch_norm, train, self.axis_name)
        Dense, ConvTranspose = _layers(self.dtype, self.conv_impl, "Dense", "ConvTranspose")
        x = nn.relu(bn()(Dense(4 * 4 * 512)(z)))
        x = x.reshape(x.shape[0], 4, 4, 512)
        x = nn.relu(bn()(ConvTranspose(256)(x)))
        x = nn.relu(bn()(ConvTranspose(128)(x)))
        return jnp.tanh(ConvTranspose(3)(x))


class DcganGenerator64(_Net):
    """dcgan_64 G, DCGAN's 64x64 generator: [B, input] -> [B, 64, 64, 3] in [-1, 1].

    FC 4x4x512 - BN - ReLU, upconv 256, 128 and 64 each with BN - ReLU, upconv 3 - tanh:
    4 -> 8 -> 16 -> 32 -> 64. As DCGAN (Radford et al. 2016, Fig. 1): z projected to 4x4,
    k4 s2 transposed convolutions halving the width at each doubling of the size, BN - ReLU
    after every hidden layer and none on the output, tanh, N(0, 0.02) weights. The widths are
    the PyTorch DCGAN example's (ngf = 64: 512 at 4x4 down to 64), half of Fig. 1's (1024 down
    to 128). As DcganGenerator32 (our 32x32 choices): the projection is a Dense layer (the
    example's k4 transposed convolution of a 1x1 input is the same function) and batch norm
    has the reference's settings (momentum 0.9, eps 1e-5, gamma N(1, 0.02)).
    """

    @nn.compact
    def __call__(self, z: jax.Array, train: bool = True) -> jax.Array:
        bn = functools.partial(_batch_norm, train, self.axis_name)
        Dense, ConvTranspose = _layers(self.dtype, self.conv_impl, "Dense", "ConvTranspose")
        x = nn.relu(bn()(Dense(4 * 4 * 512)(z)))
        x = x.reshape(x.shape[0], 4, 4, 512)
        x = nn.relu(bn()(ConvTranspose(256)(x)))
        x = nn.relu(bn()(ConvTranspose(128)(x)))
        x = nn.relu(bn()(ConvTranspose(64)(x)))
        return jnp.tanh(ConvTranspose(3)(x))


class Trunk32(_Net):
    """infogan_32 and dcgan_32 D/Q trunk: [B, 32, 32, 3] -> [B, 4096] (4 x 4 x 256).

    k4 s2 convolutions of `widths`, each with lReLU, BN (optional) on all but the first."""

    batch_norm: bool = True
    widths: tuple[int, ...] = (64, 128, 256)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        bn = _trunk_norm(self.batch_norm, train, self.axis_name)
        (Conv,) = _layers(self.dtype, self.conv_impl, "Conv")
        x = leaky_relu(Conv(self.widths[0])(x))
        for width in self.widths[1:]:
            x = leaky_relu(bn()(Conv(width)(x)))
        return x.reshape(x.shape[0], -1)


class Trunk64(Trunk32):
    """dcgan_64 D/Q trunk, DCGAN's 64x64 discriminator without its last layer:
    [B, 64, 64, 3] -> [B, 8192] (4 x 4 x 512).

    Conv 64 - lReLU, then conv 128, 256 and 512 each with BN - lReLU: 64 -> 32 -> 16 -> 8 -> 4.
    As DCGAN (the PyTorch example's widths, ndf = 64): k4 s2 convolutions doubling the width,
    no BN on the first, N(0, 0.02) weights. DCGAN's last layer (a 4x4 convolution to one logit)
    is our d_head, a Dense layer on the flattened 4x4x512 (the same function), beside Q_ss and
    Q_us. As Trunk32 (our choices): LeakyReLU slope 0.01 (the reference's; DCGAN's is 0.2),
    and the trunk's BN optional (`batch_norm`, config.model.d_batch_norm): configs/celeba.py
    turns it off at 64x64 as at 32x32 (see the module docstring).
    """

    widths: tuple[int, ...] = (64, 128, 256, 512)


@dataclasses.dataclass(frozen=True)
class Architecture:
    generator: Callable[..., nn.Module]
    trunk: Callable[..., nn.Module]
    image_shape: tuple[int, int, int]
    image_range: tuple[float, float]  # G's output range, which the data must match.


ARCHITECTURES: dict[str, Architecture] = {
    "infogan_mnist": Architecture(MnistGenerator, MnistTrunk, (28, 28, 1), (0.0, 1.0)),
    "infogan_32": Architecture(Generator32, Trunk32, (32, 32, 3), (-1.0, 1.0)),
    "dcgan_32": Architecture(DcganGenerator32, Trunk32, (32, 32, 3), (-1.0, 1.0)),
    "dcgan_64": Architecture(DcganGenerator64, Trunk64, (64, 64, 3), (-1.0, 1.0)),
}


# Where Q_ss reads from: D's trunk (the paper's), or a trunk of its own (`Discriminator`).
Q_SS_TRUNKS = ("shared", "own")
# D's top-level parameter groups that belong to Q_ss (`optimizer.q_ss_learning_rate`).
Q_SS_PARAMS = ("q_ss", "q_ss_trunk")


def get_architecture(name: str) -> Architecture:
    if name not in ARCHITECTURES:
        known = sorted(ARCHITECTURES)
        raise ValueError(f"model.arch: unknown architecture {name!r}; known: {known}")
    return ARCHITECTURES[name]


def dropout_per_example(keys: jax.Array, x: jax.Array, rate: float) -> jax.Array:
    """Inverted dropout of `x` [B, ...], example i's mask drawn from `keys[i]`: a batch split
    over devices drops exactly what it drops whole (nn.Dropout draws one mask per call)."""
    keep = jax.vmap(lambda key, row: jax.random.bernoulli(key, 1.0 - rate, row.shape))(keys, x)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


class QusHead(nn.Module):
    """FC 128 - BN - lReLU - FC, as the reference's Q_us head."""

    features: int
    axis_name: str | None = None
    dtype: str = "float32"

    @nn.compact
    def __call__(self, h: jax.Array, train: bool = True) -> jax.Array:
        (Dense,) = _layers(self.dtype, "cpu_fast", "Dense")  # Dense: the same for all.
        h = leaky_relu(_batch_norm(train, self.axis_name)(Dense(128)(h)))
        return Dense(self.features)(h)


class Discriminator(nn.Module):
    """Shared trunk with the real/fake head, Q_ss and Q_us.

    With `q_ss_own_trunk`, Q_ss reads a trunk of its own (the same architecture, its own
    weights, named `q_ss_trunk`), which only the Q_ss terms train: what Q_ss learns from a few
    labelled images (and their translations, `q_ss_images`) then leaves D's features alone.

    Returns a dict: `logit` float32 [B] (real/fake, pre-sigmoid) and `q` mapping every code
    name to its prediction [B, size] (logits for categorical codes, means for continuous ones).
    `q_ss_images` [B', H, W, C] (own trunk only; default `images`): what Q_ss reads instead;
    its batch may differ from that of `images`, and Q_ss's outputs then have its batch.
    With `q_ss_dropout` > 0, in training mode Q_ss's head reads its features through dropout
    at that rate, an example's mask drawn from its key in `q_ss_dropout_keys` [B', 2].
    """

    arch: str
    layout: latents_lib.LatentLayout
    axis_name: str | None = None
    dtype: str = "float32"
    conv_impl: str = "auto"
    trunk_batch_norm: bool = True
    q_ss_own_trunk: bool = False
    q_ss_dropout: float = 0.0

    @nn.compact
    def __call__(
        self,
        images: jax.Array,
        train: bool = True,
        q_ss_images: jax.Array | None = None,
        q_ss_dropout_keys: jax.Array | None = None,
    ) -> dict:
        (Dense,) = _layers(self.dtype, self.conv_impl, "Dense")
        trunk = functools.partial(
            get_architecture(self.arch).trunk,
            axis_name=self.axis_name,
            dtype=self.dtype,
            conv_impl=self.conv_impl,
            batch_norm=self.trunk_batch_norm,
        )
        h = trunk(name="trunk")(images, train)
        q = {}
        ss, us = self.layout.supervised_codes, self.layout.unsupervised_codes
        if q_ss_images is not None and not (ss and self.q_ss_own_trunk):
            raise ValueError("q_ss_images needs supervised codes and q_ss_own_trunk")
        if ss:
            h_ss = h
            if self.q_ss_own_trunk:
                q_ss_input = images if q_ss_images is None else q_ss_images
                h_ss = trunk(name="q_ss_trunk")(q_ss_input, train)
            if self.q_ss_dropout > 0 and train:
                if q_ss_dropout_keys is None:
                    raise ValueError("q_ss_dropout needs q_ss_dropout_keys in training mode")
                h_ss = dropout_per_example(q_ss_dropout_keys, h_ss, self.q_ss_dropout)
            out = Dense(sum(c.size for c in ss), name="q_ss")(h_ss)
            q.update(latents_lib.split_outputs(ss, out))
        if us:
            q_us = QusHead(sum(c.size for c in us), self.axis_name, self.dtype, name="q_us")
            out = q_us(h, train)
            q.update(latents_lib.split_outputs(us, out))
        logit = Dense(1, name="d_head")(h)[:, 0]
        return {"logit": logit, "q": q}


def create_models(
    arch: str,
    layout: latents_lib.LatentLayout,
    axis_name: str | None = None,
    dtype: str = "float32",
    conv_impl: str = "auto",
    d_batch_norm: bool = True,
    q_ss_trunk: str = "shared",
    q_ss_dropout: float = 0.0,
) -> tuple[nn.Module, Discriminator]:
    """G and D for an architecture and latent layout; `dtype` of their matmuls ('float32' or
    'bfloat16'; parameters and outputs are float32 either way); `conv_impl` of their
    convolutions ('auto': 'cpu_fast' on the CPU backend, 'flax' elsewhere; the parameter tree
    is the same for all); `d_batch_norm`: batch norm in D's trunk (Q_us's own is kept);
    `q_ss_trunk`: 'shared' (Q_ss a head on D's trunk, the paper's) or 'own'; `q_ss_dropout`:
    dropout on the features Q_ss's head reads, in training mode."""
    if q_ss_trunk not in Q_SS_TRUNKS:
        raise ValueError(f"model.q_ss_trunk: {q_ss_trunk!r} is not one of {Q_SS_TRUNKS}")
    spec = get_architecture(arch)
    layers.check_dtype(dtype)
    conv_impl = layers.resolve_conv_impl(conv_impl)
    generator = spec.generator(axis_name=axis_name, dtype=dtype, conv_impl=conv_impl)
    discriminator = Discriminator(
        arch, layout, axis_name, dtype, conv_impl, d_batch_norm, q_ss_trunk == "own", q_ss_dropout
    )
    return generator, discriminator
