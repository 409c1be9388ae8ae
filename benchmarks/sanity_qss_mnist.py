"""Sanity run: a few hundred ss-InfoGAN steps on a fixed small set of real labelled MNIST digits
make Q_ss classify those digits.

    python benchmarks/sanity_qss_mnist.py [--per_class=6] [--steps=300] [--mnist_dir=...]

Reads the IDX files directly (gzip + numpy), takes the first `per_class` training digits of each
class (60 by default), and trains the reference MNIST config with every batch = those digits, all
labelled. Reports Q_ss accuracy on them with D in train mode (batch statistics, as the
reference evaluates) and in eval mode (running statistics), and on 1,000 held-out test digits.
Expected on CPU: train-mode and eval-mode accuracy on the labelled digits >= 0.9 after 300 steps.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from configs import default
from ssinfogan_jax import experiment, train

MNIST_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist")


def read_idx(path: str) -> np.ndarray:
    """An IDX file (gzip) as a numpy array: magic 0x0000 0x08 ndim, big-endian int32 dims."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    assert data[:2] == b"\x00\x00" and data[2] == 8, f"{path}: not an unsigned-byte IDX file"
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load(mnist_dir: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(os.path.join(mnist_dir, f"{split}-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(mnist_dir, f"{split}-labels-idx1-ubyte.gz"))
    return (images.astype(np.float32) / 255.0)[..., None], labels.astype(np.int32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist_dir", default=MNIST_DIR)
    parser.add_argument("--per_class", type=int, default=6)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--log_every", type=int, default=50)
    args = parser.parse_args()

    images, labels = load(args.mnist_dir, "train")
    chosen = np.concatenate([np.flatnonzero(labels == k)[: args.per_class] for k in range(10)])
    x, y = images[chosen], labels[chosen]
    test_images, test_labels = load(args.mnist_dir, "t10k")
    x_test, y_test = test_images[:1000], test_labels[:1000]
    n = len(y)
    print(f"{n} labelled training digits (first {args.per_class} per class), batch {n}")

    config = default.get_config()
    config.batch_size = n
    state = train.create_train_state(jax.random.PRNGKey(config.seed), config)
    step = train.make_train_step(config)
    batch = {
        "image": x,
        "label_masks": {"label": np.ones(n, np.float32)},
        "labels": {"label": y},
    }
    _, discriminator = experiment.from_config(config).models()

    @functools.partial(jax.jit, static_argnums=2)
    def q_ss_predictions(d_state, images, train_mode):
        variables = {"params": d_state.params, "batch_stats": d_state.batch_stats}
        if train_mode:
            out, _ = discriminator.apply(variables, images, train=True, mutable=["batch_stats"])
        else:
            out = discriminator.apply(variables, images, train=False)
        return out["q"]["digit"].argmax(-1)

    def accuracies(d_state):
        return {
            "train_mode": float(np.mean(q_ss_predictions(d_state, x, True) == y)),
            "eval_mode": float(np.mean(q_ss_predictions(d_state, x, False) == y)),
            "test_1000_eval": float(np.mean(q_ss_predictions(d_state, x_test, False) == y_test)),
        }

    header = "step  d_loss  g_loss  d_ss_real  q_ss_acc(step)  acc_train_mode  acc_eval_mode  "
    print(header + "test_acc_eval  s/step")
    start = time.time()
    for i in range(1, args.steps + 1):
        state, metrics = step(state, batch)
        if i % args.log_every == 0 or i == 1:
            m = jax.device_get(metrics)
            acc = accuracies(state.discriminator)
            print(
                f"{i:4d}  {m['d_loss']:6.3f}  {m['g_loss']:6.3f}  {m['d_ss_real']:9.4f}  "
                f"{m['q_ss_real_acc/digit']:14.3f}  {acc['train_mode']:14.3f}  "
                f"{acc['eval_mode']:13.3f}  {acc['test_1000_eval']:13.3f}  "
                f"{(time.time() - start) / i:6.2f}"
            )
    acc = accuracies(state.discriminator)
    ok = acc["train_mode"] >= 0.9 and acc["eval_mode"] >= 0.9
    print(f"final: {acc}  ->  {'PASS' if ok else 'FAIL'} (>= 0.9 on the labelled digits)")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
