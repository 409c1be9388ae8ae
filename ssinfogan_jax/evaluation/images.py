"""Image grids for sample and traversal figures: uint8 arrays and PNG files (pillow)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from ssinfogan_jax import fileio


def to_uint8(images: np.ndarray, value_range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """Maps images in `value_range` (lo -> 0, hi -> 255, clipped, rounded) to uint8, same shape."""
    lo, hi = value_range
    if not hi > lo:
        raise ValueError(f"value_range: expected lo < hi, got {value_range}")
    scaled = (np.asarray(images, np.float64) - lo) * (255.0 / (hi - lo))
    return np.rint(np.clip(scaled, 0.0, 255.0)).astype(np.uint8)


def make_grid(
    images: np.ndarray,
    rows: int | None = None,
    cols: int | None = None,
    value_range: tuple[float, float] = (0.0, 1.0),
    padding: int = 2,
    pad_value: int = 255,
    scale: int = 1,
) -> np.ndarray:
    """Tiles images into one uint8 picture.

    Args:
      images: [N, H, W, C] (C = 1 or 3), or [rows, cols, H, W, C] (e.g. [code value, sample]
        from a traversal or conditional samples), float in `value_range` or already uint8.
      rows, cols: grid shape (row-major: image i goes to row i // cols, column i % cols); one
        may be left None and is then derived from N; N < rows * cols leaves blank cells.
      value_range: the float images' range, mapped to 0..255 (ignored for uint8 input).
      padding: pixels of `pad_value` around and between cells.
      pad_value: 0..255.
      scale: integer nearest-neighbour upscaling of the finished grid.

    Returns:
      uint8 [rows * (H + padding) + padding, cols * (W + padding) + padding, C] times `scale`;
      cell (r, c)'s top-left pixel is at (padding + r * (H + padding), padding + c * (W + padding)).
    """
    images = np.asarray(images)
    if images.ndim == 5:
        if rows is None and cols is None:
            rows, cols = images.shape[:2]
        images = images.reshape(-1, *images.shape[2:])
    if images.ndim != 4:
        raise ValueError(f"images: expected [N, H, W, C] or [R, C, H, W, C], got {images.shape}")
    n, h, w, c = images.shape
    if rows is None and cols is None:
        cols = int(np.ceil(np.sqrt(n)))
    if rows is None:
        rows = -(-n // cols)
    if cols is None:
        cols = -(-n // rows)
    if n > rows * cols:
        raise ValueError(f"{n} images do not fit a {rows} x {cols} grid")
    pixels = images if images.dtype == np.uint8 else to_uint8(images, value_range)
    grid = np.full(
        (rows * (h + padding) + padding, cols * (w + padding) + padding, c), pad_value, np.uint8
    )
    for i in range(n):
        top, left = padding + (i // cols) * (h + padding), padding + (i % cols) * (w + padding)
        grid[top : top + h, left : left + w] = pixels[i]
    if scale > 1:
        grid = np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)
    return grid


def save_image(path: str, image: np.ndarray) -> str:
    """Writes a uint8 [H, W, 1 or 3] array as a PNG (grayscale or RGB) to a local or gs://
    path, making its folder; returns the path."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ValueError(f"image: expected uint8 [H, W, 1 or 3], got {image.dtype} {image.shape}")
    # uint8 [H, W] -> mode L, [H, W, 3] -> RGB; encoded in memory, written whole (or gs://).
    png = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(png, format="PNG")
    fileio.write_bytes(path, png.getvalue())
    return path


def save_grid(path: str, images: np.ndarray, **grid_kwargs) -> np.ndarray:
    """`make_grid(images, **grid_kwargs)` written to `path` as a PNG; returns the grid."""
    grid = make_grid(images, **grid_kwargs)
    save_image(path, grid)
    return grid


def with_labels(
    grid: np.ndarray,
    cell_shape: tuple[int, int],
    *,
    rows: list[str] | None = None,
    cols: list[str] | None = None,
    padding: int = 2,
) -> np.ndarray:
    """`grid` (uint8 [H, W, C], `make_grid`'s with `padding`) with its row labels drawn in a
    white margin on the left and its column labels in a band on top (black text, pillow's
    default font), so a picture says what each row or column is.

    Args:
      cell_shape: (height, width) of one cell of the grid.
      rows, cols: one label per row / column, or None for none.
    """
    from PIL import ImageDraw, ImageFont

    font = ImageFont.load_default()
    h, w = cell_shape
    text_h = 11  # The default bitmap font's line height.

    def width(text: str) -> int:
        left, _, right, _ = font.getbbox(text)
        return right - left

    left = max((width(t) for t in rows), default=0) + 2 * padding if rows else 0
    top = text_h + 2 * padding if cols else 0
    out = np.full((grid.shape[0] + top, grid.shape[1] + left, grid.shape[2]), 255, np.uint8)
    out[top:, left:] = grid
    image = Image.fromarray(out[..., 0] if out.shape[-1] == 1 else out)
    draw = ImageDraw.Draw(image)
    for r, text in enumerate(rows or []):
        y = top + padding + r * (h + padding) + max((h - text_h) // 2, 0)
        draw.text((padding, y), text, fill=0 if image.mode == "L" else (0, 0, 0), font=font)
    for c, text in enumerate(cols or []):
        x = left + padding + c * (w + padding) + max((w - width(text)) // 2, 0)
        draw.text((x, padding), text, fill=0 if image.mode == "L" else (0, 0, 0), font=font)
    drawn = np.asarray(image, np.uint8)
    return drawn[..., None] if drawn.ndim == 2 else drawn


def value_labels(values: np.ndarray) -> list[str]:
    """Short labels of a code's values: integers as they are, floats with 1 decimal."""
    values = np.asarray(values)
    if np.issubdtype(values.dtype, np.integer):
        return [str(int(v)) for v in values]
    return [f"{float(v):+.1f}" for v in values]
