"""Data internals: offline tfds builders, the labelled subset, the batch sampler.

The public entry point is `ssinfogan_jax.input_pipeline`; these modules are its parts.
"""
