r"""Your own images: a folder of PNG/JPEG files and a CSV with some labels filled in.

  python -m ssinfogan_jax.data.make_example_folder --out=/tmp/shapes     # a small example
  python -m ssinfogan_jax.main --config=configs/folder.py --workdir=/tmp/shapes_run \
      --config.data.images_dir=/tmp/shapes --config.data.labels_csv=/tmp/shapes/labels.csv

One supervised code per label column of the CSV (latents.codes_from_data: categorical with the
classes seen, binary, or continuous), plus two free continuous codes. Every filled cell is used
(num_labeled = -1, labeled_fraction = 1); set data.num_labeled to keep at most that many per
label. See docs/own_data.md for the CSV format.

Arguments (comma-separated): `gray`, 28x28 grey-scale images and the MNIST networks (default:
32x32 colour and dcgan_32); `64`, 64x64 colour and DCGAN's 64x64 nets (dcgan_64), labelled
examples shifted by up to 4 px (the share of the image that 2 px are at 32x32); `runlocal`, a
6-step smoke run with a tiny evaluation. The images are converted to the net's size, once per
size (docs/own_data.md).

  python -m ssinfogan_jax.main --config=configs/folder.py:64 --workdir=/tmp/shapes_run64 \
      --config.data.images_dir=/tmp/shapes --config.data.labels_csv=/tmp/shapes/labels.csv

The labelled schedule and Q_ss settings are configs/mnist.py's (labelled examples shifted by up
to 2 px, one batch in ten labelled after the ramp, Q_ss on fakes from step 1,000).

Expected (2-core CPU): MNIST exported with benchmarks/tools/export_mnist_folder.py (100 of the
60,000 train label cells filled) and run with `:gray` for 2,000 steps reaches 0.994 direct
accuracy, within configs/mnist.py's 0.9910 +- 0.0051 with 100 labels (docs/results.md).
"""

from ssinfogan_jax import default_config

ARGS = ("gray", "64", "runlocal")
EXCLUSIVE = ("gray", "64")  # At most one: the image size and colour.


def get_config(arg: str | None = None):
    args = default_config.parse_arg("configs/folder.py", arg, ARGS)
    if len(args & set(EXCLUSIVE)) > 1:
        raise ValueError(
            "configs/folder.py: 'gray' (28x28 grey) and '64' (64x64 colour) exclude each other"
        )
    config = default_config.get_config()
    config.data.name = "folder"
    config.data.num_labeled = -1
    config.data.labeled_fraction = 1.0
    config.data.labeled_max_shift = 2
    config.data.p_labeled_final = 0.1
    config.loss.q_ss_on_fakes = True
    config.loss.q_ss_on_fakes_start = 1_000
    config.latents.codes_from_data = True
    config.latents.codes = [default_config.code("c_us", "continuous", 2)]
    if "gray" in args:
        config.model.arch = "infogan_mnist"
    else:
        default_config.colour_32(config)
    if "64" in args:  # colour_32's choices for DCGAN's 64x64 nets; the images follow the net.
        config.model.arch = "dcgan_64"
        config.data.labeled_max_shift = 4
    if "runlocal" in args:
        default_config.runlocal(config)
    return config
