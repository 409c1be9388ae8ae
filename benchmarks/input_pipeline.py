r"""Images/s of the training input pipeline alone (TrainData.iterate) on real MNIST.

    python -m benchmarks.input_pipeline [--raw_dir=../shared/data/mnist] [--data_dir=...]

Prepares MNIST offline from the IDX folder into a temporary tfds data_dir (unless --data_dir
already holds it), then times `iterate` for --steps batches of --batch_size (the reference's
128), in both batch modes. The pipeline must outrun the train step by 10x or more.
"""

import tempfile
import time

from absl import app, flags

from benchmarks import common
from ssinfogan_jax import default_config as default
from ssinfogan_jax import experiment, input_pipeline

_RAW_DIR = flags.DEFINE_string("raw_dir", common.RAW_MNIST, "MNIST IDX folder.")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "Prepared tfds data_dir ('' = a temp dir).")
_STEPS = flags.DEFINE_integer("steps", 5000, "Batches to time.")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Global batch size.")


def main(argv):
    del argv
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = _DATA_DIR.value or tmp
        config = default.get_config()
        config.data.data_dir = data_dir
        config.batch_size = _BATCH.value
        start = time.perf_counter()
        common.prepared_mnist(data_dir, _RAW_DIR.value)
        print(
            f"MNIST ready (70,000 images, prepared offline unless it was): "
            f"{time.perf_counter() - start:.1f} s"
        )
        for mode in ("alternate", "mix"):
            config.data.batch_mode = mode
            start = time.perf_counter()
            data = input_pipeline.create_train_data(experiment.from_config(config), None)
            print(f"[{mode}] create_train_data (load 60,000): {time.perf_counter() - start:.1f} s")
            it = data.iterate(0)
            next(it)  # warm up (fills the prefetch queue)
            start = time.perf_counter()
            for _ in range(_STEPS.value):
                batch = next(it)
            seconds = time.perf_counter() - start
            images = _STEPS.value * batch["image"].shape[0]
            print(
                f"[{mode}] iterate: {images / seconds:,.0f} images/s "
                f"({_STEPS.value / seconds:,.0f} batches/s of {_BATCH.value})"
            )


if __name__ == "__main__":
    app.run(main)
