"""Random translations: of the labelled examples on the host, a pure function of (seed, step),
and of any batch inside the jitted step (`translate`, for the consistency loss and Q_ss's
reals); and random recolourings inside the step (`recolour`, for what Q_ss reads).

With 100 labels, Q_ss (trained on the labelled reals only, reference section 5) sees the
same 100 images hundreds of times and generalises to about 80% of the real test split;
small shifts are the cheapest way to make those few images count for more. Only labelled
slots are shifted, so the unlabelled reals that D learns the data distribution from are
untouched.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

_TAG = 0xA6


def random_shifts(seed: int, step: int, count: int, max_shift: int) -> np.ndarray:
    """int [count, 2] (dy, dx), each uniform in [-max_shift, max_shift], from (seed, step)."""
    rng = np.random.default_rng([seed, _TAG, step])
    return rng.integers(-max_shift, max_shift + 1, size=(count, 2))


def shift_images(images: np.ndarray, shifts: np.ndarray, fill: float) -> np.ndarray:
    """images [n, H, W, C] translated by shifts [n, 2] (dy, dx) pixels; vacated pixels = fill.

    Content shifted past the border is dropped (no wrap-around).
    """
    _, h, w, _ = images.shape
    m = int(np.abs(shifts).max(initial=0))
    if m == 0:
        return images
    padded = np.pad(images, ((0, 0), (m, m), (m, m), (0, 0)), constant_values=fill)
    out = np.empty_like(images)
    for i, (dy, dx) in enumerate(shifts):
        out[i] = padded[i, m - dy : m - dy + h, m - dx : m - dx + w]
    return out


def translate(rng: jax.Array, image: jax.Array, max_shift: int, fill: float) -> jax.Array:
    """In-graph `shift_images` for one image [H, W, C] (vmap it over a batch, one key per
    example): moved by (dy, dx), each uniform in [-max_shift, max_shift]; vacated = fill."""
    h, w, c = image.shape
    m = int(max_shift)
    if m == 0:
        return image
    dy, dx = jax.random.randint(rng, (2,), -m, m + 1)
    padded = jnp.pad(image, ((m, m), (m, m), (0, 0)), constant_values=fill)
    return jax.lax.dynamic_slice(padded, (m - dy, m - dx, 0), (h, w, c))


def recolour(rng: jax.Array, image: jax.Array, image_range: tuple[float, float]) -> jax.Array:
    """One image [H, W, C] with its channels in one of the C! orders and, with probability
    1/2, its values mirrored within `image_range` (a negative); uniform over those 2 * C!.

    A label that does not depend on colour (a digit, an object) survives it; what Q_ss reads
    through it cannot tell G's codes by colour.
    """
    order_rng, flip_rng = jax.random.split(rng)
    image = jnp.asarray(image)[..., jax.random.permutation(order_rng, image.shape[-1])]
    low, high = image_range
    return jnp.where(jax.random.bernoulli(flip_rng), low + high - image, image)
