"""The train state and the pure ss-InfoGAN train step.

One iteration (reference section 6):
  1. sample codes (c_ss, c_us, noise) from `fold_in(state.rng, step)`; G forward in train mode
     (its batch-norm statistics update once);
  2. one Adam update of D (trunk + D head + Q_ss + Q_us) on L_D, real and fake in separate D
     passes, both passes' batch-norm statistics kept (real, then fake on top);
  3. one Adam update of G on L_G with the same codes and G output, through the *updated* D. That
     D pass only carries gradients to the image: D's parameters and statistics are untouched.

G's forward is computed once and reused for its update through `jax.vjp` (the reference reuses
the output too: G has not changed in between).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from etils import epath
from flax import struct

from ssinfogan_jax import (
    checkpointing,
    compilation_cache,
    evaluation,
    losses,
    models,
    parallel,
    sampling,
)
from ssinfogan_jax import latents as latents_lib
from ssinfogan_jax.data import augment
from ssinfogan_jax.evaluation import evaluator as evaluator_lib

# The loop's data pipeline and TensorBoard writer bring in TensorFlow (~5 s): they are imported
# inside the loop's functions, so that research code importing the train step stays light.

Batch = Mapping[str, Any]  # image [B, H, W, C] float32, label_mask [B], labels {name: [B]}
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


@dataclasses.dataclass(frozen=True)
class InstanceNoise:
    """Gaussian noise on D's inputs in the D step: sigma_t = stddev * decay**t."""

    stddev: float = 0.0
    decay: float = 1.0

    def sigma(self, step: jax.Array) -> jax.Array:
        return self.stddev * jnp.power(self.decay, step.astype(jnp.float32))


@dataclasses.dataclass(frozen=True)
class Consistency:
    """The translations of the optional consistency loss (not in the paper; its weight is
    `LossWeights.lambda_consistency`): Q_ss on a translated copy of the real batch should
    match Q_ss on the batch. It lets the unlabelled reals shape Q_ss, which otherwise learns
    from the few labelled ones alone (reference section 5)."""

    max_shift: int = 2
    fill: float = -1.0  # The image range's background (vacated pixels).


def _adam(learning_rate: float, config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    return optax.adam(learning_rate, b1=config.b1, b2=config.b2, eps=config.eps)


def create_models(config: ml_collections.ConfigDict, axis_name: str | None = None):
    """(layout, G, D) for a config."""
    layout = latents_lib.LatentLayout.from_config(config.latents)
    generator, discriminator = models.create_models(config.model.arch, layout, axis_name)
    return layout, generator, discriminator


def create_train_state(rng: jax.Array, config: ml_collections.ConfigDict) -> TrainState:
    """Initialises G, D and both Adam states. `rng` seeds init and every step's randomness."""
    layout, generator, discriminator = create_models(config)
    init_rng, g_rng, d_rng = jax.random.split(rng, 3)
    image_shape = models.get_architecture(config.model.arch).image_shape
    z = jnp.zeros((1, layout.input_size), jnp.float32)
    images = jnp.zeros((1, *image_shape), jnp.float32)
    g_vars = jax.jit(functools.partial(generator.init, train=False))(g_rng, z)
    d_vars = jax.jit(functools.partial(discriminator.init, train=False))(d_rng, images)
    opt = config.optimizer
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        rng=init_rng,
        generator=NetworkState.create(g_vars, _adam(opt.g_learning_rate, opt)),
        discriminator=NetworkState.create(d_vars, _adam(opt.d_learning_rate, opt)),
    )


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
    step: jax.Array | int = 0,
    axis_name: str | None = None,
) -> tuple[jax.Array, tuple[Any, Metrics]]:
    """L_D with real and fake in separate train-mode passes; returns (loss, (stats, terms)).

    Under a device axis, the supervised term counts labelled examples over all devices. With
    `shifted_real_images`, a third pass adds the consistency term; its batch statistics are
    not kept (the running statistics describe untranslated data).
    """

    def forward(stats, images):
        out, mutated = discriminator.apply(
            {"params": d_params, "batch_stats": stats}, images, train=True, mutable=["batch_stats"]
        )
        return out, mutated["batch_stats"]

    real, stats = forward(d_batch_stats, real_images)
    fake, stats = forward(stats, fake_images)
    terms = {
        "d_gan": losses.gan_discriminator_loss(real["logit"], fake["logit"]),
        "d_ss_real": losses.supervised_loss(
            layout, real["q"], batch["labels"], batch["label_mask"], axis_name
        ),
        "d_us": losses.codes_loss(layout.unsupervised_codes, fake["q"], codes),
    }
    loss = terms["d_gan"] + weights.lambda_ss_d * terms["d_ss_real"]
    loss += weights.lambda_us_d * terms["d_us"]
    if weights.q_ss_on_fakes:
        terms["d_ss_fake"] = losses.codes_loss(layout.supervised_codes, fake["q"], codes)
        loss += weights.ss_fake_weight(step) * terms["d_ss_fake"]
    if shifted_real_images is not None:
        shifted, _ = forward(stats, shifted_real_images)
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
                c, real["q"][c.name], batch["labels"][c.label], batch["label_mask"], axis_name
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
) -> tuple[jax.Array, Metrics]:
    """L_G through D in train mode; D's updated statistics are discarded."""
    fake, _ = discriminator.apply(
        {"params": d_params, "batch_stats": d_batch_stats},
        fake_images,
        train=True,
        mutable=["batch_stats"],
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
    instance_noise: InstanceNoise = InstanceNoise(),
    consistency: Consistency = Consistency(),
    axis_name: str | None = None,
) -> tuple[TrainState, Metrics]:
    """One ss-InfoGAN iteration: a D/Q update, then a G update on the same codes.

    Pure; bind the keyword arguments (e.g. with `bind_train_step`) and jit or pmap it. Under
    pmap/shard_map, `axis_name` averages gradients and metrics over devices; the modules must
    be built with the same axis name so that batch norm uses global statistics.

    Args:
      state: the train state.
      batch: `image` float32 [B, H, W, C] in G's output range, `label_mask` float32 [B] (1 =
        labelled), `labels` {label name: [B]} (anything where the mask is 0).
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
    shifted_real = None
    if weights.lambda_consistency > 0:
        translate = functools.partial(
            augment.translate, max_shift=consistency.max_shift, fill=consistency.fill
        )
        shifted_real = jax.vmap(translate)(shift_rng, d_real)
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
        step=state.step,
        axis_name=axis_name,
    )
    d_grads = _mean_over_devices(d_grads, axis_name)
    d = d.apply_gradients(d_grads, d_stats)

    # G update: gradient of L_G w.r.t. the image, pulled back through G's saved forward.
    image_grads, g_terms = jax.grad(generator_loss, has_aux=True)(
        fake_images, d.params, d.batch_stats, codes, **loss_kwargs
    )
    (g_grads,) = generator_vjp(image_grads)
    g_grads = _mean_over_devices(g_grads, axis_name)
    g = g.apply_gradients(g_grads, g_stats)

    metrics = {
        **d_terms,
        **g_terms,
        "d_grad_norm": optax.tree.norm(d_grads),
        "g_grad_norm": optax.tree.norm(g_grads),
        "labeled_fraction": jnp.mean(batch["label_mask"].astype(jnp.float32)),
        "instance_noise": sigma,
    }
    metrics = _mean_over_devices(metrics, axis_name)
    new_state = state.replace(step=state.step + 1, generator=g, discriminator=d)
    return new_state, metrics


def bind_train_step(config: ml_collections.ConfigDict, axis_name: str | None = None) -> TrainStep:
    """`train_step` with its dependencies bound from the config; not yet jitted."""
    layout, generator, discriminator = create_models(config, axis_name)
    return functools.partial(
        train_step,
        generator=generator,
        discriminator=discriminator,
        layout=layout,
        weights=losses.LossWeights.from_config(config),
        instance_noise=InstanceNoise(
            float(config.instance_noise.stddev), float(config.instance_noise.decay)
        ),
        consistency=Consistency(
            int(config.loss.consistency_max_shift),
            float(models.get_architecture(config.model.arch).image_range[0]),
        ),
        axis_name=axis_name,
    )


def make_train_step(config: ml_collections.ConfigDict, donate: bool | None = None) -> TrainStep:
    """The jitted single-device train step `(state, batch) -> (state, metrics)`.

    `donate`: reuse the old state's buffers for the new state. None = donate except on CPU:
    there, donation made XLA copy 52 parameter and moment buffers every step (its fused Adam
    update still reads the old moments after writing the new ones in place), about 4% of a
    step at batch 256; a second state (~160 MB for MNIST) costs nothing there.
    """
    if donate is None:
        donate = jax.default_backend() != "cpu"
    return jax.jit(bind_train_step(config), donate_argnums=(0,) if donate else ())


# The training loop: ties data, the step, checkpoints, evaluation and logs together.


EVAL_HISTORY = "eval_history.jsonl"  # One JSON line of eval metrics per evaluation.


class _PreemptionFlag:
    """Set by SIGTERM (a TPU preemption notice); the loop then saves and exits."""

    def __init__(self):
        self.raised = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        logging.warning("SIGTERM: saving a checkpoint and exiting.")
        self.raised = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def _check_finite(metrics: dict[str, float], step: int, checkpointer) -> None:
    bad = {k: v for k, v in metrics.items() if not np.isfinite(v)}
    if bad:
        last = checkpointer.latest_step()
        where = (
            f"the last good checkpoint is step {last} in {checkpointer.workdir}"
            if last is not None
            else "no checkpoint was written"
        )
        raise FloatingPointError(
            f"non-finite metrics at step {step}: {bad}; training stopped without saving; {where}"
        )


def _progress_line(step: int, total: int, steps_per_sec: float, metrics: dict) -> str:
    eta_min = (total - step) / max(steps_per_sec, 1e-9) / 60
    shown = ("d_loss", "g_loss", "d_real", "d_fake", "mi_lower_bound", "labeled_fraction")
    values = " ".join(f"{k}={metrics[k]:.4f}" for k in shown if k in metrics)
    return f"step {step}/{total} | {steps_per_sec:.2f} steps/s | ETA {eta_min:.1f} min | {values}"


def _format_metrics(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()))


def independent_classifier(
    config: ml_collections.ConfigDict, test_split, train_split
) -> evaluation.Classifier | None:
    """The classifier that judges samples: loaded, or trained on the *test* split and
    validated on the *train* split (the paper's protocol), then saved for later runs."""
    layout = latents_lib.LatentLayout.from_config(config.latents)
    code = evaluator_lib.classifier_code(layout)
    if code is None:
        return None
    from ssinfogan_jax.data import builders

    root = config.eval.classifier_dir or os.path.join(
        builders.default_data_dir(config.data.data_dir), "ssinfogan_classifiers"
    )
    # Keyed by what shapes it (a smoke run's never stands in for a real one); never by the
    # training seed: every run of a data set is judged by the same classifier.
    steps, seed = config.eval.classifier_steps, config.eval.classifier_seed
    path = os.path.join(root, f"{config.data.name}_{code.label}_steps{steps}_seed{seed}")
    if epath.Path(path, evaluation.classifier.INFO_FILE).exists():
        classifier = evaluation.load(path)
        logging.info("Independent classifier from %s (val acc %s).", path, classifier.val_accuracy)
        return classifier
    logging.info("Training the independent classifier for %r on the test split.", code.label)
    (test_images, test_labels), (train_images, train_labels) = test_split, train_split
    classifier, val_accuracy = evaluation.train_classifier(
        test_images,
        test_labels[code.label],
        train_images,
        train_labels[code.label],
        num_classes=code.size,
        seed=config.eval.classifier_seed,
        num_steps=config.eval.classifier_steps,
    )
    logging.info("Independent classifier: %.4f accuracy on the train split.", val_accuracy)
    if jax.process_index() == 0:
        classifier.save(path)
    return classifier


def _setup(config: ml_collections.ConfigDict, workdir: str):
    """What every mode needs: checks, the compilation cache, a fresh state, the checkpointer."""
    from ssinfogan_jax import config_checks

    config_checks.validate(config)
    if config.compilation_cache_dir:
        compilation_cache.enable(config.compilation_cache_dir)
    checkpointer = checkpointing.Checkpointer(
        workdir, config.max_checkpoints_to_keep, config.best_metric
    )
    state = create_train_state(jax.random.PRNGKey(config.seed), config)
    return state, checkpointer


def _make_evaluator(config: ml_collections.ConfigDict) -> evaluator_lib.Evaluator:
    from ssinfogan_jax import input_pipeline

    test_split = input_pipeline.load_split(config, "test")
    classifier = None
    if evaluator_lib.classifier_code(latents_lib.LatentLayout.from_config(config.latents)):
        train_split = input_pipeline.load_split(config, "train")
        classifier = independent_classifier(config, test_split, train_split)
    return evaluator_lib.Evaluator(config, *test_split, classifier)


def _data_parallel(config: ml_collections.ConfigDict) -> parallel.DataParallel:
    """The step and state placement: plain jit on one device, else pmap or shard_map."""
    kind = config.parallel
    if kind == "auto":
        kind = "pmap" if jax.device_count() > 1 else "jit"
    if kind == "jit":
        return parallel.DataParallel(
            "jit", make_train_step(config), jax.device_put, lambda batch: batch, jax.device_get
        )
    return parallel.DataParallel.create(config, kind=kind)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
    """Trains from scratch, or resumes from the latest checkpoint in `workdir`.

    Writes TensorBoard events, the latest and best checkpoints, the labelled subset and the
    config into `workdir`; returns the final evaluation metrics.
    """
    state, checkpointer = _setup(config, workdir)
    if checkpointer.latest_step() is not None:  # Before writing anything into the work dir.
        state, meta = checkpointer.restore(state)
        logging.info("Resumed from step %d in %s.", meta["step"], workdir)
    from clu import metric_writers

    from ssinfogan_jax import input_pipeline

    epath.Path(workdir).mkdir(parents=True, exist_ok=True)
    is_main = jax.process_index() == 0
    if is_main:
        epath.Path(workdir, "config.json").write_text(config.to_json_best_effort(indent=2))
    # TensorBoard on host 0 only; the progress line below is the log.
    writer = metric_writers.SummaryWriter(workdir) if is_main else metric_writers.MultiWriter([])
    data = input_pipeline.create_train_data(
        config, workdir, process_index=jax.process_index(), process_count=jax.process_count()
    )
    start_step = int(state.step)
    evaluator = _make_evaluator(config)
    dp = _data_parallel(config)
    state = dp.replicate(state)

    eval_metrics: dict[str, float] = {}
    history, last_time, last_step = [], time.time(), start_step
    batches = data.iterate(start_step)
    try:
        with _PreemptionFlag() as preemption:
            for step in range(start_step + 1, config.num_train_steps + 1):
                state, metrics = dp.train_step(state, dp.shard(next(batches)))
                history.append(metrics)
                is_last = step == config.num_train_steps
                if step % config.log_every_steps == 0 or is_last or preemption.raised:
                    summary = jax.device_get(history)
                    summary = {k: float(np.mean([m[k] for m in summary])) for k in summary[0]}
                    history = []
                    _check_finite(summary, step, checkpointer)
                    now = time.time()
                    rate = (step - last_step) / (now - last_time)
                    last_time, last_step = now, step
                    writer.write_scalars(step, {**summary, "steps_per_sec": rate})
                    logging.info(_progress_line(step, config.num_train_steps, rate, summary))
                host_state = None
                if preemption.raised or is_last or step % config.checkpoint_every_steps == 0:
                    host_state = dp.unreplicate(state)
                    checkpointer.save(step, host_state)
                if preemption.raised:
                    logging.warning("Saved step %d after SIGTERM; exiting.", step)
                    break
                if (config.eval_every_steps and step % config.eval_every_steps == 0) or is_last:
                    host_state = host_state or dp.unreplicate(state)
                    eval_metrics = evaluator.evaluate(host_state)
                    writer.write_scalars(step, eval_metrics)
                    if is_main:  # Plain-text history beside TensorBoard, for sweeps and plots.
                        with epath.Path(workdir, EVAL_HISTORY).open("a") as f:
                            f.write(json.dumps({"step": step, **eval_metrics}) + "\n")
                    logging.info("eval at step %d: %s", step, _format_metrics(eval_metrics))
                    if config.best_metric in eval_metrics:
                        checkpointer.save_best(step, host_state, eval_metrics)
                if (config.images_every_steps and step % config.images_every_steps == 0) or is_last:
                    host_state = host_state or dp.unreplicate(state)
                    writer.write_images(step, evaluator.image_grids(host_state))
    finally:  # Pending async saves complete even when a NaN or an error stops the loop.
        checkpointer.wait_until_finished()
        checkpointer.close()
        writer.flush()
    return eval_metrics


def _restore_for_inference(config, workdir: str, which: str):
    state, checkpointer = _setup(config, workdir)
    state, meta = checkpointer.restore(state, which=which)
    checkpointer.close()
    return state, meta["step"]


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
    """Evaluates the latest (or `config.sample.checkpoint`) checkpoint; writes eval_<step>.json."""
    state, step = _restore_for_inference(config, workdir, config.sample.checkpoint)
    result = _make_evaluator(config).evaluate(state)
    if jax.process_index() == 0:
        path = os.path.join(workdir, f"eval_{step}.json")
        epath.Path(path).write_text(json.dumps({"step": step, **result}, indent=2))
        logging.info("Wrote %s.", path)
    return result


def sample(config: ml_collections.ConfigDict, workdir: str) -> dict[str, str]:
    """Generates from a checkpoint into <workdir>/samples (see sampling.write_samples)."""
    state, step = _restore_for_inference(config, workdir, config.sample.checkpoint)
    layout, generator, _ = create_models(config)
    g = state.generator
    generate = sampling.make_generate_fn(
        generator, layout, {"params": g.params, "batch_stats": g.batch_stats}
    )
    written = sampling.write_samples(
        generate,
        layout,
        jax.random.PRNGKey(config.seed),
        os.path.join(workdir, "samples"),
        models.get_architecture(config.model.arch).image_range,
        per_value=config.sample.per_value,
        traversal_rows=config.sample.traversal_rows,
        traversal_values=config.sample.traversal_values,
    )
    logging.info("Samples of step %d written to %s.", step, os.path.join(workdir, "samples"))
    return written
