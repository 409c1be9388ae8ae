"""The config, checked once and turned once into the plain objects the rest of the code takes.

    exp = experiment.from_config(config)    # raises config_checks.ConfigError, listing problems
    exp.layout, exp.arch, exp.dataset, exp.num_labeled, exp.weights, ...
    generator, discriminator = exp.models(axis_name=None)

Every decision that depends on several fields is taken here, once: in particular whether there
are labels (`num_labeled`, resolved from `num_labeled` or `labeled_fraction` and the data set's
size), which the losses (Q_ss on fakes for the InfoGAN baseline) and the data both follow.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections

from ssinfogan_jax import config_checks, losses, models
from ssinfogan_jax import latents as latents_lib
from ssinfogan_jax.data import registry


@dataclasses.dataclass(frozen=True)
class InstanceNoise:
    """Gaussian noise on D's inputs in the D step: sigma_t = stddev * decay**t."""

    stddev: float = 0.0
    decay: float = 1.0

    def sigma(self, step: jax.Array) -> jax.Array:
        return self.stddev * jnp.power(self.decay, step.astype(jnp.float32))


@dataclasses.dataclass(frozen=True)
class Augmentations:
    """Random changes of the images inside the step (none is in the paper).

    `consistency_max_shift`: translation of the copy the optional consistency loss reads (its
    weight is `LossWeights.lambda_consistency`): Q_ss on it should match Q_ss on the batch, so
    the unlabelled reals shape Q_ss, which otherwise learns from the few labelled ones alone.
    `q_ss_max_shift` (0 = off; a Q_ss with a trunk of its own only): translation of the reals
    Q_ss reads, so its few labelled images count for more while D sees them as they are.
    `q_ss_recolour` (a Q_ss with a trunk of its own only): Q_ss reads every image, real or
    fake, with its channels reordered and maybe negated at random (`augment.recolour`), so G
    cannot mark its supervised codes with colour; for labels that do not depend on colour.
    """

    consistency_max_shift: int = 2
    q_ss_max_shift: int = 0
    q_ss_recolour: bool = False
    image_range: tuple[float, float] = (-1.0, 1.0)  # G's; its low end fills vacated pixels.


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """Adam for each network (D's trunk and all its heads share one, unless Q_ss has a rate of
    its own: `q_ss_learning_rate` > 0), and `g_ema_decay` (> 0: a moving average of G's
    weights is kept, and evaluated and sampled instead of G)."""

    g_learning_rate: float
    d_learning_rate: float
    b1: float
    b2: float
    eps: float
    q_ss_learning_rate: float = 0.0
    g_ema_decay: float = 0.0


@dataclasses.dataclass(frozen=True)
class Experiment:
    """Everything a run is made of, resolved from a validated config.

    Attributes:
      config: the config it was made from (for the loop's cadences and paths), with what the
        data decides filled in (`registry.resolve`: e.g. latents.codes_from_data's codes).
      layout: the latent layout.
      arch: G's and D's architecture.
      dataset: the data set's static facts (shapes, range, sizes, labels).
      num_labeled: the labelled subset's size (0 = the InfoGAN baseline).
      weights, instance_noise, augmentations, optimizer: the train step's settings.
    """

    config: ml_collections.ConfigDict
    layout: latents_lib.LatentLayout
    arch: models.Architecture
    dataset: registry.DatasetInfo
    num_labeled: int
    weights: losses.LossWeights
    instance_noise: InstanceNoise
    augmentations: Augmentations
    optimizer: Optimizer

    @property
    def has_labels(self) -> bool:
        return self.num_labeled > 0

    def models(self, axis_name: str | None = None):
        """(G, D) Flax modules; under pmap/shard_map pass the device axis for batch norm."""
        model = self.config.model
        return models.create_models(
            model.arch,
            self.layout,
            axis_name,
            model.dtype,
            model.conv_impl,
            model.d_batch_norm,
            model.q_ss_trunk,
        )


def from_config(
    config: ml_collections.ConfigDict,
    *,
    process_count: int | None = None,
    device_count: int | None = None,
    check: bool = True,
) -> Experiment:
    """Validates `config` (every field, one line per problem) and resolves it.

    `process_count` and `device_count` (default: JAX's) are what the global batch must split
    over. Raises config_checks.ConfigError. `check=False` skips the checks, for a config the
    caller vouches for (e.g. codes supervised by labels of the caller's own data).
    """
    config = registry.resolve(config)  # Codes from the data's labels, if asked for.
    if check:
        config_checks.validate(
            config,
            process_count=jax.process_count() if process_count is None else process_count,
            device_count=jax.device_count() if device_count is None else device_count,
        )
    dataset = registry.get_dataset_info(config)
    num_labeled = registry.num_labeled(config, dataset.num_train)
    opt = config.optimizer
    arch = models.get_architecture(config.model.arch)
    return Experiment(
        config=config,
        layout=latents_lib.LatentLayout.from_config(config.latents),
        arch=arch,
        dataset=dataset,
        num_labeled=num_labeled,
        weights=losses.LossWeights.from_config(config.loss, has_labels=num_labeled > 0),
        instance_noise=InstanceNoise(
            float(config.instance_noise.stddev), float(config.instance_noise.decay)
        ),
        augmentations=Augmentations(
            int(config.loss.consistency_max_shift),
            int(config.loss.q_ss_max_shift),
            bool(config.loss.q_ss_recolour),
            tuple(arch.image_range),
        ),
        optimizer=Optimizer(
            float(opt.g_learning_rate),
            float(opt.d_learning_rate),
            float(opt.b1),
            float(opt.b2),
            float(opt.eps),
            float(opt.q_ss_learning_rate),
            float(opt.g_ema_decay),
        ),
    )
