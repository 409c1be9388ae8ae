"""CelebA (tfds `celeb_a`), a face-centred crop resized to 32x32x3 in [-1, 1], `infogan_32`.

  python -m ssinfogan_jax.main --config=configs/celeba.py --workdir=gs://bucket/celeba

c_ss: four binary codes supervised by the paper's attributes (section 5.3): Smiling,
Mouth_Slightly_Open, Attractive, Male; any of the 40 attributes can be listed instead. c_us: 4
continuous; noise 128; 1% labelled. Our choices where the reference is silent (section 15).
"""

from configs import default

ATTRIBUTES = ("Smiling", "Mouth_Slightly_Open", "Attractive", "Male")


def get_config(arg: str | None = None):
    config = default.get_config()
    config.data.name = "celeb_a"
    config.data.num_labeled = -1
    config.data.labeled_fraction = 0.01
    config.model.arch = "infogan_32"
    config.latents.codes = [
        default.code(name.lower(), "categorical", 2, label=name) for name in ATTRIBUTES
    ] + [default.code("c_us", "continuous", 4)]
    config.latents.noise_size = 128
    config.best_metric = "q_ss_test_acc"  # No single class to condition an classifier on.
    config.num_train_steps = 50_000
    return config
