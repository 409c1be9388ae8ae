r"""A small example of your own images: coloured shapes, a CSV with some labels filled in.

    python -m ssinfogan_jax.data.make_example_folder --out=/tmp/shapes [--num_images=2000]
    python -m ssinfogan_jax.data.make_example_folder --out=/tmp/shapes64 --size=64x64

Writes <out>/images/NNNNN.png (RGB, 48 wide and 40 high by default: not the network's shape, so
the conversion crops and resizes; `--size=WxH` draws them at another size, the shapes scaled
with it) and <out>/labels.csv with the columns

    file             images/00000.png, ...
    shape            circle / square / triangle           (a categorical label, class names)
    filled           true / false                         (a binary label)
    size             the shape's radius in pixels, 6..16 at 48x40 (a continuous label)

Each label cell is filled independently (by default 20% of `shape`, 10% of `filled`, 10% of
`size`), so many images carry one label but not another, and most carry none.
"""

from __future__ import annotations

import csv
import os
import sys

import numpy as np

SHAPES = ("circle", "square", "triangle")
SIZE = (48, 40)  # (width, height) of each PNG by default
SHARES = {"shape": 0.2, "filled": 0.1, "size": 0.1}


def draw(
    shape: str, filled: bool, radius: float, colour, background, centre, size=SIZE
) -> np.ndarray:
    """One uint8 [height, width, 3] image of a shape; `size` is (width, height)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", tuple(size), tuple(int(c) for c in background))
    pen = ImageDraw.Draw(image)
    x, y = centre
    box = (x - radius, y - radius, x + radius, y + radius)
    style = dict(fill=tuple(int(c) for c in colour)) if filled else {}
    line = max(round(2 * min(size[0] / SIZE[0], size[1] / SIZE[1])), 1)
    outline = dict(outline=tuple(int(c) for c in colour), width=line)
    if shape == "circle":
        pen.ellipse(box, **style, **outline)
    elif shape == "square":
        pen.rectangle(box, **style, **outline)
    else:
        points = [(x, y - radius), (x + radius, y + radius), (x - radius, y + radius)]
        pen.polygon(points, **style, **outline)
    return np.asarray(image)


def make_folder(
    out: str,
    num_images: int = 2000,
    seed: int = 0,
    shares: dict | None = None,
    size: tuple[int, int] = SIZE,
) -> str:
    """Writes the images (`size` = (width, height)) and labels.csv into `out`; returns the
    CSV's path. The same seed draws the same shapes at every size, scaled with the image."""
    from PIL import Image

    shares = SHARES if shares is None else shares
    width, height = size
    scale = min(width / SIZE[0], height / SIZE[1])
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    rows = []
    for i in range(num_images):
        shape = SHAPES[rng.integers(len(SHAPES))]
        filled = bool(rng.integers(2))
        radius = float(rng.uniform(6, 16)) * scale
        colour = rng.integers(128, 256, 3)
        background = rng.integers(0, 64, 3)
        centre = (
            width / 2 + rng.uniform(-3, 3) * scale,
            height / 2 + rng.uniform(-3, 3) * scale,
        )
        name = f"images/{i:05d}.png"
        image = draw(shape, filled, radius, colour, background, centre, size)
        Image.fromarray(image).save(os.path.join(out, name))
        values = {"shape": shape, "filled": str(filled).lower(), "size": f"{radius:.2f}"}
        keep = {k: rng.random() < shares.get(k, 0.0) for k in values}
        rows.append([name] + [values[k] if keep[k] else "" for k in values])
    path = os.path.join(out, "labels.csv")
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "shape", "filled", "size"])
        writer.writerows(rows)
    return path


def parse_size(text: str) -> tuple[int, int]:
    """'64x64' -> (64, 64): (width, height); raises ValueError with what is expected."""
    width, sep, height = text.lower().partition("x")
    if not (sep and width.isdigit() and height.isdigit() and int(width) and int(height)):
        raise ValueError(f"--size={text!r}: expected WIDTHxHEIGHT in pixels, e.g. 64x64")
    return int(width), int(height)


def main(argv):
    del argv
    from absl import flags

    try:
        size = parse_size(flags.FLAGS.size)
    except ValueError as e:
        print(f"FATAL {e}", file=sys.stderr)
        sys.exit(2)
    path = make_folder(flags.FLAGS.out, flags.FLAGS.num_images, flags.FLAGS.seed, size=size)
    with open(path) as f:
        rows = list(csv.DictReader(f))
    filled = {k: sum(1 for r in rows if r[k]) for k in ("shape", "filled", "size")}
    print(f"Wrote {len(rows)} images and {path}; filled cells per label: {filled}")


if __name__ == "__main__":
    from absl import app, flags

    flags.DEFINE_string("out", None, "Folder to write into.")
    flags.DEFINE_integer("num_images", 2000, "Images to draw.")
    flags.DEFINE_integer("seed", 0, "Random seed.")
    flags.DEFINE_string("size", f"{SIZE[0]}x{SIZE[1]}", "WIDTHxHEIGHT of each image.")
    flags.mark_flag_as_required("out")
    app.run(main)
