"""A captioned grid of the synthetic `digit_scenes` set, for the README.

  python -m benchmarks.digit_scenes_picture --raw_dir=../shared/data/mnist \
      --out=benchmarks/results/digit_scenes.png

Renders the first rows x cols examples of the split exactly as the tfds build does
(digit_scenes.BUILD_SEED; example i of the picture is example i of the built split), each
enlarged, with its labels under it: the digit and the rotation (degrees, clockwise +), then one
letter per binary attribute, upper case when it is 1 (see the legend at the bottom).
"""

from __future__ import annotations

import numpy as np
from absl import app, flags
from PIL import Image, ImageDraw, ImageFont

from ssinfogan_jax.data import builders, digit_scenes

_RAW_DIR = flags.DEFINE_string("raw_dir", "../shared/data/mnist", "MNIST-format IDX folder.")
_OUT = flags.DEFINE_string("out", "benchmarks/results/digit_scenes.png", "Output PNG.")
_SPLIT = flags.DEFINE_enum("split", "test", ["train", "test"], "Which split to show.")
_ROWS = flags.DEFINE_integer("rows", 8, "Grid rows.")
_COLS = flags.DEFINE_integer("cols", 12, "Grid columns.")
_ZOOM = flags.DEFINE_integer("zoom", 3, "Enlargement of each 32x32 image (nearest pixel).")

# One letter per binary attribute: upper case = 1, lower case = 0.
LETTERS = {
    "dark_background": ("d", "dark / light background"),
    "warm_foreground": ("w", "warm / cool foreground"),
    "thick_stroke": ("t", "thick / thin stroke (the subtle one)"),
    "neighbours": ("n", "neighbours / none"),
}


def caption(scenes: dict[str, np.ndarray], i: int) -> tuple[str, str]:
    flags_line = " ".join(
        letter.upper() if scenes[name][i] else letter for name, (letter, _) in LETTERS.items()
    )
    return f"{scenes['label'][i]}  {scenes['rotation'][i]:+.0f}°", flags_line


def picture(scenes: dict[str, np.ndarray], rows: int, cols: int, zoom: int) -> Image.Image:
    size = digit_scenes.IMAGE_SHAPE[0] * zoom
    font = ImageFont.load_default(size=13)
    legend_font = ImageFont.load_default(size=14)
    text_h, pad = 34, 6
    cell_w, cell_h = size + pad, size + text_h + pad
    legend = [
        "digit_scenes (synthetic, rendered from MNIST): under each image, its digit and "
        "rotation, then",
        "  "
        + ";  ".join(f"{letter.upper()}/{letter} {words}" for letter, words in LETTERS.values()),
    ]
    width, height = cols * cell_w + pad, rows * cell_h + pad + 22 * len(legend) + pad
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for i in range(rows * cols):
        r, c = divmod(i, cols)
        x, y = pad + c * cell_w, pad + r * cell_h
        tile = Image.fromarray(scenes["image"][i]).resize((size, size), Image.NEAREST)
        canvas.paste(tile, (x, y))
        first, second = caption(scenes, i)
        draw.text((x + 2, y + size + 2), first, fill="black", font=font)
        draw.text((x + 2, y + size + 17), second, fill="black", font=font)
    for k, line in enumerate(legend):
        draw.text((pad, rows * cell_h + pad + 22 * k), line, fill="black", font=legend_font)
    return canvas


def main(argv):
    del argv
    rows, cols = _ROWS.value, _COLS.value
    glyphs = builders.read_idx(_RAW_DIR.value, f"{_SPLIT.value}_images")
    labels = builders.read_idx(_RAW_DIR.value, f"{_SPLIT.value}_labels")
    scenes = digit_scenes.render(
        glyphs, labels, digit_scenes.BUILD_SEED, _SPLIT.value, indices=np.arange(rows * cols)
    )
    picture(scenes, rows, cols, _ZOOM.value).save(_OUT.value)
    print(f"wrote {_OUT.value}")


if __name__ == "__main__":
    app.run(main)
