"""Training on images in memory: numpy arrays in, a trained run out (no tfds, no files).

    python examples/train_on_arrays.py                     # 600 steps: ends near 0.99
    python examples/train_on_arrays.py --steps=20 --workdir=/tmp/arrays_smoke

Here the arrays are scikit-learn's 8x8 digits at 28x28, with 10 labels per class kept and the
rest set to -1 (unlabelled). Use your own: uint8 images [N, 28, 28, 1] or [N, 32, 32, 3], and
labels {name: [N]}, integers (class indices, -1 = unlabelled) or floats (NaN = unlabelled).
Every code whose `label` names one of them is supervised by it.

Prints the final evaluation, `cond_acc_direct: X` (the share of G's samples that the
independent classifier reads as the digit their code asks for), and what the work dir holds.
"""

import argparse
import os
import tempfile

import numpy as np

from ssinfogan_jax import default_config, loop
from ssinfogan_jax.data import builders

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=600)
parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "arrays_run"))
args = parser.parse_args()

arrays = builders.digits_arrays()  # {"train": (uint8 [N, 28, 28, 1], int64 [N]), "test": ...}
train_images, train_digits = arrays["train"]
test_images, test_digits = arrays["test"]
keep = np.concatenate([np.flatnonzero(train_digits == k)[:10] for k in range(10)])
partly_labelled = np.full_like(train_digits, -1)
partly_labelled[keep] = train_digits[keep]
data = {
    "train": (train_images, {"label": partly_labelled}),  # 100 labelled, 1,338 unlabelled
    "test": (test_images, {"label": test_digits}),  # the judge trains on the test split
}

config = default_config.shipped_config("digits").get_config()  # configs/digits.py
config.data.name = "my_digits"
config.data.num_labeled = -1  # with labeled_fraction 1: every label given is used
config.data.labeled_fraction = 1.0
config.num_train_steps = args.steps
metrics = loop.train_and_evaluate(config, args.workdir, data=data)

print(f"cond_acc_direct: {metrics['cond_acc_direct']:.3f}")
print(f"{args.workdir}: {', '.join(sorted(os.listdir(args.workdir)))}")
