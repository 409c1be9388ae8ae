"""Each loss term of ss-InfoGAN as a small pure function (reference section 5).

D/Q side:  L_D = BCE(D(x_r), 1) + BCE(D(x_f), 0)
               + lambda_ss_d * L_ss(Q_ss(x_r), y; mask)          (real labelled examples only)
               + lambda_us_d * L_us(Q_us(x_f), c_us)
               [+ lambda_ss_d * L_ss(Q_ss(x_f), c_ss)  InfoGAN baseline; optional with labels]
               [+ lambda_consistency * KL(Q_ss(x_r) || Q_ss(shift(x_r)))   optional, not the paper]
G side:    L_G = BCE(D(x_f), 1)                                   (non-saturating)
               + lambda_ss_g * L_ss(Q_ss(x_f), c_ss) + lambda_us_g * L_us(Q_us(x_f), c_us)

A code's loss is cross-entropy for a categorical code and MSE (mean over batch and dims) for a
continuous one; the losses of several codes are summed with weight 1, as the reference's
ParallelCriterion does.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import optax

from ssinfogan_jax.latents import Code, LatentLayout


@dataclasses.dataclass(frozen=True)
class LossWeights:
    """Loss coefficients; the reference uses 2 / 0.8 on both sides."""

    lambda_ss_d: float = 2.0
    lambda_us_d: float = 0.8
    lambda_ss_g: float = 2.0
    lambda_us_g: float = 0.8
    # The InfoGAN baseline (no labels) trains Q_ss on fakes, as the reference does.
    q_ss_on_fakes: bool = False
    q_ss_on_fakes_start: int = 0  # The first step at which it does (0 without labels).
    lambda_consistency: float = 0.0  # Optional, not in the paper (`consistency_loss`).

    @classmethod
    def from_config(cls, loss: ml_collections.ConfigDict, has_labels: bool) -> LossWeights:
        """From `config.loss`; `has_labels`: the resolved labelled subset is not empty."""
        q_ss_on_fakes = loss.get("q_ss_on_fakes", None)
        if q_ss_on_fakes is None:  # Auto: exactly when there are no labels.
            q_ss_on_fakes = not has_labels
        return cls(
            lambda_ss_d=loss.lambda_ss_d,
            lambda_us_d=loss.lambda_us_d,
            lambda_ss_g=loss.lambda_ss_g,
            lambda_us_g=loss.lambda_us_g,
            q_ss_on_fakes=bool(q_ss_on_fakes),
            # Without labels the fakes are Q_ss's only teacher, from the first step.
            q_ss_on_fakes_start=int(loss.q_ss_on_fakes_start) if has_labels else 0,
            lambda_consistency=float(loss.lambda_consistency),
        )

    def ss_fake_weight(self, step: jax.Array) -> jax.Array:
        """The Q_ss-on-fakes coefficient at `step`: lambda_ss_d from `q_ss_on_fakes_start` on."""
        return jnp.where(step >= self.q_ss_on_fakes_start, self.lambda_ss_d, 0.0)


def _masked_mean(
    values: jax.Array, mask: jax.Array | None, axis_name: str | None = None
) -> jax.Array:
    """Mean of [B] values over examples with mask 1; exactly 0 when no example has mask 1.

    Under a device axis the count is global and the result is scaled by the device count, so
    that the mean over devices (of this value or of its gradients) is the global-batch masked
    mean even when devices hold different numbers of masked examples.
    """
    if mask is None:
        return jnp.mean(values)
    mask = mask.astype(values.dtype)
    total = jnp.sum(jnp.where(mask > 0, values, 0.0))
    count = jnp.sum(mask)
    if axis_name is not None:
        count = jax.lax.psum(jax.lax.stop_gradient(count), axis_name)
        total = total * jax.lax.psum(1, axis_name)
    return total / jnp.maximum(count, 1.0)


def gan_discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """BCE(D(x_r), 1) + BCE(D(x_f), 0), each a mean over its batch; logits [B]."""
    real = optax.sigmoid_binary_cross_entropy(real_logits, jnp.ones_like(real_logits))
    fake = optax.sigmoid_binary_cross_entropy(fake_logits, jnp.zeros_like(fake_logits))
    return jnp.mean(real) + jnp.mean(fake)


def gan_generator_loss(fake_logits: jax.Array) -> jax.Array:
    """Non-saturating G loss BCE(D(x_f), 1); logits [B]."""
    return jnp.mean(optax.sigmoid_binary_cross_entropy(fake_logits, jnp.ones_like(fake_logits)))


def code_loss(
    code: Code,
    prediction: jax.Array,
    target: jax.Array,
    mask: jax.Array | None = None,
    axis_name: str | None = None,
) -> jax.Array:
    """One code's loss, a (masked) mean over the batch.

    Args:
      code: the code.
      prediction: [B, size]: logits (categorical) or means (continuous).
      target: int [B] class indices (categorical) or float [B, size] / [B] values (continuous).
        Where mask is 0 the target may hold anything (a sentinel, NaN): it never reaches the
        value or any gradient.
      mask: optional [B], 1 where the target is known.
      axis_name: the device axis, for a masked mean over the global batch (`_masked_mean`).
    """
    keep = None if mask is None else mask > 0
    if code.categorical:
        target = target.astype(jnp.int32)
        if keep is not None:
            target = jnp.where(keep, target, 0)
        per_example = optax.softmax_cross_entropy_with_integer_labels(prediction, target)
    else:
        target = target.reshape(prediction.shape).astype(prediction.dtype)
        if keep is not None:
            target = jnp.where(keep[:, None], target, 0.0)
        per_example = jnp.mean(jnp.square(prediction - target), axis=-1)
    return _masked_mean(per_example, mask, axis_name)


def codes_loss(
    codes: Sequence[Code],
    predictions: Mapping[str, jax.Array],
    targets: Mapping[str, jax.Array],
    mask: jax.Array | None = None,
    axis_name: str | None = None,
) -> jax.Array:
    """Sum of `code_loss` over codes; targets are keyed by code name. 0 for no codes."""
    return sum(
        (code_loss(c, predictions[c.name], targets[c.name], mask, axis_name) for c in codes),
        start=jnp.zeros(()),
    )


def label_mask_of(label_masks: Mapping[str, jax.Array] | jax.Array, label: str) -> jax.Array:
    """The [B] mask of `label`: from a {label: [B]} mapping, or one [B] mask for all labels."""
    return label_masks[label] if isinstance(label_masks, Mapping) else label_masks


def supervised_loss(
    layout: LatentLayout,
    predictions: Mapping[str, jax.Array],
    labels: Mapping[str, jax.Array],
    label_masks: Mapping[str, jax.Array] | jax.Array,
    axis_name: str | None = None,
) -> jax.Array:
    """L_ss on real data: each c_ss code against its data set label, on the examples labelled
    for that label only (each code's masked mean counts its own label's examples).

    Args:
      labels: data set label name -> [B] (or [B, size] for continuous labels).
      label_masks: label name -> [B] (or one [B] mask shared by all labels); examples with
        mask 0 for a label contribute exactly nothing to that label's code.
    """
    return sum(
        (
            code_loss(
                c,
                predictions[c.name],
                labels[c.label],
                label_mask_of(label_masks, c.label),
                axis_name,
            )
            for c in layout.supervised_codes
        ),
        start=jnp.zeros(()),
    )


def code_accuracy(
    code: Code,
    prediction: jax.Array,
    target: jax.Array,
    mask: jax.Array | None = None,
    axis_name: str | None = None,
) -> jax.Array:
    """Fraction of (masked) examples whose argmax matches a categorical target."""
    correct = (jnp.argmax(prediction, axis=-1) == target.astype(jnp.int32)).astype(jnp.float32)
    return _masked_mean(correct, mask, axis_name)


def consistency_loss(
    codes: Sequence[Code],
    predictions: Mapping[str, jax.Array],
    shifted_predictions: Mapping[str, jax.Array],
) -> jax.Array:
    """How much Q's outputs move when its input is translated, summed over codes.

    Categorical: mean KL(p || p_shifted) of the softmaxes; continuous: mean squared change.
    `predictions` are the targets and get no gradient (as in UDA), so only the shifted view
    is pulled towards the unshifted one.
    """
    total = jnp.zeros(())
    for c in codes:
        target = jax.lax.stop_gradient(predictions[c.name])
        shifted = shifted_predictions[c.name]
        if c.categorical:
            log_p = jax.nn.log_softmax(target)
            kl = jnp.sum(jnp.exp(log_p) * (log_p - jax.nn.log_softmax(shifted)), axis=-1)
            total += jnp.mean(kl)
        else:
            total += jnp.mean(jnp.square(shifted - target))
    return total


def mutual_information_lower_bound(
    codes: Sequence[Code],
    predictions: Mapping[str, jax.Array],
    targets: Mapping[str, jax.Array],
    continuous_range: float = 1.0,
) -> jax.Array:
    """InfoGAN's variational bound L_I = H(c) + E[log Q(c | x)], in nats, summed over codes.

    Categorical codes: H = log k (uniform prior), log Q from the logits. Continuous codes:
    H = log(2r) per dim (uniform on [-r, r], r = `continuous_range`, the layout's), Q a
    unit-variance Gaussian around the prediction (so -log Q = 0.5 log(2 pi) + 0.5 (c - mu)^2),
    as openai/InfoGAN's fixed-std Q.
    """
    bound = jnp.zeros(())
    for c in codes:
        pred, target = predictions[c.name], targets[c.name]
        if c.categorical:
            ce = optax.softmax_cross_entropy_with_integer_labels(pred, target.astype(jnp.int32))
            bound += math.log(c.size) - jnp.mean(ce)
        else:
            nll = 0.5 * math.log(2 * math.pi) + 0.5 * jnp.square(pred - target)
            bound += c.size * math.log(2.0 * continuous_range) - jnp.mean(jnp.sum(nll, axis=-1))
    return bound
