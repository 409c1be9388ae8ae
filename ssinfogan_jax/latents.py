"""The latent layout: which codes G receives, how they are sampled and laid out.

A layout is a tuple of codes plus noise. Each code is categorical (k-way, uniform) or
continuous (`size` dimensions, uniform on [-r, r]); each is either supervised by a named label
of the data set (a c_ss code) or free (a c_us code). G's input is the concatenation, in the
configured order, of every code (categorical ones one-hot) followed by the noise. For MNIST the
reference gives [c_ss one-hot 10 | c_us U(-1, 1) x 2 | noise N(0, 1) x 62] = 74 dims.

Sampled latents are a dict: one entry per code name (categorical: int32 [B] class indices;
continuous: float32 [B, size]) and `NOISE` (float32 [B, noise_size]).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

CATEGORICAL = "categorical"
CONTINUOUS = "continuous"
NOISE = "noise"
NOISE_DISTRIBUTIONS = ("normal", "uniform")

Latents = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class Code:
    """One latent code.

    Attributes:
      name: unique key of the code in sampled latents and in D's Q outputs.
      kind: `CATEGORICAL` or `CONTINUOUS`.
      size: number of classes (categorical) or of dimensions (continuous).
      label: the data set label that supervises this code (c_ss), or '' for a free code (c_us).
    """

    name: str
    kind: str
    size: int
    label: str = ""

    @property
    def supervised(self) -> bool:
        return bool(self.label)

    @property
    def categorical(self) -> bool:
        return self.kind == CATEGORICAL


@dataclasses.dataclass(frozen=True)
class LatentLayout:
    """All codes plus noise; hashable, so it can be bound into jitted functions."""

    codes: tuple[Code, ...]
    noise_size: int
    noise_distribution: str = "normal"
    continuous_range: float = 1.0

    def __post_init__(self):
        names = [c.name for c in self.codes]
        if len(set(names)) != len(names) or NOISE in names:
            raise ValueError(f"latents.codes: code names must be unique and not {NOISE!r}: {names}")
        for c in self.codes:
            if c.kind not in (CATEGORICAL, CONTINUOUS):
                raise ValueError(
                    f"latents.codes[{c.name}].kind: {c.kind!r}, expected {CATEGORICAL!r} or "
                    f"{CONTINUOUS!r}"
                )
            if c.size < (2 if c.categorical else 1):
                raise ValueError(f"latents.codes[{c.name}].size: {c.size} is too small")
        if self.noise_distribution not in NOISE_DISTRIBUTIONS:
            raise ValueError(
                f"latents.noise_distribution: {self.noise_distribution!r}, expected one of "
                f"{NOISE_DISTRIBUTIONS}"
            )
        if self.noise_size < 0:
            raise ValueError(f"latents.noise_size: {self.noise_size} is negative")

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> LatentLayout:
        """Builds the layout from `config.latents` (see configs/default.py)."""
        codes = tuple(
            Code(name=c.name, kind=c.kind, size=int(c.size), label=c.get("label", "") or "")
            for c in config.codes
        )
        return cls(
            codes=codes,
            noise_size=int(config.noise_size),
            noise_distribution=config.noise_distribution,
            continuous_range=float(config.get("continuous_range", 1.0)),
        )

    @property
    def supervised_codes(self) -> tuple[Code, ...]:
        return tuple(c for c in self.codes if c.supervised)

    @property
    def unsupervised_codes(self) -> tuple[Code, ...]:
        return tuple(c for c in self.codes if not c.supervised)

    @property
    def input_size(self) -> int:
        """G's input width."""
        return sum(c.size for c in self.codes) + self.noise_size

    def code(self, name: str) -> Code:
        for c in self.codes:
            if c.name == name:
                return c
        raise KeyError(f"no latent code named {name!r}; codes: {[c.name for c in self.codes]}")


# Jitted: called eagerly (evaluation, sample grids), each random op would compile on its own.
@functools.partial(jax.jit, static_argnames=("layout", "batch_size"))
def sample(
    rng: jax.Array,
    layout: LatentLayout,
    batch_size: int,
    fixed: Mapping[str, jax.Array] | None = None,
) -> Latents:
    """Draws a batch of latents from the configured priors.

    Args:
      rng: PRNG key.
      layout: the latent layout.
      batch_size: B.
      fixed: optional values that replace the sampled ones for some codes (or `NOISE`), for
        class-conditional sampling; each must have the shape of the sampled value.

    Returns:
      dict code name -> int32 [B] (categorical) or float32 [B, size] (continuous), and
      `NOISE` -> float32 [B, noise_size].
    """
    keys = jax.random.split(rng, len(layout.codes) + 1)
    latents: Latents = {}
    r = layout.continuous_range
    for key, c in zip(keys[:-1], layout.codes, strict=True):
        if c.categorical:
            latents[c.name] = jax.random.randint(key, (batch_size,), 0, c.size, dtype=jnp.int32)
        else:
            latents[c.name] = jax.random.uniform(key, (batch_size, c.size), minval=-r, maxval=r)
    shape = (batch_size, layout.noise_size)
    if layout.noise_distribution == "normal":
        latents[NOISE] = jax.random.normal(keys[-1], shape)
    else:
        latents[NOISE] = jax.random.uniform(keys[-1], shape, minval=-1.0, maxval=1.0)
    for name, value in (fixed or {}).items():
        value = jnp.asarray(value, latents[name].dtype)
        latents[name] = jnp.broadcast_to(value, latents[name].shape)
    return latents


def generator_input(layout: LatentLayout, latents: Mapping[str, jax.Array]) -> jax.Array:
    """Concatenates latents into G's input: float32 [B, layout.input_size]."""
    parts = []
    for c in layout.codes:
        value = latents[c.name]
        parts.append(jax.nn.one_hot(value, c.size) if c.categorical else value)
    parts.append(latents[NOISE])
    return jnp.concatenate(parts, axis=-1)


def split_outputs(codes: Sequence[Code], outputs: jax.Array) -> dict[str, jax.Array]:
    """Splits a Q head's [B, sum(sizes)] output into one [B, size] slice per code."""
    result, start = {}, 0
    for c in codes:
        result[c.name] = outputs[:, start : start + c.size]
        start += c.size
    return result


@functools.partial(jax.jit, static_argnames=("layout", "code_name", "num_per_value", "paired"))
def conditional_latents(
    rng: jax.Array,
    layout: LatentLayout,
    code_name: str,
    num_per_value: int,
    paired: bool = False,
) -> list[Latents]:
    """For each value k of a categorical code, N latents with that code fixed to k.

    The other codes and the noise come from the priors (`sample`); with `paired` they are the
    same N draws for every k (only the code changes), otherwise independent per k (as the
    reference's fixed test inputs).

    Returns:
      K dicts as from `sample` with B = num_per_value.
    """
    code = layout.code(code_name)
    if not code.categorical:
        raise ValueError(
            f"code {code_name!r} is {code.kind}; conditional samples need a categorical code"
        )

    def one_value(k):
        key = rng if paired else jax.random.fold_in(rng, k)
        fixed = {code_name: jnp.full((num_per_value,), k, jnp.int32)}
        return sample(key, layout, num_per_value, fixed=fixed)

    # Mapped, not unrolled: each copy of the random number code costs XLA ~0.3 s to compile.
    stacked = jax.vmap(one_value)(jnp.arange(code.size))
    return [jax.tree.map(lambda x, k=k: x[k], stacked) for k in range(code.size)]


def concatenate(batches: Sequence[Latents]) -> Latents:
    """Latents of several batches as one batch, in order."""
    return jax.tree.map(lambda *values: jnp.concatenate(values), *batches)


def traversal(
    rng: jax.Array,
    layout: LatentLayout,
    code_name: str,
    num_rows: int,
    num_values: int | None = None,
    dim: int = 0,
    value_range: tuple[float, float] = (-2.0, 2.0),
) -> tuple[Latents, np.ndarray]:
    """Latents for a traversal grid: one code varied along columns, the rest fixed per row.

    A categorical code takes each of its classes in turn; one dimension of a continuous code
    sweeps `value_range` (the reference shows -2..2, beyond the training range [-1, 1]).

    Returns:
      (latents with B = num_rows * num_values, row-major; the column values [num_values]).
    """
    c = layout.code(code_name)
    if c.categorical:
        num_values = c.size if num_values is None else num_values
        values = np.arange(num_values) % c.size
    else:
        num_values = 12 if num_values is None else num_values
        values = np.linspace(*value_range, num_values, dtype=np.float32)
    return _traversal_latents(rng, layout, code_name, num_rows, dim, jnp.asarray(values)), values


@functools.partial(jax.jit, static_argnames=("layout", "code_name", "num_rows", "dim"))
def _traversal_latents(
    rng: jax.Array,
    layout: LatentLayout,
    code_name: str,
    num_rows: int,
    dim: int,
    values: jax.Array,
) -> Latents:
    c = layout.code(code_name)
    base = sample(rng, layout, num_rows)
    latents = {k: jnp.repeat(v, values.shape[0], axis=0) for k, v in base.items()}
    column = jnp.tile(values, num_rows)
    if c.categorical:
        latents[c.name] = column.astype(jnp.int32)
    else:
        latents[c.name] = latents[c.name].at[:, dim].set(column)
    return latents
