"""The shortest custom training loop: your batches, our train step, our judge.

    python examples/custom_loop.py               # 600 steps on the 8x8 digits: ends near 0.92
    python examples/custom_loop.py --steps=20    # a smoke run (its accuracy means nothing)

Prints `step N: d_loss ... g_loss ...` every 100 steps, then `cond_acc_direct: X`: the share of
G's samples that the independent classifier (the judge) reads as the digit their code asks for.
"""

import argparse

import jax
import numpy as np

from ssinfogan_jax import default_config, evaluation, experiment, train

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=600)
args = parser.parse_args()

config = default_config.shipped_config("digits").get_config()  # configs/digits.py
exp = experiment.from_config(config)  # checked once, resolved into plain objects
state = train.create_train_state(jax.random.PRNGKey(0), exp)
step = train.make_train_step(exp)  # jitted, pure: (state, batch) -> (state, metrics)

# Your batches. Here: scikit-learn's digits (uint8 [N, 28, 28, 1]), 10 labels per class.
images, labels = exp.source.load("train")
labels = labels["label"]
labelled = np.concatenate([np.flatnonzero(labels == k)[:10] for k in range(10)])
low, high = exp.data.image_range
rng = np.random.default_rng(0)
for t in range(args.steps):
    with_labels = rng.random() < max(0.1, 1 - t / 1000)  # mostly labelled batches early on
    rows = rng.choice(labelled if with_labels else len(images), config.batch_size)
    batch = {
        "image": (low + (high - low) * images[rows] / 255).astype(np.float32),  # [B, H, W, C]
        "label_masks": {"label": np.full(len(rows), float(with_labels), np.float32)},
        "labels": {"label": np.where(with_labels, labels[rows], -1).astype(np.int32)},
    }
    state, metrics = step(state, batch)
    if t % 100 == 0:
        print(f"step {t}: d_loss {metrics['d_loss']:.3f} g_loss {metrics['g_loss']:.3f}")

evaluator = evaluation.make_evaluator(exp)  # the judge: loaded from its cache, or trained
metrics = evaluator.evaluate(state)
print(f"cond_acc_direct: {metrics['cond_acc_direct']:.3f}")
