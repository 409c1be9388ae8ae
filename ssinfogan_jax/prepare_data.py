r"""Builds a tfds data set from files on disk, so training needs no network.

    # MNIST from the four IDX files (gzipped or not):
    python -m ssinfogan_jax.prepare_data --dataset=mnist --raw_dir=../shared/data/mnist \
        --data_dir=~/tensorflow_datasets
    # The synthetic 32x32 RGB digit_scenes, rendered from the same IDX files (about a minute):
    python -m ssinfogan_jax.prepare_data --dataset=digit_scenes --raw_dir=../shared/data/mnist
    # scikit-learn's digits (no files needed):
    python -m ssinfogan_jax.prepare_data --dataset=digits
    # CelebA / SVHN / CIFAR-10 from the files their owners publish (docs/data.md), in a local
    # or gs:// folder; archives are checked against the sizes and sha256 that tfds records
    # (SSINFOGAN_SKIP_CHECKSUMS=1 skips that). Missing or bad files: one line, exit code 2.
    python -m ssinfogan_jax.prepare_data --dataset=celeb_a --raw_dir=/data/celeba_raw
    python -m ssinfogan_jax.prepare_data --dataset=svhn_cropped --raw_dir=gs://bucket/svhn \
        --data_dir=gs://bucket/tensorflow_datasets

    # Your own images (a folder and a CSV, see README "Train on your own images"), converted
    # for an architecture's shape (infogan_32: 32x32x3; infogan_mnist: 28x28x1):
    python -m ssinfogan_jax.prepare_data --dataset=folder --images_dir=/tmp/shapes \
        --labels_csv=/tmp/shapes/labels.csv --arch=infogan_32

Afterwards `tfds.load(name, data_dir=...)` works offline, and so does training with
--config.data.data_dir=<the same data_dir>.
"""

import sys

from absl import app, flags, logging

from ssinfogan_jax import exit_codes
from ssinfogan_jax.data import builders

_DATASET = flags.DEFINE_string("dataset", "mnist", "tfds name, 'digits', or 'folder'.")
_RAW_DIR = flags.DEFINE_string("raw_dir", "", "Folder holding the raw files.")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "tfds data_dir ('' = ~/tensorflow_datasets).")
_IMAGES_DIR = flags.DEFINE_string("images_dir", "", "folder: the images (config.data.images_dir).")
_LABELS_CSV = flags.DEFINE_string("labels_csv", "", "folder: the CSV (config.data.labels_csv).")
_ARCH = flags.DEFINE_string("arch", "infogan_32", "folder: the architecture whose shape to make.")


def _prepare_folder() -> None:
    from ssinfogan_jax import config_checks, default_config, experiment, input_pipeline

    folder_config = default_config.shipped_config("folder")

    config = folder_config.get_config()
    config.data.images_dir = _IMAGES_DIR.value
    config.data.labels_csv = _LABELS_CSV.value
    config.data.data_dir = _DATA_DIR.value
    config.model.arch = _ARCH.value
    try:
        exp = experiment.from_config(config, process_count=1, device_count=1)
        exp.source.prepare()
    except (config_checks.ConfigError, input_pipeline.FolderError) as e:
        raise app.UsageError(str(e)) from None
    logging.info(
        "Done: %d train and %d test images of %s at %s, labels %s.",
        exp.data.num_train,
        exp.data.num_test,
        _IMAGES_DIR.value,
        exp.data.image_shape,
        exp.data.labels,
    )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if _DATASET.value == "folder":
        _prepare_folder()
        return
    try:
        builders.prepare(_DATASET.value, _RAW_DIR.value, _DATA_DIR.value)
    except builders.DataNotFoundError as e:  # Missing or bad files: the user's to fix.
        print(f"FATAL data not found: {' '.join(str(e).split())}", file=sys.stderr, flush=True)
        sys.exit(exit_codes.BAD_INPUT)
    logging.info(
        "Done: tfds.load(%r, data_dir=%r) now works offline.",
        _DATASET.value,
        builders.default_data_dir(_DATA_DIR.value),
    )


if __name__ == "__main__":
    app.run(main)
