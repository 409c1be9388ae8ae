"""scikit-learn's bundled 8x8 digits at 28x28: the offline quick start (no data to fetch).

  python -m ssinfogan_jax.main --config=configs/digits.py --workdir=/tmp/digits
  python -m ssinfogan_jax.main --config=configs/digits.py:runlocal --workdir=/tmp/smoke

1,438 training images, 100 of them labelled (10 per class); the reference MNIST network and
losses; batch 32, 600 steps; evaluated once, at the end (conditional accuracy of its samples,
printed). The independent classifier (the judge) trains 300 steps of batch 32 on the 359 test
digits the first time: 98.8% on the 1,438 training digits, in ~11 s.

Expected (2-core CPU; the runs are deterministic): direct conditional accuracy 0.97-0.99 at
step 600 (seeds 1-5: 0.991, 0.980, 0.979, 0.970, 0.985), in about 105 s from the command to its
exit on a fresh machine, judge included (`python -m benchmarks.quickstart --seeds 1,2,3`). The
runs behind these settings: docs/results.md.

Arguments: `runlocal`, a 6-step smoke run with a tiny evaluation (what the tests run).
"""

from ssinfogan_jax import default_config

ARGS = ("runlocal",)


def get_config(arg: str | None = None):
    args = default_config.parse_arg("configs/digits.py", arg, ARGS)
    config = default_config.get_config()
    config.data.name = "digits"
    config.data.num_labeled = 100
    # Twice the updates of batch 64 for the same images (docs/results.md).
    config.batch_size = 32
    config.num_train_steps = 600
    config.log_every_steps = 100
    config.checkpoint_every_steps = 600  # Only at the end: a short run.
    config.eval_every_steps = 0  # Only at the end.
    config.images_every_steps = 0  # Only at the end.
    # The judge: 300 steps of batch 32 on the 359 test digits reach 98.8% on the 1,438
    # training digits in ~11 s (150 steps of batch 128: 98.5% in ~22 s).
    config.eval.judge_steps = 300
    config.eval.judge_batch_size = 32
    if "runlocal" in args:
        default_config.runlocal(config)
    return config
