"""ssinfogan_jax: semi-supervised InfoGAN (Spurr, Aksan and Hilliges, 2017) in JAX/Flax.

Requirements are ranges, so that the library installs next to a researcher's own pins. Lower
bounds are the versions CI tests (`constraints.txt` holds the exact set, for CI and the
README's commands), except numpy and scipy, whose floors are jax 0.10.2's own (the code uses
only their long-stable APIs). Upper bounds only where a known break exists (none today).
`benchmarks/tools/install_check.py` checks that this resolves on Linux x86-64 and aarch64 and on
macOS arm64.
"""

import setuptools

# TensorFlow is needed by tfds to prepare and read data sets. `tensorflow-cpu` leaves the GPUs to
# JAX but has wheels for Linux x86-64 only; elsewhere (Linux aarch64, macOS arm64) the plain
# `tensorflow` wheel is the CPU build anyway.
_TF_CPU_PLATFORM = 'sys_platform == "linux" and platform_machine == "x86_64"'
_TF_ELSEWHERE = 'sys_platform != "linux" or platform_machine != "x86_64"'  # (PEP 508 has no `not`)

INSTALL_REQUIRES = [
    "absl-py>=2.5.1",
    "clu>=0.0.12",
    "etils[epath]>=1.15.0",
    "flax>=0.12.8",
    "importlib_resources>=7.1.0",  # tfds 4.9.10 needs it to prepare data but does not declare it.
    "jax>=0.10.2",
    "jaxlib>=0.10.2",
    "ml-collections>=1.1.0",
    "numpy>=2.0",
    "optax>=0.2.8",
    "orbax-checkpoint>=0.12.8",
    "pillow>=13.0.0",
    "scikit-learn>=1.9.1",  # the bundled 8x8 digits: the offline default data set.
    "scipy>=1.14",
    "tensorboard>=2.21.0",  # clu's summary writer; TensorBoard to read them.
    f"tensorflow-cpu>=2.21.0; {_TF_CPU_PLATFORM}",
    f"tensorflow>=2.21.0; {_TF_ELSEWHERE}",
    "tensorflow-datasets>=4.9.10",
]

EXTRAS_REQUIRE = {
    # What tests/ imports beyond the library, and the linter that CI runs.
    # tests/test_gcs_workdir.py runs a gs:// work dir on a local GCS emulator, through etils
    # epath on gcsfs (TensorFlow's own GCS file system cannot be pointed at an emulator).
    "test": [
        "chex>=0.1.92",
        "gcp-storage-emulator>=2026.7.19",
        "gcsfs>=2026.10.1",
        "google-cloud-storage>=3.17.1",
        "pytest>=9.2.0",
        "pytest-xdist>=3.8.0",  # The suite runs a file per CPU (pyproject.toml's addopts).
        "ruff>=0.17.6",
    ],
    "benchmark": ["torch>=2.13.0", "matplotlib>=3.11.2"],
    # The accelerator, as jax names it; `cpu` adds nothing (jaxlib runs on the CPU). The
    # launch scripts install `.[tpu]` or `.[cuda12]`.
    "cpu": [],
    "tpu": ["jax[tpu]>=0.10.2"],
    "cuda12": ["jax[cuda12]>=0.10.2"],
    "cuda13": ["jax[cuda13]>=0.10.2"],
}

setuptools.setup(
    name="ssinfogan_jax",
    version="0.1.0",
    description="Semi-supervised InfoGAN (ss-InfoGAN) in JAX/Flax.",
    # The shipped configs go inside the package, as `ssinfogan_jax.configs` (no top-level
    # `configs` to collide with other projects'): `--config=celeba` finds them from anywhere.
    packages=[
        *setuptools.find_packages(include=["ssinfogan_jax", "ssinfogan_jax.*"]),
        "ssinfogan_jax.configs",
    ],
    package_dir={"ssinfogan_jax.configs": "configs"},
    python_requires=">=3.11",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
)
