"""Generation from a trained G: class-conditional samples and traversal grids.

Sample mode (main.py --mode=sample) restores a checkpoint and calls `write_samples`, which
writes, under <workdir>/samples/:
  samples.npz      images float32 [N, H, W, C] in the data's range, one array of code
                   values per code (int32 [N] categorical, float32 [N, size] continuous),
                   and the index of what each sample shows: `varied_code` (str [N], the
                   categorical c_ss code set per block) and `varied_value` (int32 [N], its
                   value), `value_name` (str [N], the class's name where the data names it)
  <code>.png       one row per value of each supervised code (`per_value` columns), each row
                   labelled on the image with its class name (or value)
  traversal_<code>[_<dim>].png   one code varied along columns (each headed by its value),
                   the rest fixed per row
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from ssinfogan_jax import fileio
from ssinfogan_jax import latents as latents_lib
from ssinfogan_jax.evaluation import batching
from ssinfogan_jax.evaluation import images as images_lib

GenerateFn = Callable[[latents_lib.Latents], np.ndarray]


def make_generate_fn(
    generator: nn.Module, layout: latents_lib.LatentLayout, batch_size: int = 256
) -> Callable[[Any], GenerateFn]:
    """G's variables -> (latents -> images as numpy), G in eval mode (batch-norm running
    statistics).

    The variables are an argument of one jitted function, so new parameters (a later
    evaluation) reuse its compiled program. Large requests run in chunks of `batch_size`.
    """

    @jax.jit
    def generate(variables, latents: latents_lib.Latents) -> jax.Array:
        return generator.apply(variables, latents_lib.generator_input(layout, latents), train=False)

    def bind(variables) -> GenerateFn:
        def run(latents: latents_lib.Latents) -> np.ndarray:
            return batching.batched_apply(lambda x: generate(variables, x), latents, batch_size)

        return run

    return bind


def conditional_latents(
    rng: jax.Array, layout: latents_lib.LatentLayout, code: latents_lib.Code, per_value: int
) -> latents_lib.Latents:
    """`per_value` latents for each class of a categorical code, value-major: [k * per_value]."""
    return latents_lib.concatenate(
        latents_lib.conditional_latents(rng, layout, code.name, per_value)
    )


def write_samples(
    generate: GenerateFn,
    layout: latents_lib.LatentLayout,
    rng: jax.Array,
    out_dir: str,
    image_range: tuple[float, float],
    per_value: int = 10,
    traversal_rows: int = 8,
    traversal_values: int = 10,
    class_names: dict[str, list[str]] | None = None,
) -> dict[str, str]:
    """Writes samples.npz and the PNG grids into `out_dir` (local or gs://); returns {what:
    path}. `class_names`: {label: names in class order}, for the rows' labels and the index."""
    written: dict[str, str] = {}
    all_latents, all_images = [], []
    varied_code, varied_value, value_name = [], [], []
    for i, code in enumerate(layout.supervised_codes):
        if not code.categorical:
            continue
        latents = conditional_latents(jax.random.fold_in(rng, i), layout, code, per_value)
        images = generate(latents)
        all_latents.append(latents)
        all_images.append(images)
        names = _names(code, class_names)
        values = np.repeat(np.arange(code.size), per_value)  # Value-major blocks.
        varied_code += [code.name] * len(values)
        varied_value += values.tolist()
        value_name += [names[v] for v in values]
        path = os.path.join(out_dir, f"{code.name}.png")
        grid = images_lib.make_grid(images, rows=code.size, value_range=image_range)
        images_lib.save_image(path, images_lib.with_labels(grid, images.shape[1:3], rows=names))
        written[code.name] = path
    if not all_latents:  # No categorical supervised code: plain samples.
        latents = latents_lib.sample(rng, layout, per_value * per_value)
        all_latents, all_images = [latents], [generate(latents)]
        varied_code = [""] * per_value * per_value
        varied_value, value_name = [-1] * len(varied_code), [""] * len(varied_code)
    arrays = {"images": np.concatenate(all_images).astype(np.float32)}
    for name in all_latents[0]:
        arrays[name] = np.concatenate([np.asarray(la[name]) for la in all_latents])
    arrays["varied_code"] = np.asarray(varied_code, dtype=str)
    arrays["varied_value"] = np.asarray(varied_value, np.int32)
    arrays["value_name"] = np.asarray(value_name, dtype=str)
    written["samples"] = os.path.join(out_dir, "samples.npz")
    npz = io.BytesIO()
    np.savez(npz, **arrays)
    fileio.write_bytes(written["samples"], npz.getvalue())

    traversal_rng = jax.random.fold_in(rng, 1_000)
    for code in layout.codes:
        for dim in range(1 if code.categorical else code.size):
            latents, values = latents_lib.traversal(
                traversal_rng,
                layout,
                code.name,
                traversal_rows,
                None if code.categorical else traversal_values,
                dim=dim,
            )
            suffix = "" if code.categorical else f"_{dim}"
            path = os.path.join(out_dir, f"traversal_{code.name}{suffix}.png")
            images = generate(latents)
            grid = images_lib.make_grid(images, rows=traversal_rows, value_range=image_range)
            if code.categorical:
                heads = [_names(code, class_names)[int(v)] for v in values]
            else:
                heads = images_lib.value_labels(values)
            grid = images_lib.with_labels(grid, images.shape[1:3], cols=heads)
            images_lib.save_image(path, grid)
            written[f"traversal_{code.name}{suffix}"] = path
    return written


def _names(code: latents_lib.Code, class_names: dict[str, list[str]] | None) -> list[str]:
    """The names of a categorical code's values: the data's class names, else the values."""
    names = (class_names or {}).get(code.label) if code.label else None
    if names and len(names) == code.size:
        return [str(n) for n in names]
    return [str(k) for k in range(code.size)]
