"""CIFAR-10, 32x32x3 in [-1, 1], the `infogan_32` net, with instance noise.

  python -m ssinfogan_jax.main --config=configs/cifar10.py --workdir=/tmp/cifar10

c_ss: 10-way class (10% labelled, the paper's figure for CIFAR-10); c_us: 4 continuous; noise
124. Instance noise (paper section 5.4): sigma starts at 0.1 and decays by 0.9995 per step
(0.1 -> 0.008 after 5,000 steps). Our choices where the reference is silent (section 15).
"""

from configs import default


def get_config(arg: str | None = None):
    config = default.get_config()
    config.data.name = "cifar10"
    config.data.num_labeled = -1
    config.data.labeled_fraction = 0.10
    config.model.arch = "infogan_32"
    config.latents.codes = [
        default.code("object", "categorical", 10, label="label"),
        default.code("c_us", "continuous", 4),
    ]
    config.latents.noise_size = 124
    config.instance_noise.stddev = 0.1
    config.instance_noise.decay = 0.9995
    config.num_train_steps = 50_000
    return config
