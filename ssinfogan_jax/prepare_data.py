r"""Builds a tfds data set from files on disk, so training needs no network.

    # MNIST from the four IDX files (gzipped or not):
    python -m ssinfogan_jax.prepare_data --dataset=mnist --raw_dir=../shared/data/mnist \
        --data_dir=~/tensorflow_datasets
    # The synthetic 32x32 RGB digit_scenes, rendered from the same IDX files (about a minute):
    python -m ssinfogan_jax.prepare_data --dataset=digit_scenes --raw_dir=../shared/data/mnist
    # scikit-learn's digits (no files needed):
    python -m ssinfogan_jax.prepare_data --dataset=digits
    # SVHN / CIFAR-10 / CelebA from their original downloads placed in --raw_dir
    # (the command lists the file names it needs when one is missing):
    python -m ssinfogan_jax.prepare_data --dataset=celeb_a --raw_dir=/data/celeba_raw

Afterwards `tfds.load(name, data_dir=...)` works offline, and so does training with
--config.data.data_dir=<the same data_dir>.
"""

from absl import app, flags, logging

from ssinfogan_jax.data import builders

_DATASET = flags.DEFINE_string("dataset", "mnist", "tfds name, or 'digits'.")
_RAW_DIR = flags.DEFINE_string("raw_dir", "", "Folder holding the raw files.")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "tfds data_dir ('' = ~/tensorflow_datasets).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        builders.prepare(_DATASET.value, _RAW_DIR.value, _DATA_DIR.value)
    except builders.DataNotFoundError as e:
        raise app.UsageError(str(e)) from None
    logging.info(
        "Done: tfds.load(%r, data_dir=%r) now works offline.",
        _DATASET.value,
        builders.default_data_dir(_DATA_DIR.value),
    )


if __name__ == "__main__":
    app.run(main)
