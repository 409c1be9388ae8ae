"""Imports TensorFlow and tfds with every GPU hidden from TF (JAX owns the accelerators)."""

import tensorflow as tf
import tensorflow_datasets as tfds

tf.config.experimental.set_visible_devices([], "GPU")

__all__ = ["tf", "tfds"]
