r"""Real MNIST as a folder of PNGs plus a CSV with a few labels: the folder path's proof.

    python -m benchmarks.tools.export_mnist_folder --out=/tmp/mnist_folder [--num_labeled=100]
    python -m ssinfogan_jax.main --config=configs/folder.py:gray --workdir=/tmp/mnist_folder_run \
        --config.data.images_dir=/tmp/mnist_folder \
        --config.data.labels_csv=/tmp/mnist_folder/labels.csv \
        --config.num_train_steps=2000 --config.eval_every_steps=250

Writes <out>/train/NNNNN.png (60,000) and <out>/test/NNNNN.png (10,000) in tfds's file order,
and <out>/labels.csv with columns file, split, label. Of the 60,000 train label cells only
--num_labeled are filled: the very examples configs/mnist.py picks with the same count and
labeled_seed (stratified, 10 per class for 100), so a run through the folder sees the same
images, labels and batches as configs/mnist.py. Every test row is labelled: the test split is
what the independent judge is trained on, as for configs/mnist.py.
"""

import csv
import os
import tempfile
import time

import numpy as np
from absl import app, flags
from PIL import Image

from benchmarks import common
from ssinfogan_jax import default_config as default
from ssinfogan_jax import experiment
from ssinfogan_jax.data import labeled_subset

_RAW_DIR = flags.DEFINE_string("raw_dir", common.RAW_MNIST, "MNIST IDX folder.")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "Prepared tfds data_dir ('' = a temp dir).")
_OUT = flags.DEFINE_string("out", None, "Folder to write the PNGs and labels.csv into.")
_NUM_LABELED = flags.DEFINE_integer("num_labeled", 100, "Train label cells to fill.")
_LABELED_SEED = flags.DEFINE_integer("labeled_seed", 1234, "As config.data.labeled_seed.")
flags.mark_flag_as_required("out")


def main(argv):
    del argv
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = common.prepared_mnist(_DATA_DIR.value or tmp, _RAW_DIR.value)
        config = default.get_config()
        config.data.data_dir = data_dir
        source = experiment.data_source(config)
        splits = {s: source.load(s) for s in ("train", "test")}
    train_labels = splits["train"][1]["label"]
    chosen = labeled_subset.select_labeled(
        train_labels, _NUM_LABELED.value, "stratified", _LABELED_SEED.value
    )
    labelled = np.zeros(len(train_labels), bool)
    labelled[chosen] = True
    start = time.perf_counter()
    rows = []
    for split, (images, labels) in splits.items():
        os.makedirs(os.path.join(_OUT.value, split), exist_ok=True)
        for i, (image, label) in enumerate(zip(images, labels["label"], strict=True)):
            name = f"{split}/{i:05d}.png"
            Image.fromarray(image[..., 0], "L").save(os.path.join(_OUT.value, name))
            keep = split == "test" or labelled[i]
            rows.append((name, split, str(int(label)) if keep else ""))
    with open(os.path.join(_OUT.value, "labels.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("file", "split", "label"))
        writer.writerows(rows)
    print(
        f"Wrote {len(rows)} PNGs and labels.csv to {_OUT.value} in "
        f"{time.perf_counter() - start:.0f} s; train label cells filled: {int(labelled.sum())} "
        f"(per class {np.bincount(train_labels[chosen], minlength=10).tolist()})."
    )


if __name__ == "__main__":
    app.run(main)
