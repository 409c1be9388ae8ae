"""Evaluation: the judge (independent classifier), conditional accuracy, Frechet distance,
sampling and image grids, and the evaluator that runs them on a train state.

    evaluator = evaluation.make_evaluator(exp)     # the judge loaded or trained, then cached
    metrics = evaluator.evaluate(state)

Host-side and independent of the training loop; G and the classifier enter as callables.
"""

from ssinfogan_jax.evaluation import (
    batching,
    classifier,
    evaluator,
    frechet,
    images,
    judge,
    metrics,
    sampling,
)
from ssinfogan_jax.evaluation.classifier import Classifier, load, train_classifier
from ssinfogan_jax.evaluation.evaluator import Evaluator
from ssinfogan_jax.evaluation.frechet import (
    frechet_distance,
    frechet_distance_from_features,
    gaussian_statistics,
)
from ssinfogan_jax.evaluation.images import make_grid, save_grid, save_image, to_uint8
from ssinfogan_jax.evaluation.judge import judge_for, make_evaluator, make_evaluators
from ssinfogan_jax.evaluation.metrics import (
    ConditionalAccuracy,
    class_mapping,
    code_recovery,
    conditional_accuracy,
    conditional_samples,
    confusion_matrix,
    evaluate_conditional,
    greedy_mapping,
    hungarian_mapping,
    label_accuracy,
)

__all__ = [
    "Classifier",
    "ConditionalAccuracy",
    "Evaluator",
    "batching",
    "class_mapping",
    "classifier",
    "code_recovery",
    "conditional_accuracy",
    "conditional_samples",
    "confusion_matrix",
    "evaluate_conditional",
    "evaluator",
    "frechet",
    "frechet_distance",
    "frechet_distance_from_features",
    "gaussian_statistics",
    "greedy_mapping",
    "hungarian_mapping",
    "images",
    "judge",
    "judge_for",
    "label_accuracy",
    "load",
    "make_evaluator",
    "make_evaluators",
    "make_grid",
    "metrics",
    "sampling",
    "save_grid",
    "save_image",
    "to_uint8",
    "train_classifier",
]
