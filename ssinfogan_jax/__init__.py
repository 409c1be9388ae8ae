"""Semi-supervised InfoGAN (Spurr, Aksan and Hilliges, 2017) in JAX/Flax."""

from ssinfogan_jax import latents, losses, models, train

__all__ = ["latents", "losses", "models", "train"]
