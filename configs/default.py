"""The reference run: every field at its default (ssinfogan_jax/default_config.py lists them,
with what each means; the other configs here start from them and override a few).

The defaults are the reference ss-InfoGAN MNIST run (spurra/ss-infogan, configuration.lua):
batch 128, 5,000 iterations, Adam 1e-4 (D/Q) and 1e-3 (G) with beta1 0.5, lambda 2 / 0.8,
latents [c_ss 10-way | c_us 2 x U(-1, 1) | 62 x N(0, 1)], 600 labels.

  python -m ssinfogan_jax.main --config=configs/default.py --workdir=/tmp/reference \
      --config.data.num_labeled=100
  python -m ssinfogan_jax.main --config=configs/default.py:runlocal --workdir=/tmp/smoke

Expected (MNIST, 100 labels, seeds 1 and 2): direct conditional accuracy 0.909 and 0.900 at
step 2,000, 0.935 and 0.975 at step 5,000; the train step runs at about 6 steps/s at batch 128
on a quiet 2-core CPU.
`configs/mnist.py` adds three measured changes that reach 0.99.

Arguments (after the file name, comma-separated): `runlocal`, a smoke run of a few steps with a
tiny evaluation (a test of the set-up, not of the method).
"""

from ssinfogan_jax import default_config

ARGS = default_config.ARGS


def get_config(arg: str | None = None):
    return default_config.get_config(arg)
