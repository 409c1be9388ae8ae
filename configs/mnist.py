"""MNIST, the reference ss-InfoGAN run (spurra/ss-infogan defaults).

  python -m ssinfogan_jax.prepare_data --dataset=mnist --raw_dir=DIR_WITH_IDX_FILES  # offline
  python -m ssinfogan_jax.main --config=configs/mnist.py --workdir=/tmp/mnist \
      --config.data.num_labeled=100

Batch 128, 5,000 iterations, Adam 1e-4 (D/Q) / 1e-3 (G), beta1 0.5, lambda 2 / 0.8, 600
labels (1%) by default. `:runlocal` gives a short smoke run.

Measured (2-core CPU, 2026-11-28, 100 labels, seed 1): about 2.7 steps/s (35 min for 5,000
steps on a busy machine); conditional accuracy 0.905 at step 500, 0.909 at 2,000, 0.935 at
5,000 (best 0.959); Q_ss accuracy on the real test split 0.872. See README "Results".
"""

from configs import default


def get_config(arg: str | None = None):
    config = default.get_config()
    config.data.name = "mnist"
    if arg == "runlocal":
        config.num_train_steps = 50
        config.log_every_steps = 10
        config.checkpoint_every_steps = 25
        config.eval_every_steps = 0
        config.images_every_steps = 0
    return config
