"""The train state and the pure ss-InfoGAN train step.

One iteration (reference section 6):
  1. sample codes (c_ss, c_us, noise) from `fold_in(state.rng, step)`; G forward in train mode
     (its batch-norm statistics update once);
  2. one Adam update of D (trunk + D head + Q_ss + Q_us) on L_D, real and fake each normalised
     by their own batch statistics, both kept (real, then fake on top), as the reference's two
     D passes; computed as one pass over both (`batch_norm_per_part`);
  3. one Adam update of G on L_G with the same codes and G output, through the *updated* D. That
     D pass only carries gradients to the image: D's parameters and statistics are untouched.

G's forward is computed once and reused for its update through `jax.vjp` (the reference reuses
the output too: G has not changed in between).

    exp = experiment.from_config(config)          # or pass the config itself
    state = create_train_state(jax.random.PRNGKey(0), exp)
    step = make_train_step(exp)                   # jitted: (state, batch) -> (state, metrics)

`train_step` is the unbound pure function (its dependencies are keyword arguments);
`bind_train_step(exp, axis_name=...)` binds them for `jax.jit`, `jax.pmap` or `shard_map`
(see `parallel`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from ssinfogan_jax import augment, losses, reporting
from ssinfogan_jax import latents as latents_lib
from ssinfogan_jax.models import Q_SS_PARAMS

if TYPE_CHECKING:
    from ssinfogan_jax.experiment import Experiment


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
    `labeled_max_rotation` (degrees), `labeled_max_scale` (a fraction) and `labeled_restroke`
    (0 / False = off): the labelled reals, as D and Q_ss read them, are rotated, scaled and
    made a pixel thicker or thinner at random (`augment.warp`, `augment.restroke`), so that
    one labelled example per class stands for more of its class than its own slant and width.
    """

    consistency_max_shift: int = 2
    q_ss_max_shift: int = 0
    q_ss_recolour: bool = False
    labeled_max_rotation: float = 0.0
    labeled_max_scale: float = 0.0
    labeled_restroke: bool = False
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


# image [B, H, W, C] float32, label_masks {name: [B]}, labels {name: [B]}
Batch = Mapping[str, Any]
Metrics = dict[str, jax.Array]
TrainStep = Callable[["TrainState", Batch], tuple["TrainState", Metrics]]


@struct.dataclass
class NetworkState:
    """Parameters, batch-norm statistics and optimizer state of one network."""

    params: Any
    batch_stats: Any
    opt_state: Any
    tx: optax.GradientTransformation = struct.field(pytree_node=False)

    @classmethod
    def create(cls, variables, tx: optax.GradientTransformation) -> NetworkState:
        params = variables["params"]
        return cls(params, variables.get("batch_stats", {}), tx.init(params), tx)

    def apply_gradients(self, grads, batch_stats) -> NetworkState:
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
        params = optax.apply_updates(self.params, updates)
        return self.replace(params=params, batch_stats=batch_stats, opt_state=opt_state)


@struct.dataclass
class TrainState:
    step: jax.Array  # int32 []: iterations done.
    rng: jax.Array  # uint32 [2]: base key; step t uses fold_in(rng, t).
    generator: NetworkState
    discriminator: NetworkState


@struct.dataclass
class EmaTrainState(TrainState):
    """A train state that also keeps a moving average of G (`optimizer.g_ema_decay` > 0), which
    evaluation and sampling read instead of G. A subclass rather than an optional field, so that
    a state without it, and its checkpoints, keep their structure."""

    generator_ema: Any  # {"params", "batch_stats"}, G's.


def without_generator_ema(state: TrainState) -> TrainState:
    """The state as a plain TrainState: its G, not the moving average, is what gets evaluated."""
    return TrainState(state.step, state.rng, state.generator, state.discriminator)


def generator_variables(state: TrainState) -> dict[str, Any]:
    """The G variables to evaluate and sample with: the moving average when kept, else G's."""
    if isinstance(state, EmaTrainState):
        return state.generator_ema
    return {"params": state.generator.params, "batch_stats": state.generator.batch_stats}


def ema_decay(decay: float, step: jax.Array) -> jax.Array:
    """The moving average's decay at `step`: min(decay, (1 + t) / (10 + t)), TensorFlow's
    ExponentialMovingAverage with num_updates, so that early on it does not hold on to G's
    initial weights (it averages over about the last t / 9 steps until 1 / (1 - decay))."""
    t = step.astype(jnp.float32)
    return jnp.minimum(decay, (1.0 + t) / (10.0 + t))


_NO_INSTANCE_NOISE = InstanceNoise()
_DEFAULT_AUGMENTATIONS = Augmentations()


def create_train_state(rng: jax.Array, exp: Experiment) -> TrainState:
    """Initialises G, D and both Adam states. `rng` seeds init and every step's randomness."""
    generator, discriminator = exp.models()
    init_rng, g_rng, d_rng = jax.random.split(rng, 3)
    z = jnp.zeros((1, exp.layout.input_size), jnp.float32)
    images = jnp.zeros((1, *exp.arch.image_shape), jnp.float32)
    g_vars = jax.jit(functools.partial(generator.init, train=False))(g_rng, z)
    d_vars = jax.jit(functools.partial(discriminator.init, train=False))(d_rng, images)
    opt = exp.optimizer
    adam = functools.partial(optax.adam, b1=opt.b1, b2=opt.b2, eps=opt.eps)
    d_tx = adam(opt.d_learning_rate)
    if opt.q_ss_learning_rate > 0:
        d_tx = optax.multi_transform(
            {"d": d_tx, "q_ss": adam(opt.q_ss_learning_rate)}, q_ss_param_labels
        )
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        rng=init_rng,
        generator=NetworkState.create(g_vars, adam(opt.g_learning_rate)),
        discriminator=NetworkState.create(d_vars, d_tx),
    )
    if opt.g_ema_decay > 0:
        state = EmaTrainState(**vars(state), generator_ema=generator_variables(state))
    return state


def q_ss_param_labels(d_params) -> dict[str, str]:
    """'q_ss' for Q_ss's top-level parameter groups (its head, its own trunk), 'd' for the rest:
    which of D's two Adams (`optimizer.q_ss_learning_rate`) moves each."""
    return {name: "q_ss" if name in Q_SS_PARAMS else "d" for name in d_params}


def batch_norm_per_part(parts: int, whole: tuple[str, ...] = ()):
    """A context in which every `nn.BatchNorm` in training mode treats its batch as `parts`
    equal parts, one after another: each part normalised by its own statistics, the running
    statistics updated part after part. A module applied there to the concatenated parts
    computes what `parts` separate passes compute, but each layer between the batch norms runs
    once on the whole batch (one matmul over all parts: on a CPU at batch 32, 12% off the
    step). Other layers must treat examples independently, as convolutions and dense layers do.
    Batch norms within the top-level submodules named in `whole` see their batch as one part.
    """

    splitting = []  # Non-empty while a batch norm call is being split into its parts.

    def interceptor(next_fun, args, kwargs, context):
        module = context.module
        if splitting or not isinstance(module, nn.BatchNorm) or context.method_name != "__call__":
            return next_fun(*args, **kwargs)
        if module.path[:1] and module.path[0] in whole:
            return next_fun(*args, **kwargs)
        x, *rest = args
        running = kwargs.get("use_running_average", rest[0] if rest else None)
        if nn.merge_param("use_running_average", module.use_running_average, running):
            return next_fun(*args, **kwargs)
        # Each part through the module itself (a call of its own, as a shared module is
        # called twice), not through `next_fun` twice within this one call.
        splitting.append(True)
        try:
            outputs = [module(part, *rest, **kwargs) for part in jnp.split(x, parts)]
        finally:
            splitting.pop()
        return jnp.concatenate(outputs)

    return nn.intercept_methods(interceptor)


def discriminator_loss(
    d_params,
    d_batch_stats,
    real_images: jax.Array,
    fake_images: jax.Array,
    batch: Batch,
    codes: latents_lib.Latents,
    *,
    discriminator: nn.Module,
    layout: latents_lib.LatentLayout,
    weights: losses.LossWeights,
    shifted_real_images: jax.Array | None = None,
    q_ss_real_images: jax.Array | None = None,
    q_ss_fake_images: jax.Array | None = None,
    q_ss_dropout_keys: jax.Array | None = None,
    step: jax.Array | int = 0,
    axis_name: str | None = None,
) -> tuple[jax.Array, tuple[Any, Metrics]]:
    """L_D with real and fake in one train-mode pass, each normalised by its own batch
    statistics, kept real then fake (as two passes; `batch_norm_per_part`); returns (loss,
    (stats, terms)).

    Under a device axis, the supervised term counts labelled examples over all devices. With
    `shifted_real_images`, a third pass adds the consistency term; its batch statistics are
    not kept (the running statistics describe untranslated data). With `q_ss_real_images`
    (a Q_ss with a trunk of its own), Q_ss reads them in place of the reals, and reads the
    fakes (or `q_ss_fake_images` in their place) only when it learns from them
    (`weights.q_ss_on_fakes`): its trunk's fake half would cost a quarter of its work in this
    step and change no gradient. `q_ss_dropout_keys` [2B, 2] (a Q_ss with dropout): per real,
    then per fake, the key of its dropout mask.
    """

    def forward(stats, images, q_ss_images=None, keys=None):
        # Passed only when used, so a D of the caller's own need not take them.
        extra = {} if q_ss_images is None else {"q_ss_images": q_ss_images}
        if keys is not None:
            extra["q_ss_dropout_keys"] = keys
        out, mutated = discriminator.apply(
            {"params": d_params, "batch_stats": stats},
            images,
            train=True,
            mutable=["batch_stats"],
            **extra,
        )
        return out, mutated["batch_stats"]

    # One pass over [real; fake] with batch norm per half: the statistics of two passes.
    size = real_images.shape[0]
    q_ss_images, whole, keys = None, (), q_ss_dropout_keys
    if q_ss_real_images is not None and weights.q_ss_on_fakes:
        q_ss_fakes = fake_images if q_ss_fake_images is None else q_ss_fake_images
        q_ss_images = jnp.concatenate([q_ss_real_images, q_ss_fakes])
    elif q_ss_real_images is not None:
        q_ss_images, whole = q_ss_real_images, Q_SS_PARAMS
        keys = None if keys is None else keys[:size]
    with batch_norm_per_part(2, whole):
        both, stats = forward(
            d_batch_stats, jnp.concatenate([real_images, fake_images]), q_ss_images, keys
        )
    real = jax.tree.map(lambda x: x[:size], both)
    fake = jax.tree.map(lambda x: x[size:], both)
    terms = {
        "d_gan": losses.gan_discriminator_loss(real["logit"], fake["logit"]),
        "d_ss_real": losses.supervised_loss(
            layout, real["q"], batch["labels"], batch["label_masks"], axis_name
        ),
        "d_us": losses.codes_loss(layout.unsupervised_codes, fake["q"], codes),
    }
    loss = terms["d_gan"] + weights.lambda_ss_d * terms["d_ss_real"]
    loss += weights.lambda_us_d * terms["d_us"]
    if weights.q_ss_on_fakes:
        terms["d_ss_fake"] = losses.codes_loss(layout.supervised_codes, fake["q"], codes)
        loss += weights.ss_fake_weight(step) * terms["d_ss_fake"]
    if shifted_real_images is not None:
        real_keys = None if q_ss_dropout_keys is None else q_ss_dropout_keys[:size]
        shifted, _ = forward(stats, shifted_real_images, keys=real_keys)
        terms["d_consistency"] = losses.consistency_loss(
            layout.supervised_codes, real["q"], shifted["q"]
        )
        loss += weights.lambda_consistency * terms["d_consistency"]
    terms["d_loss"] = loss
    terms["d_real"] = jnp.mean(nn.sigmoid(real["logit"]))
    terms["d_fake"] = jnp.mean(nn.sigmoid(fake["logit"]))
    for c in layout.supervised_codes:
        if c.categorical:
            terms[f"q_ss_real_acc/{c.name}"] = losses.code_accuracy(
                c,
                real["q"][c.name],
                batch["labels"][c.label],
                batch["label_masks"][c.label],
                axis_name,
            )
            # Its weight in a window's mean: the labelled examples behind it (reporting).
            terms[f"q_ss_real_acc/{c.name}{reporting.COUNT_SUFFIX}"] = jnp.sum(
                batch["label_masks"][c.label].astype(jnp.float32)
            )
    return loss, (stats, terms)


def generator_loss(
    fake_images: jax.Array,
    d_params,
    d_batch_stats,
    codes: latents_lib.Latents,
    *,
    discriminator: nn.Module,
    layout: latents_lib.LatentLayout,
    weights: losses.LossWeights,
    q_ss_view: Callable[[jax.Array], jax.Array] | None = None,
    q_ss_dropout_keys: jax.Array | None = None,
) -> tuple[jax.Array, Metrics]:
    """L_G through D in train mode; D's updated statistics are discarded. With `q_ss_view` (a
    Q_ss with a trunk of its own), Q_ss reads `q_ss_view(fake_images)`, differentiably; with
    `q_ss_dropout_keys` [B, 2] (a Q_ss with dropout), through the dropout masks they draw."""
    extra = {} if q_ss_view is None else {"q_ss_images": q_ss_view(fake_images)}
    if q_ss_dropout_keys is not None:
        extra["q_ss_dropout_keys"] = q_ss_dropout_keys
    fake, _ = discriminator.apply(
        {"params": d_params, "batch_stats": d_batch_stats},
        fake_images,
        train=True,
        mutable=["batch_stats"],
        **extra,
    )
    terms = {
        "g_gan": losses.gan_generator_loss(fake["logit"]),
        "g_ss": losses.codes_loss(layout.supervised_codes, fake["q"], codes),
        "g_us": losses.codes_loss(layout.unsupervised_codes, fake["q"], codes),
    }
    loss = terms["g_gan"] + weights.lambda_ss_g * terms["g_ss"]
    loss += weights.lambda_us_g * terms["g_us"]
    terms["g_loss"] = loss
    terms["mi_lower_bound"] = losses.mutual_information_lower_bound(
        layout.codes, fake["q"], codes, layout.continuous_range
    )
    for c in layout.codes:
        pred, target = fake["q"][c.name], codes[c.name]
        if c.categorical:
            terms[f"recovery_acc/{c.name}"] = losses.code_accuracy(c, pred, target)
        else:
            terms[f"recovery_mse/{c.name}"] = losses.code_loss(c, pred, target)
    return loss, terms


def _mean_over_devices(tree, axis_name: str | None):
    return tree if axis_name is None else jax.lax.pmean(tree, axis_name)


def train_step(
    state: TrainState,
    batch: Batch,
    *,
    generator: nn.Module,
    discriminator: nn.Module,
    layout: latents_lib.LatentLayout,
    weights: losses.LossWeights,
    instance_noise: InstanceNoise = _NO_INSTANCE_NOISE,
    augmentations: Augmentations = _DEFAULT_AUGMENTATIONS,
    g_ema_decay: float = 0.0,
    grad_norms: bool = False,
    axis_name: str | None = None,
) -> tuple[TrainState, Metrics]:
    """One ss-InfoGAN iteration: a D/Q update, then a G update on the same codes.

    Pure; bind the keyword arguments (e.g. with `bind_train_step`) and jit or pmap it. Under
    pmap/shard_map, `axis_name` averages gradients and metrics over devices; the modules must
    be built with the same axis name so that batch norm uses global statistics.

    Args:
      state: the train state.
      batch: `image` float32 [B, H, W, C] in G's output range, `label_masks` {label name:
        float32 [B]} (1 = labelled for that label), `labels` {label name: [B]} (anything where
        that label's mask is 0).
      g_ema_decay: > 0: the state (an `EmaTrainState`) moves its moving average of G towards
        G's new variables with `ema_decay(g_ema_decay, step)`.
      grad_norms: add d_grad_norm and g_grad_norm to the metrics (`config.log_grad_norms`).
    Returns:
      (new state, scalar metrics).
    """
    real_images = batch["image"]
    batch_size = real_images.shape[0]
    # Example i of the global batch draws its codes and noise from fold_in(step key, i), so N
    # devices with B/N examples each draw exactly what one device draws for all B.
    first = 0 if axis_name is None else jax.lax.axis_index(axis_name) * batch_size
    example_rng = jax.vmap(jax.random.fold_in, (None, 0))(
        jax.random.fold_in(state.rng, state.step), first + jnp.arange(batch_size)
    )
    code_rng, real_noise_rng, fake_noise_rng, shift_rng = jax.vmap(
        lambda key: jax.random.split(key, 4), out_axes=1
    )(example_rng)
    codes = jax.vmap(lambda key: latents_lib.sample(key, layout, 1))(code_rng)
    codes = jax.tree.map(lambda x: x[:, 0], codes)
    g, d = state.generator, state.discriminator
    real_images = _vary_labeled(real_images, batch["label_masks"], shift_rng, augmentations)

    def generate(g_params):
        images, mutated = generator.apply(
            {"params": g_params, "batch_stats": g.batch_stats},
            latents_lib.generator_input(layout, codes),
            train=True,
            mutable=["batch_stats"],
        )
        return images, mutated["batch_stats"]

    fake_images, generator_vjp, g_stats = jax.vjp(generate, g.params, has_aux=True)

    # D/Q update. Instance noise only here (not in the G update), as in the reference.
    sigma = instance_noise.sigma(state.step)
    d_real, d_fake = real_images, fake_images
    if instance_noise.stddev > 0:
        normal = jax.vmap(lambda key: jax.random.normal(key, real_images.shape[1:]))
        d_real = d_real + sigma * normal(real_noise_rng)
        d_fake = d_fake + sigma * normal(fake_noise_rng)
    aug = augmentations
    translate = functools.partial(augment.translate, fill=aug.image_range[0])
    shifted_real = q_ss_real = q_ss_fake = q_ss_view = None
    if weights.lambda_consistency > 0:
        shift = functools.partial(translate, max_shift=aug.consistency_max_shift)
        shifted_real = jax.vmap(shift)(shift_rng, d_real)
    own_q_ss = getattr(discriminator, "q_ss_own_trunk", False) and layout.supervised_codes
    if (aug.q_ss_max_shift or aug.q_ss_recolour) and not own_q_ss:
        raise ValueError("q_ss_max_shift and q_ss_recolour need a Q_ss with a trunk of its own")
    if own_q_ss:  # Q_ss's reals apart from D's, so that its trunk may skip the fakes.
        shift = functools.partial(translate, max_shift=aug.q_ss_max_shift)
        q_ss_rng = jax.vmap(jax.random.fold_in, (0, None))(shift_rng, 1)
        q_ss_real = jax.vmap(shift)(q_ss_rng, d_real)
    if aug.q_ss_recolour:
        recolour = functools.partial(augment.recolour, image_range=aug.image_range)
        real_rng, fake_rng = (jax.vmap(jax.random.fold_in, (0, None))(shift_rng, i) for i in (2, 3))
        q_ss_real = jax.vmap(recolour)(real_rng, q_ss_real)

        def q_ss_view(fakes):
            return jax.vmap(recolour)(fake_rng, fakes)

        q_ss_fake = q_ss_view(d_fake) if weights.q_ss_on_fakes else None
    dropout_keys = None
    if getattr(discriminator, "q_ss_dropout", 0.0) > 0 and layout.supervised_codes:
        # Per example, as every key here: the real's mask, then the fake's.
        dropout_keys = jnp.concatenate(
            [jax.vmap(jax.random.fold_in, (0, None))(shift_rng, i) for i in (6, 7)]
        )
    loss_kwargs = dict(discriminator=discriminator, layout=layout, weights=weights)
    d_grads, (d_stats, d_terms) = jax.grad(discriminator_loss, has_aux=True)(
        d.params,
        d.batch_stats,
        d_real,
        d_fake,
        batch,
        codes,
        **loss_kwargs,
        shifted_real_images=shifted_real,
        q_ss_real_images=q_ss_real,
        q_ss_fake_images=q_ss_fake,
        q_ss_dropout_keys=dropout_keys,
        step=state.step,
        axis_name=axis_name,
    )
    d_grads = _mean_over_devices(d_grads, axis_name)
    d = d.apply_gradients(d_grads, d_stats)

    # G update: gradient of L_G w.r.t. the image, pulled back through G's saved forward.
    image_grads, g_terms = jax.grad(generator_loss, has_aux=True)(
        fake_images,
        d.params,
        d.batch_stats,
        codes,
        **loss_kwargs,
        q_ss_view=q_ss_view,
        q_ss_dropout_keys=None if dropout_keys is None else dropout_keys[batch_size:],
    )
    (g_grads,) = generator_vjp(image_grads)
    g_grads = _mean_over_devices(g_grads, axis_name)
    g = g.apply_gradients(g_grads, g_stats)
    averaged = {}
    if g_ema_decay > 0:
        if not isinstance(state, EmaTrainState):
            raise ValueError("g_ema_decay > 0 needs an EmaTrainState (create_train_state)")
        new_g = {"params": g.params, "batch_stats": g.batch_stats}
        rate = 1.0 - ema_decay(g_ema_decay, state.step)
        averaged["generator_ema"] = optax.incremental_update(new_g, state.generator_ema, rate)

    metrics = {
        **d_terms,
        **g_terms,
        "labeled_fraction": labeled_fraction(batch["label_masks"]),
        "instance_noise": sigma,
    }
    if grad_norms:
        metrics["d_grad_norm"] = optax.tree.norm(d_grads)
        metrics["g_grad_norm"] = optax.tree.norm(g_grads)
    metrics = _mean_over_devices(metrics, axis_name)
    new_state = state.replace(step=state.step + 1, generator=g, discriminator=d, **averaged)
    return new_state, metrics


def _vary_labeled(
    images: jax.Array, label_masks: Mapping[str, jax.Array], rngs: jax.Array, aug: Augmentations
) -> jax.Array:
    """`images` with the labelled ones (for any label) warped and restroked as `aug` says,
    from per-example keys derived from `rngs` [B, 2]; unchanged when `aug` says nothing."""
    if not label_masks or not (
        aug.labeled_max_rotation or aug.labeled_max_scale or aug.labeled_restroke
    ):
        return images
    fill = aug.image_range[0]
    varied = images
    if aug.labeled_max_rotation or aug.labeled_max_scale:
        warp = functools.partial(
            augment.warp,
            max_rotation=aug.labeled_max_rotation,
            max_scale=aug.labeled_max_scale,
            fill=fill,
        )
        varied = jax.vmap(warp)(jax.vmap(jax.random.fold_in, (0, None))(rngs, 4), varied)
    if aug.labeled_restroke:
        restroke = functools.partial(augment.restroke, fill=fill)
        varied = jax.vmap(restroke)(jax.vmap(jax.random.fold_in, (0, None))(rngs, 5), varied)
    labelled = functools.reduce(jnp.maximum, [m > 0 for m in label_masks.values()])
    return jnp.where(labelled[:, None, None, None], varied, images)


def labeled_fraction(label_masks: Mapping[str, jax.Array]) -> jax.Array:
    """Share of the batch labelled for at least one label (0 when the data has no labels)."""
    if not label_masks:
        return jnp.zeros(())
    masks = [m.astype(jnp.float32) for m in label_masks.values()]
    return jnp.mean(functools.reduce(jnp.maximum, masks))


def bind_train_step(exp: Experiment, axis_name: str | None = None) -> TrainStep:
    """`train_step` with its dependencies bound from the experiment; not yet jitted."""
    generator, discriminator = exp.models(axis_name)
    return functools.partial(
        train_step,
        generator=generator,
        discriminator=discriminator,
        layout=exp.layout,
        weights=exp.weights,
        instance_noise=exp.instance_noise,
        augmentations=exp.augmentations,
        g_ema_decay=exp.optimizer.g_ema_decay,
        grad_norms=exp.log_grad_norms,
        axis_name=axis_name,
    )


def default_donation() -> bool:
    """Whether the step should donate the old state's buffers: everywhere but on CPU.

    There, donation made XLA copy 52 parameter and moment buffers every step (its fused Adam
    update still reads the old moments after writing the new ones in place), about 4% of a
    step at batch 256; a second state (~160 MB for MNIST) costs nothing there.
    """
    return jax.default_backend() != "cpu"


def make_train_step(exp: Experiment, donate: bool | None = None) -> TrainStep:
    """The jitted single-device train step `(state, batch) -> (state, metrics)`.

    `donate`: reuse the old state's buffers for the new state (None = `default_donation()`).
    """
    donate = default_donation() if donate is None else donate
    return jax.jit(bind_train_step(exp), donate_argnums=(0,) if donate else ())
