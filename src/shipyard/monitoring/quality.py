"""Model quality: captured predictions against the labels that arrived later.

The caller joins labels to captured predictions by event id (``capture.read_capture`` gives
``event_id``, ``row`` and ``prediction``) and passes the two aligned columns here. Pairs where
either side is missing (a prediction that was not numeric, a label not in yet) are left out
and ``count`` says how many were used.

Classification: predictions are either labels or positive-class scores in [0, 1] (what the
model server answers for a binary classifier with ``--predict proba``). Scores become labels
at ``threshold`` (0.5), and ROC-AUC is computed from the scores themselves, since it measures
ranking, not the threshold. Precision, recall and F1 are for the positive class when the labels
are 0/1, and macro-averaged over the classes otherwise. Regression: RMSE, MAE and R².
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

Problem = Literal["classification", "regression"]


def model_quality(
    problem: Problem, predictions: ArrayLike, labels: ArrayLike, *, threshold: float = 0.5
) -> dict[str, float]:
    """Quality metrics of ``predictions`` against ``labels`` (same length, aligned).

    Raises ``ValueError`` when the lengths differ or no pair has both values.
    """
    predicted, actual = _pairs(predictions, labels)
    if problem == "regression":
        return _regression(predicted.astype(np.float64), actual.astype(np.float64))
    if problem == "classification":
        return _classification(predicted, actual, threshold)
    raise ValueError(f"problem must be 'classification' or 'regression', not {problem!r}")


def _pairs(predictions: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray[Any, Any], ...]:
    predicted, has_prediction = _column(predictions)
    actual, has_label = _column(labels)
    if predicted.shape != actual.shape or predicted.ndim != 1:
        raise ValueError(f"predictions {predicted.shape} and labels {actual.shape} must align")
    keep = has_prediction & has_label
    if not keep.any():
        raise ValueError("no prediction has a label")
    return predicted[keep], actual[keep]


def _column(values: ArrayLike) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Numbers as float64 (ints and bools too; None is NaN), anything else as objects; and
    which entries are present."""
    try:
        numbers = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        objects = np.asarray(values, dtype=object)
        return objects, np.frompyfunc(_present, 1, 1)(objects).astype(bool)
    return numbers, ~np.isnan(numbers)


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and np.isnan(value))


def _regression(predicted: np.ndarray[Any, Any], actual: np.ndarray[Any, Any]) -> dict[str, float]:
    # scikit-learn is imported on first use (here and below), not by every API process.
    from sklearn import metrics

    result = {
        "count": float(len(actual)),
        "rmse": float(np.sqrt(metrics.mean_squared_error(actual, predicted))),
        "mae": float(metrics.mean_absolute_error(actual, predicted)),
    }
    if len(actual) >= 2:  # R² of a single value is undefined
        result["r2"] = float(metrics.r2_score(actual, predicted))
    return result


def _classification(
    predicted: np.ndarray[Any, Any], actual: np.ndarray[Any, Any], threshold: float
) -> dict[str, float]:
    from sklearn import metrics

    scores = _scores(predicted)
    labels = (scores >= threshold).astype(np.float64) if scores is not None else predicted
    binary = set(np.unique(actual).tolist()) <= {0.0, 1.0} and actual.dtype != object
    average: Literal["binary", "macro"] = "binary" if binary else "macro"
    result = {
        "count": float(len(actual)),
        "accuracy": float(metrics.accuracy_score(actual, labels)),
        "precision": float(
            metrics.precision_score(actual, labels, average=average, zero_division=0)
        ),
        "recall": float(metrics.recall_score(actual, labels, average=average, zero_division=0)),
        "f1": float(metrics.f1_score(actual, labels, average=average, zero_division=0)),
    }
    if scores is not None and binary and len(np.unique(actual)) == 2:
        result["roc_auc"] = float(metrics.roc_auc_score(actual, scores))
    return result


def _scores(predicted: np.ndarray[Any, Any]) -> np.ndarray[Any, Any] | None:
    """The predictions when they are scores in [0, 1] that are not all 0/1 labels, else None."""
    if predicted.dtype == object:
        return None
    inside = bool(((predicted >= 0) & (predicted <= 1)).all())
    hard = bool(np.isin(predicted, (0.0, 1.0)).all())
    return predicted if inside and not hard else None
