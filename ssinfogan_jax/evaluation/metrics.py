"""Host-side metrics of a trained generator and of D's Q heads.

Conditional accuracy (the paper's measure): for each value k of a categorical code, generate N
samples with that code fixed to k, classify them with the independent classifier, and compare:

- direct: code value k should give class k (what semi-supervision should deliver);
- mapped: under the best one-to-one map from code values to classes (what unsupervised InfoGAN
  needs). `method='hungarian'` maximises the number of matches exactly
  (scipy.optimize.linear_sum_assignment); `method='greedy'` is the reference's bijection
  (spurra/ss-infogan helper_functions.lua): repeatedly take the largest remaining entry of the
  [code value, class] score matrix, map that row to that column, blank both. Greedy can be
  suboptimal; it is kept to compare with the original's figures.

A supervised continuous code is judged by a sweep: the code set to evenly spaced values of its
range (every other code from its prior), the independent classifier's regression of its label
on the samples, and the Pearson correlation of the two (`evaluate_continuous`).

Mode collapse, which conditional accuracy cannot see (one sample per code value, repeated,
can be classified perfectly), shows in `within_group_spread`: how much the classifier's features
of the samples of one code value vary, against the real images of one class.

The MI lower bound is `losses.mutual_information_lower_bound`. Nothing here depends on the
training loop: G enters as a `generate(latents) -> images`
callable and the classifier as a `classify(images) -> logits` callable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import jax
import numpy as np
import scipy.optimize
import scipy.special

from ssinfogan_jax import latents as latents_lib
from ssinfogan_jax.evaluation import batching

MAPPING_METHODS = ("hungarian", "greedy")

GenerateFn = Callable[[Mapping[str, jax.Array]], jax.Array]
ClassifyFn = Callable[[np.ndarray], np.ndarray]


def confusion_matrix(predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts [K, C] int64 from predicted classes [K, N] (row k: the N samples of code value k)."""
    predictions = np.asarray(predictions)
    if predictions.ndim != 2:
        raise ValueError(f"predictions: expected [K, N], got shape {predictions.shape}")
    if predictions.size and (predictions.min() < 0 or predictions.max() >= num_classes):
        raise ValueError(f"predictions: values outside [0, {num_classes})")
    counts = np.zeros((predictions.shape[0], num_classes), np.int64)
    for k, row in enumerate(predictions):
        counts[k] = np.bincount(row.astype(np.int64), minlength=num_classes)
    return counts


def hungarian_mapping(scores: np.ndarray) -> np.ndarray:
    """The one-to-one map rows -> columns maximising the summed scores [K, C].

    Returns:
      int64 [K]: the column of each row; -1 for rows left unmapped when K > C.
    """
    scores = np.asarray(scores, np.float64)
    rows, cols = scipy.optimize.linear_sum_assignment(scores, maximize=True)
    mapping = np.full(scores.shape[0], -1, np.int64)
    mapping[rows] = cols
    return mapping


def greedy_mapping(scores: np.ndarray) -> np.ndarray:
    """The reference's greedy bijection on scores [K, C]: largest remaining entry first.

    Ties go to the first entry in row-major order. Returns int64 [K], -1 for unmapped rows.
    """
    scores = np.array(scores, np.float64)
    mapping = np.full(scores.shape[0], -1, np.int64)
    for _ in range(min(scores.shape)):
        row, col = np.unravel_index(np.argmax(scores), scores.shape)
        mapping[row] = col
        scores[row, :] = -np.inf
        scores[:, col] = -np.inf
    return mapping


def class_mapping(scores: np.ndarray, method: str = "hungarian") -> np.ndarray:
    """`hungarian_mapping` or `greedy_mapping` of scores [K, C] by name."""
    if method == "hungarian":
        return hungarian_mapping(scores)
    if method == "greedy":
        return greedy_mapping(scores)
    raise ValueError(f"method: {method!r}, expected one of {MAPPING_METHODS}")


@dataclasses.dataclass(frozen=True)
class ConditionalAccuracy:
    """Conditional accuracy of K code values judged by a C-class classifier.

    Attributes:
      direct: fraction of samples whose class equals their code value (code k = class k).
      mapped: fraction whose class equals mapping[code value].
      mapping: int64 [K], the class each code value is mapped to (-1: unmapped).
      per_value_direct, per_value_mapped: float64 [K], the same per code value.
      confusion: int64 [K, C] counts.
    """

    direct: float
    mapped: float
    mapping: np.ndarray
    per_value_direct: np.ndarray
    per_value_mapped: np.ndarray
    confusion: np.ndarray

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        """Scalars for logging: {prefix}direct, {prefix}mapped."""
        return {f"{prefix}direct": self.direct, f"{prefix}mapped": self.mapped}


def conditional_accuracy(
    predictions: np.ndarray,
    num_classes: int | None = None,
    method: str = "hungarian",
    scores: np.ndarray | None = None,
) -> ConditionalAccuracy:
    """Direct and mapped accuracy of predicted classes [K, N] (row k: samples of code value k).

    Args:
      predictions: int [K, N], the classifier's class for each of N samples per code value.
      num_classes: C; defaults to K.
      method: 'hungarian' (best one-to-one map) or 'greedy' (the reference's).
      scores: optional [K, C] matrix the map is chosen on (the reference uses the classifier's
        mean output per code value); defaults to the confusion counts.
    """
    predictions = np.asarray(predictions)
    num_values = predictions.shape[0]
    num_classes = num_values if num_classes is None else num_classes
    confusion = confusion_matrix(predictions, num_classes)
    n = predictions.shape[1]
    mapping = class_mapping(confusion if scores is None else scores, method)
    values = np.arange(num_values)
    direct_counts = np.zeros(num_values, np.int64)  # Code values >= C have no class k.
    direct_counts[: min(num_values, num_classes)] = np.diagonal(confusion)
    mapped_counts = np.where(mapping >= 0, confusion[values, np.maximum(mapping, 0)], 0)
    per_value_direct = direct_counts / n
    per_value_mapped = mapped_counts / n
    return ConditionalAccuracy(
        direct=float(per_value_direct.mean()),
        mapped=float(per_value_mapped.mean()),
        mapping=mapping,
        per_value_direct=per_value_direct,
        per_value_mapped=per_value_mapped,
        confusion=confusion,
    )


def conditional_samples(
    generate: GenerateFn,
    layout: latents_lib.LatentLayout,
    code_name: str,
    num_per_value: int,
    rng: jax.Array,
    batch_size: int | None = None,
    paired: bool = False,
) -> np.ndarray:
    """Generated images for each value of a categorical code: [K, N, H, W, C] (numpy).

    Args:
      generate: latents dict (as from `latents.sample`, batch B) -> images [B, H, W, C]; e.g.
        `lambda z: g.apply(g_vars, latents.generator_input(layout, z), train=False)`.
      layout: the latent layout.
      code_name: a categorical code (usually a c_ss code).
      num_per_value: N.
      rng: PRNG key; the same key gives the same latents.
      batch_size: largest batch passed to `generate` (default: N).
      paired: share the other codes and noise across code values (see `conditional_latents`).
    """
    batch_size = batch_size or num_per_value
    per_value = latents_lib.conditional_latents(rng, layout, code_name, num_per_value, paired)
    images = batching.batched_apply(generate, latents_lib.concatenate(per_value), batch_size)
    return images.reshape(len(per_value), num_per_value, *images.shape[1:])


def evaluate_conditional(
    generate: GenerateFn,
    classify: ClassifyFn,
    layout: latents_lib.LatentLayout,
    code_name: str,
    num_per_value: int,
    rng: jax.Array,
    num_classes: int | None = None,
    method: str = "hungarian",
    batch_size: int | None = None,
) -> ConditionalAccuracy:
    """Conditional accuracy of G for one categorical code, judged by `classify`.

    `classify(images [B, H, W, C]) -> logits [B, C]` (e.g. `Classifier.predict`); samples are
    drawn with `conditional_samples`. With `method='greedy'` the map is chosen, as in the
    reference, on the classifier's mean softmax per code value.
    """
    images = conditional_samples(generate, layout, code_name, num_per_value, rng, batch_size)
    return classify_conditional(images, classify, num_classes, method)


def classify_conditional(
    images: np.ndarray,
    classify: ClassifyFn,
    num_classes: int | None = None,
    method: str = "hungarian",
) -> ConditionalAccuracy:
    """`evaluate_conditional` on samples already drawn: images [K, N, H, W, C] (K code values,
    as `conditional_samples` returns them)."""
    k, n = images.shape[:2]
    logits = np.asarray(classify(images.reshape(k * n, *images.shape[2:])), np.float64)
    logits = logits.reshape(k, n, -1)
    num_classes = logits.shape[-1] if num_classes is None else num_classes
    scores = None
    if method == "greedy":
        scores = scipy.special.softmax(logits, axis=-1).mean(axis=1)
    return conditional_accuracy(logits.argmax(-1), num_classes, method, scores)


def is_labeled(values: np.ndarray) -> np.ndarray:
    """bool [N]: which examples carry a label (unlabelled: -1 for a class, NaN for a value)."""
    values = np.asarray(values)
    return ~np.isnan(values) if values.dtype.kind == "f" else values >= 0


def label_accuracy(
    predictions: np.ndarray, labels: np.ndarray, num_classes: int, method: str = "hungarian"
) -> ConditionalAccuracy:
    """Accuracy of code predictions on real labelled data (e.g. Q_ss argmax on the test split).

    Direct: prediction == label. Mapped: mapping[prediction] == label, the map chosen on the
    [predicted code, true class] counts. Fractions are over all examples (not per class).

    Args:
      predictions: int [N] predicted code values (argmax of Q_ss logits).
      labels: int [N] true classes.
      num_classes: K = C.
    """
    predictions, labels = np.asarray(predictions, np.int64), np.asarray(labels, np.int64)
    if predictions.shape != labels.shape or predictions.ndim != 1:
        raise ValueError(f"predictions {predictions.shape} and labels {labels.shape}: want [N]")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        # np.add.at would wrap -1 (unlabelled) onto the last class.
        raise ValueError(f"labels: want classes in [0, {num_classes}); select is_labeled first")
    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (predictions, labels), 1)
    mapping = class_mapping(confusion, method)
    per_code = np.maximum(confusion.sum(axis=1), 1)
    values = np.arange(num_classes)
    mapped_counts = np.where(mapping >= 0, confusion[values, np.maximum(mapping, 0)], 0)
    return ConditionalAccuracy(
        direct=float(np.mean(predictions == labels)),
        mapped=float(mapped_counts.sum() / max(len(labels), 1)),
        mapping=mapping,
        per_value_direct=np.diagonal(confusion) / per_code,
        per_value_mapped=mapped_counts / per_code,
        confusion=confusion,
    )


def within_group_spread(features: np.ndarray, groups: np.ndarray) -> float:
    """Mean over groups (with at least 2 members) of the total variance of their features.

    Args:
      features: float [N, F], e.g. the independent classifier's features.
      groups: int [N]: each row's group (a class, a code value); rows with -1 are left out.

    The total variance is the trace of the covariance: the mean squared distance of a group's
    rows from their mean. Mode collapse (G ignoring its other latents for a fixed code value)
    takes it to 0 for the samples of each value.
    """
    features = np.asarray(features, np.float64).reshape(len(features), -1)
    groups = np.asarray(groups)
    spreads = [
        features[groups == g].var(axis=0).sum()
        for g in np.unique(groups[is_labeled(groups)])
        if np.sum(groups == g) >= 2
    ]
    if not spreads:
        raise ValueError("within_group_spread: no group has 2 or more rows")
    return float(np.mean(spreads))


def code_recovery(codes: np.ndarray, predictions: np.ndarray) -> dict[str, np.ndarray]:
    """How well Q_us recovers a continuous code on fakes.

    Args:
      codes: float [N, D] the c_us values G was given.
      predictions: float [N, D] Q_us's estimates.

    Returns:
      'mse' float64 [D] mean squared error per dimension; 'correlation' float64 [D] Pearson
      correlation per dimension (NaN where either side is constant).
    """
    codes = np.asarray(codes, np.float64).reshape(len(codes), -1)
    predictions = np.asarray(predictions, np.float64).reshape(codes.shape)
    mse = np.mean(np.square(predictions - codes), axis=0)
    a, b = codes - codes.mean(axis=0), predictions - predictions.mean(axis=0)
    denominator = np.sqrt(np.sum(a * a, axis=0) * np.sum(b * b, axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        correlation = np.where(denominator > 0, np.sum(a * b, axis=0) / denominator, np.nan)
    return {"mse": mse, "correlation": correlation}


def continuous_sweep_latents(
    rng: jax.Array,
    layout: latents_lib.LatentLayout,
    code_name: str,
    num_values: int,
    num_per_value: int,
) -> tuple[latents_lib.Latents, np.ndarray]:
    """Latents that sweep one continuous code (dimension 0) over `num_values` evenly spaced
    values of its prior's range [-r, r], `num_per_value` each; every other code and the noise
    from its prior. Returns (latents with B = num_values * num_per_value, the swept values [B])."""
    code = layout.code(code_name)
    if code.categorical:
        raise ValueError(f"code {code_name!r} is categorical; a sweep needs a continuous code")
    r = layout.continuous_range
    values = np.repeat(np.linspace(-r, r, num_values, dtype=np.float32), num_per_value)
    z = latents_lib.sample(rng, layout, len(values))
    z[code_name] = z[code_name].at[:, 0].set(values)
    return z, values


def evaluate_continuous(
    generate: GenerateFn,
    regress: ClassifyFn,
    layout: latents_lib.LatentLayout,
    code_name: str,
    num_per_value: int,
    rng: jax.Array,
    num_values: int = 10,
    batch_size: int | None = None,
) -> float:
    """Pearson correlation between a swept continuous code and a judge's regression of it.

    `regress(images [B, H, W, C]) -> [B]` (e.g. a regression head of `Classifier.predict`);
    the samples come from `continuous_sweep_latents`. NaN when the judge's output is constant.
    """
    z, values = continuous_sweep_latents(rng, layout, code_name, num_values, num_per_value)
    images = batching.batched_apply(generate, z, batch_size or len(values))
    predictions = np.asarray(regress(images), np.float64).reshape(len(values))
    return float(code_recovery(values[:, None], predictions[:, None])["correlation"][0])
