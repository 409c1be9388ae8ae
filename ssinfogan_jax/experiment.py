"""The config, checked once and turned once into the plain objects the rest of the code takes.

    exp = experiment.from_config(config)            # raises config_checks.ConfigError
    exp = experiment.from_config(config, data=arrays_or_source)   # your own data
    exp.layout, exp.arch, exp.data, exp.source, exp.num_labeled, exp.subset, exp.batches,
    exp.weights, exp.cadences, exp.judge, ...
    generator, discriminator = exp.models(axis_name=None)

Every decision that depends on several fields is taken here, once: in particular whether there
are labels (`num_labeled`, resolved from `num_labeled` or `labeled_fraction` and the data set's
size), which the losses (Q_ss on fakes for the InfoGAN baseline) and the data both follow.
Below the loop, nothing reads the config: each part takes the pieces of the experiment it needs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax
import ml_collections

from ssinfogan_jax import config_checks, losses, models
from ssinfogan_jax import latents as latents_lib
from ssinfogan_jax import train as train_lib
from ssinfogan_jax.data import folder, labeled_subset, registry, sampler, sources


@dataclasses.dataclass(frozen=True)
class Cadences:
    """When the loop does what (steps), and what it keeps."""

    num_train_steps: int
    log_every: int  # Scalars and a progress line.
    checkpoint_every: int
    eval_every: int  # 0: only at the end.
    images_every: int  # 0: only at the end.
    max_checkpoints_to_keep: int
    best_metric: str  # '' = no best checkpoint.
    steps_per_dispatch: int = 1  # k > 1: k steps per call, the data on the device (on_device).

    def due(self, every: int, step: int) -> bool:
        """Whether an action of period `every` (0 = only at the end) runs at `step`."""
        return (every and step % every == 0) or step == self.num_train_steps


@dataclasses.dataclass(frozen=True)
class JudgeSpec:
    """The independent classifier that judges samples (evaluation/judge.py).

    `max_shift` -1: automatic (2 pixels when every head is categorical, else none).
    `ensemble` > 1: the mean of that many judges' probabilities, member i trained from seed
    `seed + i` (member 0 is the single judge)."""

    cache_dir: str  # Judges are cached here, one folder per key.
    steps: int
    seed: int
    batch_size: int
    max_shift: float
    ensemble: int = 1


@dataclasses.dataclass(frozen=True)
class EvalSpec:
    samples_per_value: int  # Per value of each supervised code.
    seed: int  # The fixed latents' seed (the run's seed + 1).


@dataclasses.dataclass(frozen=True)
class SampleSpec:
    checkpoint: str  # 'latest' or 'best'.
    per_value: int
    traversal_rows: int
    traversal_values: int


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    arch: str
    dtype: str
    conv_impl: str
    d_batch_norm: str
    q_ss_trunk: str
    q_ss_dropout: float = 0.0


@dataclasses.dataclass(frozen=True)
class Experiment:
    """Everything a run is made of, resolved from a validated config.

    Attributes:
      config: the config it was made from, with what the data decides filled in (e.g.
        latents.codes_from_data's codes); kept for the work dir's record only.
      layout: the latent layout.
      arch, model: G's and D's architecture, and how the networks are built.
      data: the data set's static facts (shapes, range, sizes, labels).
      source: where the examples come from (data/sources.py).
      num_labeled: the labelled subset's size as checked (0 = the InfoGAN baseline), of the
        train split's listed size (data.num_train). A set built from fewer files than the
        published one has its own size: the data's subset is counted from the split as loaded
        (input_pipeline.labeled_count), which refuses a count that changes whether there are
        labels.
      subset, batches: how the labelled subset is chosen and batches are drawn.
      weights, instance_noise, augmentations, optimizer, log_grad_norms: the train step's.
      cadences, judge, eval, sample: the loop's, the judge's, evaluation's and sampling's.
      seed, parallel, tensorboard_dir, compilation_cache_dir: the run's.
    """

    config: ml_collections.ConfigDict
    layout: latents_lib.LatentLayout
    arch: models.Architecture
    model: ModelSpec
    data: sources.DataSpec
    source: sources.DataSource
    num_labeled: int
    subset: labeled_subset.SubsetSpec
    batches: sampler.BatchSpec
    weights: losses.LossWeights
    instance_noise: train_lib.InstanceNoise
    augmentations: train_lib.Augmentations
    optimizer: train_lib.Optimizer
    log_grad_norms: bool
    cadences: Cadences
    judge: JudgeSpec
    eval: EvalSpec
    sample: SampleSpec
    seed: int
    parallel: str
    tensorboard_dir: str
    compilation_cache_dir: str

    @property
    def has_labels(self) -> bool:
        return self.num_labeled > 0

    def models(self, axis_name: str | None = None):
        """(G, D) Flax modules; under pmap/shard_map pass the device axis for batch norm."""
        m = self.model
        return models.create_models(
            m.arch,
            self.layout,
            axis_name,
            m.dtype,
            m.conv_impl,
            m.d_batch_norm,
            m.q_ss_trunk,
            m.q_ss_dropout,
        )


Data = sources.DataSource | Mapping[str, sources.Arrays]


def data_source(config: ml_collections.ConfigDict, data: Data | None = None):
    """The run's data source: `data` (a DataSource, or arrays as sources.ArraySource takes),
    else config.data's. Raises ValueError or folder.FolderError (one line per problem)."""
    r = float(config.latents.continuous_range)
    arch = models.ARCHITECTURES.get(config.model.arch)
    if data is not None:  # Arrays must have the net's shape (any, with an unknown net).
        shape = arch.image_shape if arch else ()
        return sources.as_source(data, r, name=config.data.name, image_shape=shape)
    return sources.from_config(
        config.data,
        image_shape=arch.image_shape if arch else registry.KINDS["rgb32"][0],
        continuous_range=r,
        code_labels=[c.get("label", "") or "" for c in config.latents.codes],
    )


def _strata_label(config: ml_collections.ConfigDict, spec: sources.DataSpec) -> str | None:
    """What stratified selection balances: the label of the first supervised categorical code
    (for CelebA: the first chosen attribute, so e.g. half the labelled faces smile), else the
    first categorical label; None if there is none (then selection is random)."""
    for c in config.latents.codes:
        label = c.get("label", "") or ""
        if label and spec.labels.get(label):
            return label
    return next((name for name, classes in spec.labels.items() if classes), None)


def subset_spec(config: ml_collections.ConfigDict, spec: sources.DataSpec):
    d = config.data
    return labeled_subset.SubsetSpec(
        int(d.num_labeled),
        float(d.labeled_fraction),
        d.labeled_selection,
        int(d.labeled_seed),
        _strata_label(config, spec),
    )


def _with_codes_from_data(config, spec: sources.DataSpec) -> ml_collections.ConfigDict:
    """A copy of `config` with one supervised code per label of the data in front of its codes:
    categorical with the label's classes (binary = 2), or continuous of size 1."""
    config = ml_collections.ConfigDict(config.to_dict())
    codes = [
        ml_collections.ConfigDict(
            dict(
                name=name,
                kind="categorical" if classes else "continuous",
                size=classes or 1,
                label=name,
            )
        )
        for name, classes in spec.labels.items()
    ]
    config.latents.codes = [*codes, *config.latents.codes]
    config.latents.codes_from_data = False
    return config


def _resolve_data(config, data: Data | None):
    """(config with data-made codes, source or None, num_labeled or None, problems)."""
    try:
        source = data_source(config, data)
    except folder.FolderError as e:
        return config, None, None, e.problems
    except ValueError as e:
        return config, None, None, [str(e)]
    if config.latents.get("codes_from_data", False):
        config = _with_codes_from_data(config, source.spec)
    try:
        num_labeled = source.num_labeled(subset_spec(config, source.spec))
    except (ValueError, TypeError) as e:  # A bad labeled_* field: the checks say which.
        del e
        num_labeled = None
    return config, source, num_labeled, []


def find_problems(
    config: ml_collections.ConfigDict,
    process_count: int = 1,
    device_count: int = 1,
    data: Data | None = None,
) -> list[str]:
    """Every problem of the config with its data, one line each; [] when it can run."""
    config, source, num_labeled, problems = _resolve_data(config, data)
    return config_checks.find_problems(
        config,
        process_count,
        device_count,
        spec=source.spec if source else None,
        num_labeled=num_labeled,
        data_problems=problems,
    )


def from_config(
    config: ml_collections.ConfigDict,
    *,
    data: Data | None = None,
    process_count: int | None = None,
    device_count: int | None = None,
    check: bool = True,
) -> Experiment:
    """Validates `config` (every field, one line per problem) and resolves it.

    `data`: your own data (a sources.DataSource, or {'train': (images, labels), 'test': ...}
    arrays as sources.ArraySource takes) instead of config.data's. `process_count` and
    `device_count` (default: JAX's) are what the global batch must split over. Raises
    config_checks.ConfigError. `check=False` skips the checks, for a config the caller vouches
    for.
    """
    config, source, num_labeled, data_problems = _resolve_data(config, data)
    if check:
        problems = config_checks.find_problems(
            config,
            jax.process_count() if process_count is None else process_count,
            jax.device_count() if device_count is None else device_count,
            spec=source.spec if source else None,
            num_labeled=num_labeled,
            data_problems=data_problems,
        )
        if problems:
            raise config_checks.ConfigError("invalid config:\n  " + "\n  ".join(problems))
    elif source is None:
        raise config_checks.ConfigError("invalid config:\n  " + "\n  ".join(data_problems))
    spec = source.spec
    opt, ev, sample = config.optimizer, config.eval, config.sample
    arch = models.get_architecture(config.model.arch)
    d = config.data
    return Experiment(
        config=config,
        layout=latents_lib.LatentLayout.from_config(config.latents),
        arch=arch,
        model=ModelSpec(
            config.model.arch,
            config.model.dtype,
            config.model.conv_impl,
            config.model.d_batch_norm,
            config.model.q_ss_trunk,
            float(config.model.q_ss_dropout),
        ),
        data=spec,
        source=source,
        num_labeled=int(num_labeled or 0),
        subset=subset_spec(config, spec),
        batches=sampler.BatchSpec(
            batch_size=int(config.batch_size),
            seed=int(config.seed),
            mode=d.batch_mode,
            mix_share=float(d.mix_labeled_share),
            p_start=float(d.p_labeled_start),
            p_step=float(d.p_labeled_step),
            p_every=int(d.p_labeled_every),
            p_final=float(d.p_labeled_final),
            labeled_max_shift=int(d.labeled_max_shift),
            prefetch=int(d.prefetch),
        ),
        weights=losses.LossWeights.from_config(config.loss, has_labels=bool(num_labeled)),
        instance_noise=train_lib.InstanceNoise(
            float(config.instance_noise.stddev), float(config.instance_noise.decay)
        ),
        augmentations=train_lib.Augmentations(
            int(config.loss.consistency_max_shift),
            int(config.loss.q_ss_max_shift),
            bool(config.loss.q_ss_recolour),
            image_range=tuple(arch.image_range),
            labeled_max_rotation=float(d.labeled_max_rotation),
            labeled_max_scale=float(d.labeled_max_scale),
            labeled_restroke=bool(d.labeled_restroke),
        ),
        optimizer=train_lib.Optimizer(
            float(opt.g_learning_rate),
            float(opt.d_learning_rate),
            float(opt.b1),
            float(opt.b2),
            float(opt.eps),
            float(opt.q_ss_learning_rate),
            float(opt.g_ema_decay),
        ),
        log_grad_norms=bool(config.log_grad_norms),
        cadences=Cadences(
            int(config.num_train_steps),
            int(config.log_every_steps),
            int(config.checkpoint_every_steps),
            int(config.eval_every_steps),
            int(config.images_every_steps),
            int(config.max_checkpoints_to_keep),
            config.best_metric,
            int(config.steps_per_dispatch),
        ),
        judge=JudgeSpec(
            ev.judge_dir or sources.default_judge_dir(d.data_dir),
            int(ev.judge_steps),
            int(ev.judge_seed),
            int(ev.judge_batch_size),
            float(ev.judge_max_shift),
            int(ev.judge_ensemble),
        ),
        eval=EvalSpec(int(ev.samples_per_value), int(config.seed) + 1),
        sample=SampleSpec(
            sample.checkpoint,
            int(sample.per_value),
            int(sample.traversal_rows),
            int(sample.traversal_values),
        ),
        seed=int(config.seed),
        parallel=config.parallel,
        tensorboard_dir=config.tensorboard_dir,
        compilation_cache_dir=config.compilation_cache_dir,
    )
