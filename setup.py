"""ssinfogan_jax: semi-supervised InfoGAN (Spurr, Aksan and Hilliges, 2017) in JAX/Flax."""

import setuptools

# Versions measured to install and work together on Python 3.11 (2026-11).
INSTALL_REQUIRES = [
    "absl-py==2.5.1",
    "chex==0.1.92",
    "clu==0.0.12",
    "flax==0.12.8",
    "importlib_resources==7.1.0",  # tfds 4.9.10 needs it to prepare data on 3.11.
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "ml-collections==1.1.0",
    "numpy==2.4.6",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "pillow==13.0.0",
    "scikit-learn==1.9.1",  # the bundled 8x8 digits: the offline default data set.
    "scipy==1.17.1",
    "tensorboard==2.21.0",
    "tensorflow-cpu==2.21.0",  # tfds.load needs TensorFlow; the CPU build leaves GPUs to JAX.
    "tensorflow-datasets==4.9.10",
]

setuptools.setup(
    name="ssinfogan_jax",
    version="0.1.0",
    description="Semi-supervised InfoGAN (ss-InfoGAN) in JAX/Flax.",
    packages=setuptools.find_packages(include=["ssinfogan_jax", "ssinfogan_jax.*", "configs"]),
    python_requires=">=3.11",
    install_requires=INSTALL_REQUIRES,
    extras_require={
        "test": ["pytest==9.2.0", "ruff==0.17.6"],
        "benchmark": ["torch==2.13.0", "matplotlib==3.11.2"],
    },
)
