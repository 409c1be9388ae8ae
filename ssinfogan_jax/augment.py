"""Random translations: of the labelled examples on the host, a pure function of (seed, step),
and of any batch inside the jitted step (`translate`, for the consistency loss and Q_ss's
reals); random recolourings inside the step (`recolour`, for what Q_ss reads); and, inside the
step too, random rotations, scalings (`warp`) and stroke widths (`restroke`) of the labelled
examples.

With 100 labels, Q_ss (trained on the labelled reals only, reference section 5) sees the
same 100 images hundreds of times and generalises to about 80% of the real test split;
small shifts are the cheapest way to make those few images count for more. Only labelled
slots are shifted, so the unlabelled reals that D learns the data distribution from are
untouched. With one label per class, a shift is not enough: a thin, slanted labelled 0 teaches
Q_ss that 0s are thin and slanted, so `warp` and `restroke` vary the few more widely.
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


def warp(
    rng: jax.Array, image: jax.Array, max_rotation: float, max_scale: float, fill: float
) -> jax.Array:
    """`rotate_and_scale` by an angle uniform in +-max_rotation degrees and a factor uniform in
    [1 - max_scale, 1 + max_scale]."""
    angle_rng, scale_rng = jax.random.split(rng)
    degrees = jax.random.uniform(angle_rng, (), minval=-1.0, maxval=1.0) * max_rotation
    scale = 1.0 + jax.random.uniform(scale_rng, (), minval=-1.0, maxval=1.0) * max_scale
    return rotate_and_scale(image, degrees, scale, fill)


def rotate_and_scale(image: jax.Array, degrees, scale, fill: float) -> jax.Array:
    """One image [H, W, C] turned clockwise as displayed (row 0 at the top) by `degrees` about
    its centre and scaled by `scale` (bilinear); pixels brought in from outside = fill."""
    h, w, c = image.shape
    cy, cx = (h - 1) / 2, (w - 1) / 2
    y, x = jnp.meshgrid(jnp.arange(h) - cy, jnp.arange(w) - cx, indexing="ij")
    # Each output pixel reads the input where the inverse rotation and scaling put it.
    angle = jnp.deg2rad(degrees)
    cos, sin = jnp.cos(angle) / scale, jnp.sin(angle) / scale
    source = [cos * y - sin * x + cy, sin * y + cos * x + cx]

    def sample(channel):
        return jax.scipy.ndimage.map_coordinates(channel, source, order=1, cval=fill)

    return jnp.stack([sample(image[..., k]) for k in range(c)], axis=-1)


def restroke(rng: jax.Array, image: jax.Array, fill: float) -> jax.Array:
    """One image [H, W, C] of light strokes on a `fill` background made one pixel thicker (a
    2x2 grey dilation), one pixel thinner (a 2x2 erosion) or left as it is, each with
    probability 1/3."""
    h, w, _ = image.shape
    padded = jnp.pad(image, ((0, 1), (0, 1), (0, 0)), constant_values=fill)
    windows = jnp.stack([padded[dy : dy + h, dx : dx + w] for dy in (0, 1) for dx in (0, 1)])
    choice = jax.random.randint(rng, (), 0, 3)
    return jnp.select([choice == 0, choice == 1], [windows.max(axis=0), windows.min(axis=0)], image)
