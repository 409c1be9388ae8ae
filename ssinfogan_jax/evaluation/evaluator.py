"""Evaluation of a train state: the paper's measure plus what users now expect.

All metrics use G and D in eval mode (batch-norm running statistics) and fixed latents (the
same key every time, as the reference's fixed test inputs), so successive evaluations differ
only through the networks. G is the moving average of its weights where one is kept
(`optimizer.g_ema_decay`).

  cond_acc_direct / cond_acc_mapped   the independent classifier's accuracy on samples of each
                                      value of the categorical c_ss code (direct: code k =
                                      class k; mapped: best one-to-one map); only where one
                                      categorical code is judged (else per code and the mean)
  cond_acc_direct/<code>, cond_acc_mapped/<code>   the same for every categorical c_ss code the
                                      classifier has a head for (that code varied, every other
                                      code from its prior)
  cond_acc_direct_mean                their mean over those codes
  cond_corr/<code>                    a continuous c_ss code swept over its range: Pearson
                                      correlation of the code and the classifier's regression
                                      of its label
  sample_spread[/<code>]              samples of one value of the first categorical c_ss code
                                      (named by it where several are judged),
                                      other latents from the prior: the total variance of the
                                      classifier's features, mean over values, over the same
                                      for the real test images of one class (~1: as varied as
                                      the data; near 0: mode collapse, G ignores z)
  frechet_distance                    between the classifier's features of prior samples and of
                                      the real test split (float64, host-side)
  q_ss_test_acc[/<code>]              Q_ss on the real test split (direct); q_ss_test_acc is
                                      the mean over categorical codes (q_ss_test_acc_mean
                                      where there are several)
  q_ss_test_corr/<code>               a continuous c_ss code: Q_ss's correlation with the label
  recovery_acc/<code>, recovery_mse/<code>, mi_lower_bound   codes recovered from fakes
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import jax
import numpy as np

from ssinfogan_jax import latents as latents_lib
from ssinfogan_jax import losses, train
from ssinfogan_jax.evaluation import batching, frechet, images, metrics, sampling
from ssinfogan_jax.evaluation import classifier as classifier_lib

_EVAL_BATCH = 500


_SWEEP_VALUES = 10  # Values of a continuous code's sweep.


def classifier_code(layout: latents_lib.LatentLayout) -> latents_lib.Code | None:
    """The code of the headline cond_acc_direct / cond_acc_mapped: the first categorical c_ss
    code."""
    return next((c for c in layout.supervised_codes if c.categorical), None)


def judged_labels(
    layout: latents_lib.LatentLayout, dataset_labels: Mapping[str, int] | None = None
) -> dict[str, int]:
    """{label: classes (0 = continuous)}: the independent classifier's heads. Those of the c_ss
    codes in code order (a label that supervises several codes once), then, when the data set
    has c_ss codes, the data set's other labels (so one classifier judges every config of a
    data set, whichever labels it supervises)."""
    heads = {c.label: (c.size if c.categorical else 0) for c in layout.supervised_codes}
    if heads and dataset_labels:
        heads.update({k: v for k, v in dataset_labels.items() if k not in heads})
    return heads


def possible_metric_names(
    layout: latents_lib.LatentLayout, heads: Mapping[str, int] | None = None
) -> set[str]:
    """Every name `Evaluator.evaluate` may return for `layout`, judged by a judge with `heads`
    (`judged_labels`; None: every c_ss code judged), before any judge or data is loaded: for
    checking config.best_metric at start-up. Names that need data the test split may lack (a
    label, a judge) are included."""
    judged = [
        c for c in layout.supervised_codes if c.categorical and (heads is None or c.label in heads)
    ]
    several = len(judged) > 1
    names = {"mi_lower_bound", "frechet_distance", "cond_acc_direct_mean"}
    names |= {"q_ss_test_acc_mean"} if several else {"q_ss_test_acc", "sample_spread"}
    if not several:
        names |= {"cond_acc_direct", "cond_acc_mapped"}
    for c in layout.supervised_codes:
        if c.categorical:
            names |= {f"cond_acc_direct/{c.name}", f"cond_acc_mapped/{c.name}"}
            names |= {f"q_ss_test_acc/{c.name}", f"sample_spread/{c.name}"}
        else:
            names |= {f"cond_corr/{c.name}", f"q_ss_test_corr/{c.name}"}
    for c in layout.codes:
        names.add(f"recovery_{'acc' if c.categorical else 'mse'}/{c.name}")
    return names


class Evaluator:
    """Computes evaluation metrics and image grids of a (host-side) train state.

    G and D's eval-mode functions are compiled once, with the variables as arguments, so each
    evaluation after the first reuses them.

    Args:
      exp: the experiment (`experiment.Experiment`).
      test_images: float32 [N, H, W, C], the real test split in the data's range.
      test_labels: {label name: [N]}.
      classifier: the independent classifier (or a `classifier.Ensemble` of several: the mean
        of their probabilities, the first one's features), or None. With heads it judges each
        c_ss code whose label has a head; a single-head classifier judges `classifier_code` only.
    """

    def __init__(
        self,
        exp,
        test_images: np.ndarray,
        test_labels: Mapping[str, np.ndarray],
        classifier: classifier_lib.Classifier | None,
    ):
        self.layout = exp.layout
        generator, discriminator = exp.models()
        self.image_range = exp.arch.image_range
        self.samples_per_value = exp.eval.samples_per_value
        self.rng = jax.random.PRNGKey(exp.eval.seed)
        self.test_images = test_images
        self.test_labels = test_labels
        self.class_names = dict(getattr(exp.source, "class_names", None) or {})
        self.classifier = classifier
        self.code = classifier_code(self.layout)
        self._test_statistics = None
        self._real_spread = None
        if classifier is not None:
            features = classifier.features(test_images)
            self._test_statistics = frechet.gaussian_statistics(features)
            if self.code is not None and self.code.label in test_labels:
                self._real_spread = metrics.within_group_spread(
                    features, test_labels[self.code.label]
                )
        self._generate = sampling.make_generate_fn(generator, self.layout, _EVAL_BATCH)
        self._discriminate = jax.jit(
            lambda variables, x: discriminator.apply(variables, x, train=False)["q"]
        )
        self._mi_lower_bound = jax.jit(
            functools.partial(
                losses.mutual_information_lower_bound,
                self.layout.codes,
                continuous_range=self.layout.continuous_range,
            )
        )

    def _judge(self, code: latents_lib.Code):
        """images -> the classifier's output for `code`'s label, or None if it has no head."""
        clf = self.classifier
        if clf is None:
            return None
        if clf.heads:
            if code.label not in clf.heads:
                return None
            return functools.partial(clf.predict, head=code.label)
        return clf.predict if self.code is not None and code.name == self.code.name else None

    def _generate_fn(self, state) -> sampling.GenerateFn:
        return self._generate(train.generator_variables(state))

    def _q_outputs(self, state, x: np.ndarray) -> dict[str, np.ndarray]:
        d = state.discriminator
        variables = {"params": d.params, "batch_stats": d.batch_stats}
        return batching.batched_apply(
            lambda chunk: self._discriminate(variables, chunk), x, _EVAL_BATCH
        )

    def evaluate(self, state) -> dict[str, float]:
        generate = self._generate_fn(state)
        result: dict[str, float] = {}
        num_samples = self.samples_per_value * (self.code.size if self.code else 10)
        prior = latents_lib.sample(jax.random.fold_in(self.rng, 0), self.layout, num_samples)
        fakes = generate(prior)

        direct = []
        # With several judged categorical codes no metric goes by a bare name: a bare
        # cond_acc_direct read as "every code", where it was the first code alone.
        several = len(self.judged_categorical_codes()) > 1
        for i, c in enumerate(self.layout.supervised_codes):
            judge = self._judge(c)
            if judge is None:
                continue
            # The first categorical code keeps its key of before (its metrics keep their values).
            rng = jax.random.fold_in(self.rng, 1 if c == self.code else 100 + i)
            if c.categorical:
                images = metrics.conditional_samples(
                    generate, self.layout, c.name, self.samples_per_value, rng, _EVAL_BATCH
                )
                accuracy = metrics.classify_conditional(images, judge)
                if c == self.code:
                    if not several:
                        result.update(accuracy.as_dict("cond_acc_"))
                    if self._real_spread:  # From the same samples.
                        spread = "sample_spread/" + c.name if several else "sample_spread"
                        result[spread] = self.sample_spread(images) / self._real_spread
                result[f"cond_acc_direct/{c.name}"] = accuracy.direct
                result[f"cond_acc_mapped/{c.name}"] = accuracy.mapped
                direct.append(accuracy.direct)
            else:
                result[f"cond_corr/{c.name}"] = metrics.evaluate_continuous(
                    generate,
                    judge,
                    self.layout,
                    c.name,
                    self.samples_per_value,
                    rng,
                    num_values=_SWEEP_VALUES,
                    batch_size=_EVAL_BATCH,
                )
        if direct:
            result["cond_acc_direct_mean"] = float(np.mean(direct))

        if self.classifier is not None:
            fake_features = self.classifier.features(fakes)
            result["frechet_distance"] = frechet.frechet_distance(
                *frechet.gaussian_statistics(fake_features), *self._test_statistics
            )

        q_ss = self.q_ss_on_test(state)
        if several and "q_ss_test_acc" in q_ss:
            q_ss["q_ss_test_acc_mean"] = q_ss.pop("q_ss_test_acc")
        result.update(q_ss)

        fake_q = self._q_outputs(state, fakes)
        for c in self.layout.codes:
            target = np.asarray(prior[c.name])
            if c.categorical:
                result[f"recovery_acc/{c.name}"] = float(
                    np.mean(fake_q[c.name].argmax(-1) == target)
                )
            else:
                recovery = metrics.code_recovery(target, fake_q[c.name])
                result[f"recovery_mse/{c.name}"] = float(np.mean(recovery["mse"]))
        result["mi_lower_bound"] = float(self._mi_lower_bound(fake_q, prior))
        return result

    def judged_categorical_codes(self) -> list[latents_lib.Code]:
        """The categorical c_ss codes the judge scores (conditional accuracy)."""
        return [c for c in self.layout.supervised_codes if c.categorical and self._judge(c)]

    def sample_spread(self, images: np.ndarray) -> float:
        """`metrics.within_group_spread` of the classifier's features of samples per value of
        a code: images [K, N, H, W, C] (those of the first categorical code's conditional
        accuracy)."""
        k, n = images.shape[:2]
        features = self.classifier.features(images.reshape(k * n, *images.shape[2:]))
        return metrics.within_group_spread(features, np.repeat(np.arange(k), n))

    def q_ss_on_test(self, state) -> dict[str, float]:
        """Q_ss against the test split's labels, over the examples labelled for each code (a
        folder's test rows may lack some labels: -1 or NaN)."""
        real_q = self._q_outputs(state, self.test_images)
        result, accuracies = {}, []
        for c in self.layout.supervised_codes:
            if c.label not in self.test_labels:
                continue
            labels = np.asarray(self.test_labels[c.label])
            known = metrics.is_labeled(labels)
            if not known.any():
                continue
            predicted = real_q[c.name][known]
            if c.categorical:
                acc = metrics.label_accuracy(predicted.argmax(-1), labels[known], c.size).direct
                result[f"q_ss_test_acc/{c.name}"] = acc
                accuracies.append(acc)
            else:
                recovery = metrics.code_recovery(labels[known], predicted)
                result[f"q_ss_test_corr/{c.name}"] = float(recovery["correlation"][0])
        if accuracies:
            result["q_ss_test_acc"] = float(np.mean(accuracies))
        return result

    def value_names(self, code: latents_lib.Code, values: np.ndarray) -> list[str]:
        """What each value of `code` is: the data's class names for a supervised categorical
        code where it names them, else the values."""
        names = self.class_names.get(code.label) if code.label and code.categorical else None
        if names and len(names) == code.size:
            return [str(names[int(v)]) for v in values]
        return images.value_labels(values)

    def image_grids(self, state, per_value: int = 10, rows: int = 8) -> dict[str, np.ndarray]:
        """uint8 [1, H, W, C] grids, labelled on the image: one per categorical c_ss code (a
        row per value, named by its class) and a traversal per code (rows: fixed other
        latents; columns: the code varied, each headed by its value)."""
        generate = self._generate_fn(state)
        grids = {}
        for i, c in enumerate(self.layout.supervised_codes):
            if c.categorical:
                z = sampling.conditional_latents(
                    jax.random.fold_in(self.rng, 10 + i), self.layout, c, per_value
                )
                x = generate(z)
                grid = images.make_grid(x, rows=c.size, value_range=self.image_range)
                labels = self.value_names(c, np.arange(c.size))
                grid = images.with_labels(grid, x.shape[1:3], rows=labels)
                grids[f"samples/{c.name}"] = grid[None]
        for c in self.layout.codes:
            z, values = latents_lib.traversal(
                jax.random.fold_in(self.rng, 2), self.layout, c.name, rows
            )
            x = generate(z)
            grid = images.make_grid(x, rows=rows, value_range=self.image_range)
            grid = images.with_labels(grid, x.shape[1:3], cols=self.value_names(c, values))
            grids[f"traversal/{c.name}"] = grid[None]
        return grids
