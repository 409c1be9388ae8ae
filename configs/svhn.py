"""SVHN (tfds `svhn_cropped`), 32x32x3 in [-1, 1], the `infogan_32` net.

  python -m ssinfogan_jax.main --config=configs/svhn.py --workdir=/tmp/svhn

c_ss: 10-way digit (1% of the train split labelled); c_us: 4 continuous U(-1, 1); noise 124
N(0, 1). Our choices where the reference is silent (reference section 15).
"""

from configs import default


def get_config(arg: str | None = None):
    config = default.get_config()
    config.data.name = "svhn_cropped"
    config.data.num_labeled = -1
    config.data.labeled_fraction = 0.01
    config.model.arch = "infogan_32"
    config.latents.codes = [
        default.code("digit", "categorical", 10, label="label"),
        default.code("c_us", "continuous", 4),
    ]
    config.latents.noise_size = 124
    config.num_train_steps = 50_000
    return config
