"""Semi-supervised InfoGAN (Spurr, Aksan and Hilliges, 2017) in JAX/Flax.

Submodules load on first use. `latents`, `models`, `losses`, `experiment`, `train` and
`parallel` (the maths and the pure step) stay light: no TensorFlow. `input_pipeline` and `loop`
(the data and the training loop) bring it in.
"""

import importlib

__all__ = [
    "checkpointing",
    "config_checks",
    "evaluation",
    "experiment",
    "fileio",
    "input_pipeline",
    "latents",
    "loop",
    "losses",
    "models",
    "parallel",
    "train",
]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
