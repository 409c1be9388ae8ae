"""`digit_scenes`: a synthetic 32x32 RGB stand-in for SVHN and CelebA, rendered from MNIST glyphs.

Real SVHN and CelebA cannot be downloaded everywhere; this set is made offline from any
MNIST-format IDX folder and is hard for InfoGAN in the same ways: the digit sits in a scene of
coloured backgrounds and foregrounds with varying contrast, cropped neighbouring digits at the
left and right edges, small changes of scale and position, blur and pixel noise. Each example
also carries face-attribute-like binary labels and one continuous label, all drawn
independently of each other and of the digit:

    label            int   10 classes   the source glyph's digit
    dark_background  0/1   light (L in [0.60, 0.95]) or dark (L in [0.05, 0.35]) background
    warm_foreground  0/1   cool (cyan to blue) or warm (red to yellow) foreground hue
    thick_stroke     0/1   SUBTLE: the pen width normalised towards a thin or a thick target
                           (medians 1.9 and 3.5 glyph px by `pen_width`, about 1.8 px apart on
                           the 32x32 image, inside the range of natural MNIST pen widths, and
                           further softened by the blur): only a rim of pixels changes;
                           the thin pen is always one step thinner than the thick one, so a
                           bold stroke or a filled shape changes too
    neighbours       0/1   cropped neighbouring digits at both side edges, or none; a row
                           whose neighbours would miss the frame is drawn closer, until one
                           shows ink 1 output px inside it
    rotation         float32 degrees, uniform in [-30, 30], the scene's rotation as generated
                           (positive turns it clockwise on screen); every glyph is deskewed
                           first (`deskew`), so this is the angle the digit shows: MNIST's own
                           slant (std 15 degrees) would otherwise add to it unseen, and cap any
                           judge's correlation with it (near 0.85 in version 1.0.0)

Nuisances, independent of every label: background hue, saturation, lightness within its class
and a linear lighting gradient; foreground saturation and its contrast to the background; scale
(the 20 px MNIST digit becomes 20-25 px tall), position (+-2 px), the neighbours' digits,
spacing and height; Gaussian blur (sigma 0.3-0.9 px) and pixel noise (std 0-6% of the range).

Everything random about example i is a pure function of (seed, split, i, the glyph array): the
draws come from a counter-based hash, not a sequential generator, so any example (or any
slice) renders to the same bytes on its own: `render(glyphs, labels, seed, split, indices=[i])`.
The neighbours of example i are other glyphs of the same array (indices drawn by the hash);
they share the digit's pen and colour, and the whole row of digits turns with the rotation.

Every binary attribute changes every image it labels, whatever the glyphs are (strokes or
filled shapes): render a scene with it at 0 and at 1 (`render`'s `attributes`) and the two
images differ (tested on MNIST and on filled discs and squares 4-25 px across). Only a glyph
with no ink, or one that fills its whole 28x28 frame, shows no foreground to change.

Pure numpy; no TensorFlow. The tfds builder is `builders.DigitScenes` (tfds name
'digit_scenes'), which renders the source's train and test IDX files with BUILD_SEED.
"""

from __future__ import annotations

import zlib

import numpy as np

IMAGE_SHAPE = (32, 32, 3)
# Label name -> number of classes (0 = continuous), in the order of the table above.
LABELS = {
    "label": 10,
    "dark_background": 2,
    "warm_foreground": 2,
    "thick_stroke": 2,
    "neighbours": 2,
    "rotation": 0,
}
BINARY_ATTRIBUTES = ("dark_background", "warm_foreground", "thick_stroke", "neighbours")
SUBTLE_ATTRIBUTE = "thick_stroke"
ROTATION_RANGE = (-30.0, 30.0)  # degrees, uniform
# The sizes of the built tfds splits, which are those of the source (here: MNIST's).
SPLIT_SIZES = {"train": 60000, "test": 10000}
BUILD_SEED = 0  # The seed of the tfds build.
# The tfds version; a change of what `render` draws is a new version (and a judge of its own).
VERSION = "2.1.0"
RELEASE_NOTES = {
    "1.0.0": "First version.",
    "2.0.0": "Glyphs are deskewed before rendering: rotation is the angle the digit shows.",
    "2.1.0": "Every binary attribute changes every image: the thin pen is one step thinner "
    "than the thick one on bold glyphs too, and neighbours that would miss the frame are drawn "
    "closer. 1.9% of MNIST's scenes differ from 2.0.0 (1,321 of 70,000; 1,317 of them with "
    "neighbours).",
}

# Geometry (glyph pixels are 28x28; output pixels 32x32).
_GLYPH = 28
_OUT = IMAGE_SHAPE[0]
_SCALE_RANGE = (1.0, 1.25)  # output px per glyph px
_SHIFT = 2.0  # max translation, output px
_SPACING_RANGE = (17.0, 20.0)  # neighbour centre distance, glyph px
_NEIGHBOUR_DY = 2.0  # max vertical offset of a neighbour, glyph px
_NEIGHBOUR_DEPTH = 1.0  # least depth of a neighbour's ink inside the frame, output px
# Stroke: the pen width (glyph px) each class is normalised towards.
_THIN_WIDTH, _THICK_WIDTH = 2.0, 4.5
# Colour (lightness L is luma in [0, 1]).
_DARK_BG, _LIGHT_BG = (0.05, 0.35), (0.60, 0.95)
_CONTRAST = (0.3, 0.6)
_FG_L = (0.12, 0.88)
_WARM_HUE, _COOL_HUE = (-20.0, 50.0), (170.0, 250.0)  # degrees
_FG_SAT, _BG_SAT = (0.55, 1.0), (0.0, 0.6)
_GRADIENT = 0.12  # max lightness change across the image
_BLUR_SIGMA = (0.3, 0.9)
_NOISE_STD = (0.0, 0.06)
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
_CHUNK = 2048


# ----------------------------------------------------------------------------------------------
# Counter-based randomness: uniform numbers as a pure function of (seed, split, stream, index).


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on uint64 arrays (a bijection; wraps modulo 2**64)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _key(seed: int, split: str, stream: int) -> np.ndarray:
    parts = (seed % 2**64, zlib.crc32(split.encode()), stream)
    key = np.zeros(1, np.uint64)
    for part in parts:
        key = _mix(key ^ np.array([part], np.uint64))
    return key


def _bits(seed: int, split: str, stream: int, index: np.ndarray, extra: int = 0) -> np.ndarray:
    """uint64 [n] (or [n, extra] when extra > 0) random bits."""
    x = _mix(_key(seed, split, stream) ^ index.astype(np.uint64))
    if extra:
        x = _mix(x[:, None] ^ np.arange(extra, dtype=np.uint64)[None, :])
    return x


def _uniform(seed: int, split: str, stream: int, index: np.ndarray, extra: int = 0) -> np.ndarray:
    """float64 [n] (or [n, extra] when extra > 0) uniform in [0, 1)."""
    x = _bits(seed, split, stream, index, extra)
    return (x >> np.uint64(11)).astype(np.float64) * 2.0**-53


class _Draws:
    """Named per-example draws; each name is its own stream, so adding one changes no other."""

    def __init__(self, seed: int, split: str, index: np.ndarray):
        self.seed, self.split, self.index = seed, split, index

    def uniform(self, name: str, low: float = 0.0, high: float = 1.0, extra: int = 0):
        stream = zlib.crc32(name.encode())
        u = _uniform(self.seed, self.split, stream, self.index, extra)
        return (low + (high - low) * u).astype(np.float32)

    def noise(self, name: str, size: int) -> np.ndarray:
        """float32 [n, size] uniform in [-1, 1), 16 bits each (4 per 64-bit hash)."""
        words = _bits(self.seed, self.split, zlib.crc32(name.encode()), self.index, -(-size // 4))
        u16 = words.astype("<u8").view("<u2")[:, :size]  # the same on any byte order
        return u16.astype(np.float32) * np.float32(2.0 / 65536.0) - np.float32(1.0)

    def bernoulli(self, name: str) -> np.ndarray:
        return (self.uniform(name) < 0.5).astype(np.int64)


# ----------------------------------------------------------------------------------------------
# Strokes.


def _shift_stack(g: np.ndarray, fill: float) -> list[np.ndarray]:
    """g [n, H, W] and its 4 neighbours' values (plus-shaped structuring element)."""
    p = np.pad(g, ((0, 0), (1, 1), (1, 1)), constant_values=fill)
    return [g, p[:, :-2, 1:-1], p[:, 2:, 1:-1], p[:, 1:-1, :-2], p[:, 1:-1, 2:]]


def _dilate(g: np.ndarray) -> np.ndarray:
    return np.maximum.reduce(_shift_stack(g, 0.0))


def _erode(g: np.ndarray) -> np.ndarray:
    return np.minimum.reduce(_shift_stack(g, 1.0))


def pen_width(glyphs: np.ndarray) -> np.ndarray:
    """Estimated stroke width in pixels, float32 [n], of glyphs [n, H, W] in [0, 1].

    For a stroke of length l and width w, ink area ~ l w and outline ~ 2 l, so w ~ 2 area /
    outline, on the glyph thresholded at 0.5.
    """
    m = np.pad(glyphs > 0.5, ((0, 0), (1, 1), (1, 1)))
    area = m.sum(axis=(1, 2))
    outline = (m[:, 1:, :] != m[:, :-1, :]).sum(axis=(1, 2)) + (m[:, :, 1:] != m[:, :, :-1]).sum(
        axis=(1, 2)
    )
    return (2.0 * area / np.maximum(outline, 1)).astype(np.float32)


def _stroke_steps(glyphs: np.ndarray, thick: np.ndarray) -> np.ndarray:
    """int64 [n] plus-shaped dilations (> 0) or erosions (< 0), -2..2, that set glyphs [n, 28,
    28] to the class's pen width.

    Each step widens (narrows) a stroke by about 2 px; the number, -1..2, is the one that brings
    the glyph's own width closest to the target. The thin pen always takes one step fewer than
    the thick pen would: on glyphs wider than the thick target (bold strokes, filled shapes),
    where both would take one erosion, the thin pen takes two.
    """
    width = pen_width(glyphs)
    thick_steps = np.clip(np.round((_THICK_WIDTH - width) / 2.0), -1, 2)
    thin_steps = np.minimum(np.clip(np.round((_THIN_WIDTH - width) / 2.0), -1, 2), thick_steps - 1)
    return np.where(thick == 1, thick_steps, thin_steps).astype(np.int64)


def set_stroke(glyphs: np.ndarray, thick: np.ndarray) -> np.ndarray:
    """glyphs [n, 28, 28] float32 in [0, 1], their pen width moved towards the class's width
    (`_stroke_steps`). Thick and thin differ on every glyph that is not constant."""
    steps = _stroke_steps(glyphs, thick)
    out = glyphs
    for step in (-1, -2):
        if (steps <= step).any():
            out = np.where((steps <= step)[:, None, None], _erode(out), out)
    for step in (1, 2):
        if (steps >= step).any():
            out = np.where((steps >= step)[:, None, None], _dilate(out), out)
    return out


# ----------------------------------------------------------------------------------------------
# Geometry.


def bilinear(glyphs: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Samples glyphs [n, 28, 28] at glyph coordinates (u = x, v = y; pixel centres at k + 0.5)
    given as [n, P]; 0 outside. Returns [n, P]."""
    n = glyphs.shape[0]
    flat = np.pad(glyphs, ((0, 0), (1, 1), (1, 1))).reshape(n, -1)  # zero border
    x, y = u - 0.5 + 1.0, v - 0.5 + 1.0  # in padded pixel indices
    x = np.clip(x, 0.0, _GLYPH + 1.0)
    y = np.clip(y, 0.0, _GLYPH + 1.0)
    x0 = np.minimum(np.floor(x), _GLYPH).astype(np.int64)
    y0 = np.minimum(np.floor(y), _GLYPH).astype(np.int64)
    fx, fy = (x - x0).astype(np.float32), (y - y0).astype(np.float32)
    width = _GLYPH + 2
    i00 = y0 * width + x0

    def at(offset):
        return np.take_along_axis(flat, i00 + offset, axis=1)

    top = at(0) * (1 - fx) + at(1) * fx
    bottom = at(width) * (1 - fx) + at(width + 1) * fx
    return top * (1 - fy) + bottom * fy


def deskew(glyphs: np.ndarray) -> np.ndarray:
    """glyphs [n, 28, 28] in [0, 1] with the writer's slant sheared away and the ink's centre
    of mass moved to the glyph's centre.

    The slant is the regression of x on y over the ink, mu11 / mu02 from the second moments;
    each row is shifted by it times the row's height above the centre of mass.
    """
    n = glyphs.shape[0]
    coords = np.arange(_GLYPH, dtype=np.float32) + 0.5
    x, y = coords[None, None, :], coords[None, :, None]
    mass = np.maximum(glyphs.sum(axis=(1, 2)), 1e-6)
    cx = (glyphs * x).sum(axis=(1, 2)) / mass
    cy = (glyphs * y).sum(axis=(1, 2)) / mass
    dx, dy = x - cx[:, None, None], y - cy[:, None, None]
    mu11 = (glyphs * dx * dy).sum(axis=(1, 2)) / mass
    mu02 = (glyphs * dy * dy).sum(axis=(1, 2)) / mass
    slant = (mu11 / np.maximum(mu02, 1e-6))[:, None]
    half = _GLYPH / 2
    u = np.broadcast_to(x[0], (_GLYPH, _GLYPH)).reshape(1, -1)
    v = np.broadcast_to(y[0], (_GLYPH, _GLYPH)).reshape(1, -1)
    source_u = u + slant * (v - half) + (cx[:, None] - half)
    source_v = v + (cy[:, None] - half)
    return bilinear(glyphs, source_u, source_v).reshape(n, _GLYPH, _GLYPH)


def _spacing_cap(glyphs, side, angle, scale, shift, dy):
    """The largest spacing, float32 [n] (glyph px; -inf where none), at which some ink pixel
    (>= 0.5) of neighbour glyphs [n, 28, 28] on side -1 (left) or +1 (right) lands with its
    centre _NEIGHBOUR_DEPTH output px or more inside the frame; dy [n]: their vertical offsets.

    `_scene_alpha`'s map, forward: the neighbour's pixel (x, y) sits at (x + side * s, y + dy)
    in the row and lands at a + s v on the output (rotated, scaled, shifted); each bound of the
    frame, |a_j + s v_j| <= limit, holds on an interval of s.
    """
    n = glyphs.shape[0]
    coords = np.arange(_GLYPH, dtype=np.float32) + 0.5 - _GLYPH / 2
    x = np.broadcast_to(coords[None, :], (_GLYPH, _GLYPH)).reshape(1, -1)
    y = np.broadcast_to(coords[:, None], (_GLYPH, _GLYPH)).reshape(1, -1) + dy[:, None]
    theta = np.deg2rad(angle)[:, None]
    cos, sin, k = np.cos(theta), np.sin(theta), scale[:, None]
    a = (shift[:, :1] + k * (cos * x - sin * y), shift[:, 1:] + k * (sin * x + cos * y))
    v = (side * k * cos, side * k * sin)
    limit = _OUT / 2 - _NEIGHBOUR_DEPTH
    low, high = np.full(a[0].shape, -np.inf), np.full(a[0].shape, np.inf)
    for a_j, v_j in zip(a, v, strict=True):
        moving = np.abs(v_j) > 1e-6  # v_y is 0 at angle 0: then a_y must be inside already
        step = np.where(moving, v_j, 1.0)
        ends = ((-limit - a_j) / step, (limit - a_j) / step)
        low = np.where(moving, np.maximum(low, np.minimum(*ends)), low)
        high = np.where(moving, np.minimum(high, np.maximum(*ends)), high)
        high = np.where(moving | (np.abs(a_j) <= limit), high, -np.inf)
    reachable = (glyphs.reshape(n, -1) >= 0.5) & (low <= high)
    return np.where(reachable, high, -np.inf).max(axis=1).astype(np.float32)


def _scene_alpha(centre, left, right, has_neighbours, angle, scale, shift, spacing, dy):
    """Foreground coverage float32 [n, 32, 32] of the (rotated, scaled, shifted) digit row."""
    n = centre.shape[0]
    coords = np.arange(_OUT, dtype=np.float32) + 0.5 - _OUT / 2
    qx = np.broadcast_to(coords[None, :], (_OUT, _OUT)).reshape(1, -1) - shift[:, :1]
    qy = np.broadcast_to(coords[:, None], (_OUT, _OUT)).reshape(1, -1) - shift[:, 1:]
    theta = np.deg2rad(angle)[:, None]
    cos, sin = np.cos(theta), np.sin(theta)
    # Inverse map: output offset -> glyph offset (rotate by -angle, divide by the scale).
    px = (cos * qx + sin * qy) / scale[:, None]
    py = (-sin * qx + cos * qy) / scale[:, None]
    half = _GLYPH / 2
    alpha = bilinear(centre, px + half, py + half)
    idx = np.flatnonzero(has_neighbours)
    if idx.size:
        s, d = spacing[idx, None], dy[idx]
        pxi, pyi = px[idx], py[idx]
        side_left = bilinear(left[idx], pxi + s + half, pyi - d[:, :1] + half)
        side_right = bilinear(right[idx], pxi - s + half, pyi - d[:, 1:] + half)
        alpha[idx] = np.maximum(alpha[idx], np.maximum(side_left, side_right))
    return alpha.reshape(n, _OUT, _OUT)


# ----------------------------------------------------------------------------------------------
# Colour.


def _colour(hue_deg: np.ndarray, sat: np.ndarray, light: np.ndarray) -> np.ndarray:
    """RGB float32 [n, 3] of the given hue (degrees), saturation in [0, 1] (as a fraction of the
    most chroma that fits) and lightness (luma) in [0, 1]."""
    h = (hue_deg[:, None] / 60.0) % 6.0
    pure = np.clip(np.abs((h + np.array([0.0, 4.0, 2.0])) % 6.0 - 3.0) - 1.0, 0.0, 1.0)
    chroma = pure - (pure @ _LUMA)[:, None]  # zero-luma direction of that hue
    light = light[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        room = np.where(
            chroma > 0, (1.0 - light) / chroma, np.where(chroma < 0, -light / chroma, 9)
        )
    most = np.min(room, axis=1, keepdims=True)
    return (light + sat[:, None] * most * chroma).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Blur.


def _blur(images: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Per-example separable Gaussian blur (5 taps) of images [n, H, W, C]."""
    taps = np.arange(-2, 3, dtype=np.float32)
    w = np.exp(-0.5 * (taps[None, :] / sigma[:, None]) ** 2)
    w = (w / w.sum(axis=1, keepdims=True))[:, :, None, None, None]
    p = np.pad(images, ((0, 0), (2, 2), (0, 0), (0, 0)), mode="edge")
    images = sum(w[:, k] * p[:, k : k + _OUT] for k in range(5))
    p = np.pad(images, ((0, 0), (0, 0), (2, 2), (0, 0)), mode="edge")
    return sum(w[:, k] * p[:, :, k : k + _OUT] for k in range(5))


# ----------------------------------------------------------------------------------------------
# Rendering.


def _render_chunk(glyphs01, labels, seed, split, index, forced):
    n_src = glyphs01.shape[0]
    r = _Draws(seed, split, index)
    out = {
        "label": labels[index].astype(np.int64),
        **{name: r.bernoulli(name) for name in BINARY_ATTRIBUTES},
        "rotation": r.uniform("rotation", *ROTATION_RANGE),
    }
    out.update(forced)
    n = index.size
    # Glyphs: the example's own and two neighbours (other glyphs of the same array), one pen.
    left = np.minimum((r.uniform("left_glyph") * n_src).astype(np.int64), n_src - 1)
    right = np.minimum((r.uniform("right_glyph") * n_src).astype(np.int64), n_src - 1)
    has_nb = out["neighbours"] == 1
    thick = out["thick_stroke"]
    centre = set_stroke(deskew(glyphs01[index]), thick)
    nb = np.zeros((n, _GLYPH, _GLYPH), np.float32)
    left_g, right_g = nb, nb
    if has_nb.any():
        left_g, right_g = nb.copy(), nb.copy()
        left_g[has_nb] = set_stroke(deskew(glyphs01[left[has_nb]]), thick[has_nb])
        right_g[has_nb] = set_stroke(deskew(glyphs01[right[has_nb]]), thick[has_nb])
    angle, scale = out["rotation"], r.uniform("scale", *_SCALE_RANGE)
    shift = r.uniform("shift", -_SHIFT, _SHIFT, extra=2)
    spacing = r.uniform("spacing", *_SPACING_RANGE)
    dy = r.uniform("neighbour_dy", -_NEIGHBOUR_DY, _NEIGHBOUR_DY, extra=2)
    if has_nb.any():
        # Neighbours that would fall outside the frame come in until one of them shows.
        at = (angle[has_nb], scale[has_nb], shift[has_nb])
        cap = np.maximum(
            _spacing_cap(left_g[has_nb], -1, *at, dy[has_nb, 0]),
            _spacing_cap(right_g[has_nb], 1, *at, dy[has_nb, 1]),
        )
        spacing = spacing.copy()
        spacing[has_nb] = np.where(
            np.isfinite(cap), np.minimum(spacing[has_nb], cap), spacing[has_nb]
        )
    alpha = _scene_alpha(centre, left_g, right_g, has_nb, angle, scale, shift, spacing, dy)
    # Colours: background lightness by class, foreground lightness at a random contrast.
    dark = out["dark_background"] == 1
    bg_l = np.where(
        dark,
        r.uniform("bg_dark", *_DARK_BG),
        r.uniform("bg_light", *_LIGHT_BG),
    )
    contrast = r.uniform("contrast", *_CONTRAST)
    fg_l = np.clip(np.where(dark, bg_l + contrast, bg_l - contrast), *_FG_L)
    warm = out["warm_foreground"] == 1
    fg_hue = np.where(warm, r.uniform("warm_hue", *_WARM_HUE), r.uniform("cool_hue", *_COOL_HUE))
    fg = _colour(fg_hue, r.uniform("fg_sat", *_FG_SAT), fg_l)
    bg = _colour(r.uniform("bg_hue", 0.0, 360.0), r.uniform("bg_sat", *_BG_SAT), bg_l)
    # A linear lighting gradient across the background, in a random direction.
    direction = np.deg2rad(r.uniform("gradient_direction", 0.0, 360.0))
    strength = r.uniform("gradient", 0.0, _GRADIENT)
    ramp = (np.arange(_OUT, dtype=np.float32) + 0.5) / _OUT - 0.5
    ramp2d = (
        np.cos(direction)[:, None, None] * ramp[None, None, :]
        + np.sin(direction)[:, None, None] * ramp[None, :, None]
    )
    background = bg[:, None, None, :] + (strength[:, None, None] * ramp2d)[..., None]
    a = alpha[..., None]
    images = background * (1.0 - a) + fg[:, None, None, :] * a
    images = _blur(images.astype(np.float32), r.uniform("blur", *_BLUR_SIGMA))
    noise_std = r.uniform("noise_std", *_NOISE_STD)
    noise = r.noise("noise", _OUT * _OUT * 3).reshape(images.shape)
    images = images + noise * (np.sqrt(3.0) * noise_std)[:, None, None, None]  # uniform, std
    out["image"] = np.round(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)
    return out


def render(
    glyphs: np.ndarray,
    labels: np.ndarray,
    seed: int,
    split: str,
    indices: np.ndarray | None = None,
    attributes: dict[str, int | np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Renders digit scenes from MNIST-format glyphs.

    Args:
      glyphs: uint8 [N, 28, 28], white ink on black (the IDX layout).
      labels: int [N], the glyphs' digits.
      seed: the data set's seed.
      split: the split's name ('train', 'test'); part of every example's seed.
      indices: which examples to render (default: all N); example i renders to the same bytes
        whichever other examples are rendered with it.
      attributes: binary attributes to set instead of drawing them, name -> 0 or 1 (every
        example) or int [n] (one per rendered example). Every other draw of an example stays
        the same, so `attributes={"thick_stroke": 0}` and `{"thick_stroke": 1}` render the
        same scenes with a thin and a thick pen (the pair differs on every image).

    Returns:
      image uint8 [n, 32, 32, 3]; label int64 [n]; dark_background, warm_foreground,
      thick_stroke, neighbours int64 [n] in {0, 1}; rotation float32 [n] (degrees).
    """
    glyphs = np.asarray(glyphs)
    labels = np.asarray(labels)
    if glyphs.ndim != 3 or glyphs.shape[1:] != (_GLYPH, _GLYPH) or glyphs.dtype != np.uint8:
        raise ValueError(f"glyphs: want uint8 [N, 28, 28], got {glyphs.dtype} {glyphs.shape}")
    if labels.shape != glyphs.shape[:1]:
        raise ValueError(f"labels: want [{glyphs.shape[0]}], got {labels.shape}")
    n_src = glyphs.shape[0]
    indices = np.arange(n_src) if indices is None else np.asarray(indices, np.int64).reshape(-1)
    if indices.size and (indices.min() < 0 or indices.max() >= n_src):
        raise ValueError(f"indices: must lie in [0, {n_src})")
    forced = {}
    for name, value in (attributes or {}).items():
        value = np.asarray(value)
        if name not in BINARY_ATTRIBUTES:
            raise ValueError(f"attributes: {name!r} is not one of {BINARY_ATTRIBUTES}")
        if (
            value.ndim > 1
            or value.size not in (1, indices.size)
            or not np.isin(value, (0, 1)).all()
        ):
            raise ValueError(f"attributes[{name!r}]: want 0, 1 or [{indices.size}] of them")
        forced[name] = np.broadcast_to(value.astype(np.int64).reshape(-1), indices.shape)
    glyphs01 = glyphs.astype(np.float32) / 255.0
    chunks = [
        _render_chunk(
            glyphs01,
            labels,
            seed,
            split,
            indices[i : i + _CHUNK],
            {name: value[i : i + _CHUNK].copy() for name, value in forced.items()},
        )
        for i in range(0, max(indices.size, 1), _CHUNK)
    ]
    return {key: np.concatenate([c[key] for c in chunks]) for key in chunks[0]}
