"""The independent classifier that judges generated samples.

Per data set a small CNN is trained on the data set's *test* split and validated on its *train*
split (the paper's protocol: it never saw the images G learned from). Its logits give the
conditional accuracy of G's samples and its penultimate features a Frechet distance.

    clf, val_accuracy = train_classifier(test_x, test_y, train_x, train_y, num_classes=10, seed=0)
    clf.save("/tmp/mnist_classifier")
    clf = load("/tmp/mnist_classifier")
    logits = clf.predict(fakes)          # float32 [N, num_classes]
    feats = clf.features(fakes)          # float32 [N, feature_size]

Several labels at once: one network, a head per label on the shared features (a softmax head
per categorical label, a regression head, trained with squared error, per continuous one):

    clf, val = train_classifier(test_x, {"label": y, "rotation": r}, train_x, {...},
                                num_classes={"label": 10, "rotation": 0}, seed=0)
    val                                  # {"label": accuracy, "rotation": correlation}
    clf.predict(fakes, head="label")     # float32 [N, 10] logits
    clf.predict(fakes, head="rotation")  # float32 [N] regression
    clf.predict_heads(fakes)             # {head: outputs}

Several classifiers trained from different seeds judge as one (the mean of their probabilities,
or of their regressions; the first one's features):

    judge = Ensemble([clf0, clf1, clf2])
    judge.predict(fakes, head="label")   # float32 [N, 10]: log of the mean softmax

Images are NHWC float in whatever range the training images had (G's output range, so fakes
and data match); the classifier standardises them per channel with the training set's mean and
standard deviation, which are saved with it. Training is deterministic given `seed`.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.special
from absl import logging

from ssinfogan_jax import fileio
from ssinfogan_jax.evaluation import batching

VARIABLES_FILE = "variables.msgpack"
INFO_FILE = "classifier.json"
DEFAULT_EVAL_BATCH = 1000


class ClassifierCNN(nn.Module):
    """Per width: `convs_per_stage` x (Conv 3x3 [- BN] - ReLU), max-pool 2; then Dense
    `feature_size` [- BN] - ReLU (the features), dropout and Dense `num_classes`.
    28x28x1 -> 7x7x32 and 32x32x3 -> 8x8x32 with the default two widths.

    Returns (logits float32 [B, num_classes], features float32 [B, feature_size]). With
    `heads` ((name, classes), ...; classes 0 = a regression head), one Dense per head instead
    of the single one, and the first output is {name: [B, classes] logits or [B] values}.
    """

    num_classes: int
    heads: tuple[tuple[str, int], ...] = ()
    widths: Sequence[int] = (16, 32)
    convs_per_stage: int = 2
    feature_size: int = 256
    dropout_rate: float = 0.5
    batch_norm: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
        def norm(h):
            if not self.batch_norm:
                return h
            return nn.BatchNorm(use_running_average=not train, momentum=0.9)(h)

        for width in self.widths:
            for _ in range(self.convs_per_stage):
                x = nn.relu(norm(nn.Conv(width, (3, 3), use_bias=not self.batch_norm)(x)))
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        features = nn.relu(norm(nn.Dense(self.feature_size, use_bias=not self.batch_norm)(x)))
        h = nn.Dropout(self.dropout_rate, deterministic=not train)(features)
        if not self.heads:
            return nn.Dense(self.num_classes)(h), features
        outputs = {}
        for name, classes in self.heads:
            out = nn.Dense(max(classes, 1), name=f"head_{name}")(h)
            outputs[name] = out if classes else out[:, 0]
        return outputs, features


@dataclasses.dataclass(frozen=True)
class ClassifierSpec:
    """Everything needed to rebuild the network and its input standardisation."""

    num_classes: int
    image_shape: tuple[int, int, int]
    heads: tuple[tuple[str, int], ...] = ()  # (name, classes; 0 = regression); () = one head
    widths: tuple[int, ...] = (16, 32)
    convs_per_stage: int = 2
    feature_size: int = 256
    dropout_rate: float = 0.5
    batch_norm: bool = True
    mean: tuple[float, ...] = (0.0,)  # Per-channel, of the training images.
    std: tuple[float, ...] = (1.0,)

    def module(self) -> ClassifierCNN:
        return ClassifierCNN(
            num_classes=self.num_classes,
            heads=self.heads,
            widths=self.widths,
            convs_per_stage=self.convs_per_stage,
            feature_size=self.feature_size,
            dropout_rate=self.dropout_rate,
            batch_norm=self.batch_norm,
        )

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> ClassifierSpec:
        fields = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in fields}
        kwargs["heads"] = tuple((str(n), int(c)) for n, c in kwargs.get("heads", ()))
        return cls(**kwargs)


def _standardise(spec: ClassifierSpec, images: jax.Array) -> jax.Array:
    mean = jnp.asarray(spec.mean, jnp.float32)
    std = jnp.asarray(spec.std, jnp.float32)
    return (images.astype(jnp.float32) - mean) / std


@functools.partial(jax.jit, static_argnums=0)
def _forward(
    spec: ClassifierSpec, variables: Any, images: jax.Array
) -> tuple[jax.Array, jax.Array]:
    return spec.module().apply(variables, _standardise(spec, images), train=False)


@dataclasses.dataclass
class Classifier:
    """A trained classifier: its spec, parameters and a record of how it was trained.

    Attributes:
      spec: architecture and input standardisation.
      variables: the Flax variables ('params', plus 'batch_stats' with batch norm).
      info: JSON-able record (val_accuracy, seed, num_steps, ...), saved beside the weights.
    """

    spec: ClassifierSpec
    variables: Any
    info: dict = dataclasses.field(default_factory=dict)

    @property
    def val_accuracy(self) -> float | None:
        return self.info.get("val_accuracy")

    @property
    def heads(self) -> dict[str, int]:
        """{head: classes (0 = regression)}; {} for a single-head classifier."""
        return dict(self.spec.heads)

    def _run(self, images: np.ndarray, batch_size: int, index: int) -> np.ndarray:
        """Output `index` of the network (0: logits or {head: outputs}, 1: features)."""
        images = np.asarray(images, np.float32)
        if images.shape[1:] != tuple(self.spec.image_shape):
            raise ValueError(
                f"images: expected [N, {', '.join(map(str, self.spec.image_shape))}], "
                f"got {images.shape}"
            )
        outputs = batching.batched_apply(
            lambda x: _forward(self.spec, self.variables, x), images, batch_size
        )
        return outputs[index]

    def _outputs(self, images: np.ndarray, batch_size: int) -> np.ndarray | dict[str, np.ndarray]:
        """The network's first output: logits [N, C], or {head: logits or values}."""
        return self._run(images, batch_size, 0)

    def predict(
        self, images: np.ndarray, batch_size: int = DEFAULT_EVAL_BATCH, head: str | None = None
    ) -> np.ndarray:
        """Logits float32 [N, num_classes] of images [N, H, W, C]; with heads, `head`'s
        output (default: the first head): logits [N, classes] or regression values [N]."""
        outputs = self._outputs(images, batch_size)
        if not self.spec.heads:
            if head is not None:
                raise ValueError(f"head {head!r}: this classifier has a single head")
            return outputs
        head = self.spec.heads[0][0] if head is None else head
        if head not in outputs:
            raise ValueError(f"head {head!r}: this classifier's heads are {list(outputs)}")
        return outputs[head]

    def predict_heads(
        self, images: np.ndarray, batch_size: int = DEFAULT_EVAL_BATCH
    ) -> dict[str, np.ndarray]:
        """Every head's output (see `predict`); a single head is named 'label'."""
        outputs = self._outputs(images, batch_size)
        return outputs if self.spec.heads else {"label": outputs}

    def features(self, images: np.ndarray, batch_size: int = DEFAULT_EVAL_BATCH) -> np.ndarray:
        """Penultimate-layer features float32 [N, feature_size] (for the Frechet distance)."""
        return self._run(images, batch_size, 1)

    def predict_classes(
        self, images: np.ndarray, batch_size: int = DEFAULT_EVAL_BATCH, head: str | None = None
    ) -> np.ndarray:
        """Argmax classes int64 [N] (of a categorical `head`, with heads)."""
        return self.predict(images, batch_size, head).argmax(axis=-1)

    def accuracy(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        batch_size: int = DEFAULT_EVAL_BATCH,
        head: str | None = None,
    ) -> float:
        """Fraction of images [N, H, W, C] classified as their labels [N]."""
        predicted = self.predict_classes(images, batch_size, head)
        return float(np.mean(predicted == np.asarray(labels)))

    def scores(
        self,
        images: np.ndarray,
        labels: Mapping[str, np.ndarray],
        batch_size: int = DEFAULT_EVAL_BATCH,
    ) -> dict[str, float]:
        """Per head: accuracy (categorical) or Pearson correlation with the labels (regression),
        over the rows labelled for that head (-1 or NaN: not labelled)."""
        outputs = self.predict_heads(images, batch_size)
        result = {}
        for name, output in outputs.items():
            target = np.asarray(labels[name])
            rows = _is_labeled(target, output.ndim == 2)
            output, target = output[rows], target[rows]
            if output.ndim == 2:
                result[name] = float(np.mean(output.argmax(-1) == target))
            else:
                result[name] = float(np.corrcoef(output.astype(np.float64), target)[0, 1])
        return result

    def save(self, path: str) -> str:
        """Writes `path`/variables.msgpack, then `path`/classifier.json (whose presence marks a
        complete cache; local or gs://); returns `path`."""
        variables = jax.tree_util.tree_map(np.asarray, self.variables)
        state = flax.serialization.to_state_dict(variables)
        fileio.write_bytes(
            fileio.Path(path, VARIABLES_FILE), flax.serialization.msgpack_serialize(state)
        )
        record = {"spec": self.spec.to_json(), "info": self.info}
        fileio.write_json(fileio.Path(path, INFO_FILE), record, indent=2, sort_keys=True)
        return path


class Ensemble(Classifier):
    """Classifiers of the same heads and data (trained from different seeds) judging as one.

    A categorical head's output is the log of the mean of the members' softmax probabilities
    (logits whose softmax is that mean, so its argmax is the ensemble's class); a regression
    head's is the mean of the members' values. Features, spec and variables are the first
    member's, so a Frechet distance or spread is that of the first member alone.

        judge = Ensemble([clf0, clf1, clf2])
        judge.predict(fakes, head="thick_stroke")   # float32 [N, 2] log mean probabilities
        judge.features(fakes)                       # clf0.features(fakes)

    Attributes:
      members: the classifiers (first: the one whose features and spec are used).
    """

    def __init__(self, members: Sequence[Classifier]):
        members = tuple(members)
        if not members:
            raise ValueError("Ensemble: no members")
        first = members[0]
        if any(m.spec.heads != first.spec.heads for m in members):
            raise ValueError(
                f"Ensemble: the members' heads differ: {[m.spec.heads for m in members]}"
            )
        info = {
            "ensemble_size": len(members),
            "members": [m.info for m in members],
            "data_fingerprint": first.info.get("data_fingerprint"),
            "val_accuracy": first.info.get("val_accuracy"),  # The first member's.
        }
        super().__init__(first.spec, first.variables, info)
        self.members = members

    def _outputs(self, images: np.ndarray, batch_size: int) -> np.ndarray | dict[str, np.ndarray]:
        per_member = [m._outputs(images, batch_size) for m in self.members]
        if not self.spec.heads:
            return mean_outputs(per_member, categorical=True)
        return {
            name: mean_outputs([o[name] for o in per_member], categorical=bool(classes))
            for name, classes in self.spec.heads
        }

    def save(self, path: str) -> str:
        raise NotImplementedError("an Ensemble is saved member by member (judge.judge_for)")


def mean_outputs(outputs: Sequence[np.ndarray], categorical: bool) -> np.ndarray:
    """The ensemble of several classifiers' outputs for the same images: for logits [N, C]
    (categorical), the log of the mean of their softmax probabilities, float32 [N, C] (its
    softmax is that mean); for regression values [N], their mean, float32 [N]."""
    stacked = np.stack([np.asarray(o, np.float64) for o in outputs])
    if not categorical:
        return stacked.mean(axis=0).astype(np.float32)
    log_probabilities = scipy.special.log_softmax(stacked, axis=-1)
    mean = scipy.special.logsumexp(log_probabilities, axis=0) - np.log(len(outputs))
    return mean.astype(np.float32)


def _is_labeled(values: np.ndarray, categorical) -> np.ndarray:
    """bool [N]: the rows that carry a label (a class >= 0, or a value that is not NaN)."""
    return values >= 0 if categorical else ~np.isnan(values)


def load(path: str) -> Classifier:
    """Reads a classifier written by `Classifier.save`."""
    record = fileio.read_json(fileio.Path(path, INFO_FILE))
    spec = ClassifierSpec.from_json(record["spec"])
    state = flax.serialization.msgpack_restore(fileio.read_bytes(fileio.Path(path, VARIABLES_FILE)))
    # Check the tree against a fresh init so a mismatched file fails here, not at predict time.
    template = jax.eval_shape(
        lambda: spec.module().init(jax.random.key(0), jnp.zeros((1, *spec.image_shape)))
    )
    variables = flax.serialization.from_state_dict(template, state)
    return Classifier(spec, jax.tree_util.tree_map(jnp.asarray, variables), record.get("info", {}))


def random_affine(
    rng: jax.Array,
    images: jax.Array,
    max_shift: float,
    max_rotation: float,
    max_scale: float,
) -> jax.Array:
    """Random small affine maps of images [B, H, W, C] (bilinear, edge values outside).

    Each image is rotated by U(-max_rotation, max_rotation) degrees, scaled by
    U(1 - max_scale, 1 + max_scale) about its centre and translated by U(-max_shift, max_shift)
    pixels per axis.
    """
    if max_shift == 0 and max_rotation == 0 and max_scale == 0:
        return images
    b, h, w, c = images.shape
    k_rot, k_scale, k_shift = jax.random.split(rng, 3)
    angle = jnp.deg2rad(jax.random.uniform(k_rot, (b,), minval=-max_rotation, maxval=max_rotation))
    scale = jax.random.uniform(k_scale, (b,), minval=1 - max_scale, maxval=1 + max_scale)
    shift = jax.random.uniform(k_shift, (b, 2), minval=-max_shift, maxval=max_shift)
    centre = jnp.array([(h - 1) / 2, (w - 1) / 2])
    rows, cols = jnp.meshgrid(
        jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij"
    )
    grid = jnp.stack([rows.ravel(), cols.ravel()]) - centre[:, None]  # [2, H * W]

    def warp(image, angle, scale, shift):
        cos, sin = jnp.cos(angle), jnp.sin(angle)
        inverse = jnp.array([[cos, sin], [-sin, cos]]) / scale  # Output pixel -> source pixel.
        source = inverse @ grid + (centre - shift)[:, None]
        channel = lambda x: jax.scipy.ndimage.map_coordinates(
            x, list(source), order=1, mode="nearest"
        )
        return jax.vmap(channel, in_axes=-1, out_axes=-1)(image).reshape(h, w, c)

    return jax.vmap(warp)(images, angle, scale, shift)


@dataclasses.dataclass(frozen=True)
class _TrainOptions:
    """The training hyperparameters the compiled step depends on (hashable: a static arg)."""

    learning_rate: float
    weight_decay: float
    num_steps: int
    max_shift: float
    max_rotation: float
    max_scale: float

    def optimizer(self) -> optax.GradientTransformation:
        schedule = optax.cosine_decay_schedule(self.learning_rate, self.num_steps)
        return optax.adamw(schedule, weight_decay=self.weight_decay)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _train_step(
    spec: ClassifierSpec,
    options: _TrainOptions,
    params: Any,
    batch_stats: Any,
    opt_state: optax.OptState,
    images: jax.Array,
    labels: jax.Array,
    rng: jax.Array,
):
    """One AdamW step on augmented, standardised images [B, H, W, C] and labels [B] (with
    heads: {head: [B]}; the loss sums each head's cross-entropy or squared error)."""
    augment_rng, dropout_rng = jax.random.split(rng)
    images = random_affine(
        augment_rng, images, options.max_shift, options.max_rotation, options.max_scale
    )
    images = _standardise(spec, images)

    def loss_fn(params):
        (logits, _), updates = spec.module().apply(
            {"params": params, "batch_stats": batch_stats},
            images,
            train=True,
            rngs={"dropout": dropout_rng},
            mutable=["batch_stats"],
        )
        if not spec.heads:
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        else:  # Each head learns from the rows labelled for it (-1 or NaN: not labelled).
            loss = 0.0
            for name, classes in spec.heads:
                target = labels[name]
                labelled = target >= 0 if classes else ~jnp.isnan(target)
                if classes:
                    per_row = optax.softmax_cross_entropy_with_integer_labels(
                        logits[name], jnp.maximum(target, 0).astype(jnp.int32)
                    )
                else:
                    per_row = jnp.square(logits[name] - jnp.where(labelled, target, 0.0))
                weight = labelled.astype(per_row.dtype)
                loss += jnp.sum(per_row * weight) / jnp.maximum(jnp.sum(weight), 1.0)
        return loss, updates.get("batch_stats", {})

    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = options.optimizer().update(grads, opt_state, params)
    return optax.apply_updates(params, updates), batch_stats, opt_state, loss


def train_classifier(
    train_images: np.ndarray,
    train_labels: np.ndarray | Mapping[str, np.ndarray],
    val_images: np.ndarray | None = None,
    val_labels: np.ndarray | Mapping[str, np.ndarray] | None = None,
    *,
    num_classes: int | Mapping[str, int],
    seed: int = 0,
    num_steps: int = 2_000,
    batch_size: int = 128,
    learning_rate: float = 2e-3,
    weight_decay: float = 1e-4,
    max_shift: float = 2.0,
    max_rotation: float = 10.0,
    max_scale: float = 0.1,
    widths: Sequence[int] = (16, 32),
    convs_per_stage: int = 2,
    feature_size: int = 256,
    dropout_rate: float = 0.5,
    batch_norm: bool = True,
    log_every: int = 0,
) -> tuple[Classifier, float | dict[str, float] | None]:
    """Trains the independent classifier; deterministic given `seed`.

    For the paper's protocol pass the data set's *test* split as train_* and its *train* split
    as val_*.

    Args:
      train_images: float [N, H, W, C], in the range G produces.
      train_labels: int [N] in [0, num_classes); or {head: [N]} for several heads (int
        classes, or float values for a regression head; -1 or NaN where a row lacks that
        head's label: each head trains on the rows labelled for it, as the GAN's losses do,
        and rows labelled for no head are dropped).
      val_images, val_labels: optional held-out set [M, H, W, C], [M] (or {head: [M]}); its
        accuracy is returned and recorded in `Classifier.info`.
      num_classes: C; or {head: classes (0 = regression)}, which makes one head per entry
        (in this order) on the shared features.
      seed: init, batch order, dropout and augmentation all derive from it.
      num_steps, batch_size: AdamW steps (cosine-decayed learning rate) and their batch size.
      learning_rate, weight_decay: AdamW's peak rate and decoupled weight decay.
      max_shift, max_rotation, max_scale: random affine augmentation of each training image:
        translation (pixels), rotation (degrees) and relative scale; all 0: none.
      widths, convs_per_stage, feature_size, dropout_rate, batch_norm: the network (see
        `ClassifierCNN`).
      log_every: log the training loss and progress every this many steps (0: never).

    Returns:
      (the classifier, validation accuracy or None without a validation set); with several
      heads, {head: accuracy, or Pearson correlation for a regression head} (also recorded as
      `info['val_by_head']`; `info['val_accuracy']` is then the first categorical head's).
    """
    start_time = time.time()
    train_images = np.asarray(train_images, np.float32)
    heads: tuple[tuple[str, int], ...] = ()
    if isinstance(num_classes, Mapping):
        heads = tuple((str(k), int(v)) for k, v in num_classes.items())
        if not heads:
            raise ValueError("num_classes: no heads")
        train_labels = {
            name: np.asarray(train_labels[name], np.int32 if c else np.float32) for name, c in heads
        }
        labelled = [_is_labeled(train_labels[name], c) for name, c in heads]
        if any(v.shape != train_images.shape[:1] for v in train_labels.values()):
            labelled = []  # The shapes are reported below.
        for (name, _), rows in zip(heads, labelled, strict=True):
            if not rows.any():
                raise ValueError(f"train_labels[{name!r}]: no row carries this head's label")
        if labelled and not (keep := np.logical_or.reduce(labelled)).all():
            train_images = train_images[keep]
            train_labels = {name: values[keep] for name, values in train_labels.items()}
        label_arrays = train_labels
    else:
        train_labels = np.asarray(train_labels, np.int32)
        label_arrays = {"": train_labels}
    classes_of = dict(heads) if heads else {"": num_classes}
    for name, labels in label_arrays.items():
        what = f"train_labels[{name!r}]" if name else "train_labels"
        if train_images.ndim != 4 or labels.shape != train_images.shape[:1]:
            raise ValueError(
                f"train_images [N, H, W, C] and {what} [N] expected, got {train_images.shape} "
                f"and {labels.shape}"
            )
        classes = classes_of[name]
        lowest = -1 if heads else 0  # With heads, -1 marks a row without this label.
        if classes and (labels.min() < lowest or labels.max() >= classes):
            raise ValueError(f"{what}: values outside [{lowest}, {classes})")
        if not classes and not np.all(np.isfinite(labels[~np.isnan(labels)])):
            raise ValueError(f"{what}: a regression head's labels must be finite (or NaN)")
    spec = ClassifierSpec(
        num_classes=max(classes_of.values()) if heads else num_classes,
        heads=heads,
        image_shape=tuple(int(d) for d in train_images.shape[1:]),
        widths=tuple(widths),
        convs_per_stage=convs_per_stage,
        feature_size=feature_size,
        dropout_rate=dropout_rate,
        batch_norm=batch_norm,
        mean=tuple(float(m) for m in train_images.mean(axis=(0, 1, 2), dtype=np.float64)),
        std=tuple(float(s) + 1e-8 for s in train_images.std(axis=(0, 1, 2), dtype=np.float64)),
    )
    init_rng, step_rng = jax.random.split(jax.random.key(seed))
    # Jitted: op by op, init compiles each of its small ops apart (3 s of a 20 s judge).
    variables = jax.jit(spec.module().init)(init_rng, jnp.zeros((1, *spec.image_shape)))
    params, batch_stats = variables["params"], variables.get("batch_stats", {})
    options = _TrainOptions(
        learning_rate, weight_decay, num_steps, max_shift, max_rotation, max_scale
    )
    opt_state = jax.jit(options.optimizer().init)(params)

    order_rng = np.random.default_rng(seed)
    n = train_images.shape[0]
    order, position = order_rng.permutation(n), 0
    loss = None
    for i in range(num_steps):
        if position + batch_size > n:  # New epoch; drop the remainder.
            order, position = order_rng.permutation(n), 0
        index = order[position : position + batch_size]
        position += batch_size
        params, batch_stats, opt_state, loss = _train_step(
            spec,
            options,
            params,
            batch_stats,
            opt_state,
            train_images[index],
            jax.tree.map(lambda y, index=index: y[index], train_labels),
            jax.random.fold_in(step_rng, i),
        )
        if log_every and (i + 1) % log_every == 0:
            rate = (i + 1) / (time.time() - start_time)
            logging.info(
                "classifier step %d/%d: loss %.4f (%.1f steps/s, %.0f s left)",
                i + 1,
                num_steps,
                float(loss),
                rate,
                (num_steps - i - 1) / rate,
            )

    variables = {"params": params}
    if batch_stats:
        variables["batch_stats"] = batch_stats
    classifier = Classifier(spec, variables)
    val_accuracy, val_by_head = None, None
    if val_images is not None and heads:
        val_by_head = classifier.scores(val_images, val_labels)
        first = next((name for name, c in heads if c), None)
        val_accuracy = val_by_head[first] if first else None
    elif val_images is not None:
        val_accuracy = classifier.accuracy(val_images, val_labels)
    classifier.info = {
        "val_accuracy": val_accuracy,
        "val_by_head": val_by_head,
        "num_train": int(n),
        "num_val": None if val_images is None else len(val_images),
        "seed": seed,
        "num_steps": num_steps,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "weight_decay": weight_decay,
        "augmentation": {
            "max_shift": max_shift,
            "max_rotation": max_rotation,
            "max_scale": max_scale,
        },
        "final_train_loss": None if loss is None else float(loss),
        "train_seconds": time.time() - start_time,
    }
    return classifier, val_by_head if heads else val_accuracy
