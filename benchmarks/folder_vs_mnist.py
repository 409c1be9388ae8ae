r"""The folder path against the tfds MNIST path: same batches? same steps/s?

    python -m benchmarks.tools.export_mnist_folder --out=/tmp/mnist_folder
    python -m benchmarks.folder_vs_mnist --images_dir=/tmp/mnist_folder \
        --labels_csv=/tmp/mnist_folder/labels.csv [--mnist_data_dir=DIR]

Builds `configs/mnist.py` with 100 labels and `configs/folder.py:gray` on the exported folder,
checks that both give the same batches (images, labels, masks) for the first --compare steps,
then times `TrainData.batch` alone and the jitted train step fed by each path's `iterate`
(blocks of --steps, alternating, so both see the same machine load).
"""

import tempfile
import time

import jax
import numpy as np
from absl import app, flags

from benchmarks import common
from configs import folder as folder_config
from configs import mnist as mnist_config
from ssinfogan_jax import experiment, input_pipeline, train

_RAW_DIR = flags.DEFINE_string("raw_dir", common.RAW_MNIST, "MNIST IDX folder.")
_MNIST_DATA_DIR = flags.DEFINE_string("mnist_data_dir", "", "Prepared tfds MNIST ('' = temp).")
_IMAGES_DIR = flags.DEFINE_string("images_dir", "/tmp/mnist_folder", "Exported folder.")
_LABELS_CSV = flags.DEFINE_string("labels_csv", "/tmp/mnist_folder/labels.csv", "Its CSV.")
_COMPARE = flags.DEFINE_integer("compare", 300, "Steps whose batches are compared.")
_STEPS = flags.DEFINE_integer("steps", 20, "Train steps per timed block.")
_BLOCKS = flags.DEFINE_integer("blocks", 3, "Timed blocks per path.")


def main(argv):
    del argv
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = common.prepared_mnist(_MNIST_DATA_DIR.value or tmp, _RAW_DIR.value)
        mnist = mnist_config.get_config()
        mnist.data.num_labeled = 100
        mnist.data.data_dir = data_dir
        own = folder_config.get_config("gray")
        own.data.images_dir = _IMAGES_DIR.value
        own.data.labels_csv = _LABELS_CSV.value
        exps = {"mnist": experiment.from_config(mnist), "folder": experiment.from_config(own)}
        data = {k: input_pipeline.create_train_data(e, None) for k, e in exps.items()}

    same = True
    for step in range(_COMPARE.value):
        a, b = data["mnist"].batch(step), data["folder"].batch(step)
        same &= np.array_equal(a["image"], b["image"])
        same &= np.array_equal(a["labels"]["label"], b["labels"]["label"])
        same &= np.array_equal(a["label_masks"]["label"], b["label_masks"]["label"])
    print(f"batches of steps 0-{_COMPARE.value - 1} identical on both paths: {bool(same)}")

    for name, d in data.items():
        start = time.perf_counter()
        for step in range(2000, 2200):
            d.batch(step)
        print(f"{name}: TrainData.batch {(time.perf_counter() - start) / 200 * 1e3:.2f} ms")

    steps = {k: train.make_train_step(e) for k, e in exps.items()}
    states = {k: train.create_train_state(jax.random.PRNGKey(1), e) for k, e in exps.items()}
    iterators = {k: d.iterate(0) for k, d in data.items()}
    for name in exps:  # Compile, and one step.
        states[name], _ = steps[name](states[name], next(iterators[name]))
        jax.block_until_ready(states[name])
    rates = {name: [] for name in exps}
    for _ in range(_BLOCKS.value):
        for name in exps:
            start = time.perf_counter()
            for _ in range(_STEPS.value):
                states[name], metrics = steps[name](states[name], next(iterators[name]))
            jax.block_until_ready(metrics)
            rates[name].append(_STEPS.value / (time.perf_counter() - start))
    for name, r in rates.items():
        blocks = ", ".join(f"{x:.2f}" for x in r)
        print(f"{name}: train steps/s {np.median(r):.2f} (median of blocks: {blocks})")


if __name__ == "__main__":
    app.run(main)
