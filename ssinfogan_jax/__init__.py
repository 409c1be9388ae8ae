"""Semi-supervised InfoGAN (Spurr, Aksan and Hilliges, 2017) in JAX/Flax.

Submodules load on first use, so `from ssinfogan_jax import latents, models, losses` stays
light (no TensorFlow); `train` (which holds the loop, and so the data pipeline) brings it in.
"""

import importlib

__all__ = [
    "checkpointing",
    "evaluation",
    "input_pipeline",
    "latents",
    "losses",
    "models",
    "parallel",
    "sampling",
    "train",
]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
