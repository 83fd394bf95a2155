"""Model quality against scikit-learn's own numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics

from shipyard.monitoring.quality import model_quality

RNG = np.random.default_rng(3)
LABELS = RNG.integers(0, 2, 500)
SCORES = np.clip(LABELS * 0.35 + RNG.uniform(0, 0.65, 500), 0, 1)


def test_binary_scores() -> None:
    result = model_quality("classification", SCORES, LABELS)

    predicted = (SCORES >= 0.5).astype(int)
    assert result == pytest.approx(
        {
            "count": 500.0,
            "accuracy": metrics.accuracy_score(LABELS, predicted),
            "precision": metrics.precision_score(LABELS, predicted),
            "recall": metrics.recall_score(LABELS, predicted),
            "f1": metrics.f1_score(LABELS, predicted),
            "roc_auc": metrics.roc_auc_score(LABELS, SCORES),
        }
    )
    assert 0.5 < result["roc_auc"] < 1.0


def test_hard_labels_have_no_roc_auc() -> None:
    predicted = (SCORES >= 0.5).astype(int)

    result = model_quality("classification", predicted, LABELS)

    assert "roc_auc" not in result
    assert result["f1"] == pytest.approx(metrics.f1_score(LABELS, predicted))


def test_multiclass_string_labels_are_macro_averaged() -> None:
    truth = ["cat", "dog", "bird", "dog", "cat", "bird", "dog"]
    guess = ["cat", "dog", "dog", "dog", "bird", "bird", "cat"]

    result = model_quality("classification", guess, truth)

    assert result["accuracy"] == pytest.approx(metrics.accuracy_score(truth, guess))
    assert result["f1"] == pytest.approx(metrics.f1_score(truth, guess, average="macro"))
    assert result["precision"] == pytest.approx(
        metrics.precision_score(truth, guess, average="macro", zero_division=0)
    )


def test_regression() -> None:
    truth = RNG.normal(10, 3, 200)
    guess = truth + RNG.normal(0, 1, 200)

    result = model_quality("regression", guess, truth)

    assert result == pytest.approx(
        {
            "count": 200.0,
            "rmse": math.sqrt(metrics.mean_squared_error(truth, guess)),
            "mae": metrics.mean_absolute_error(truth, guess),
            "r2": metrics.r2_score(truth, guess),
        }
    )


def test_unlabelled_pairs_are_left_out() -> None:
    result = model_quality("regression", [1.0, None, 3.0, 4.0], [1.5, 2.0, float("nan"), 5.0])

    assert result == pytest.approx(
        {"count": 2.0, "rmse": math.sqrt(0.625), "mae": 0.75, "r2": 1 - 1.25 / 6.125}
    )


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="align"):
        model_quality("regression", [1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="no prediction has a label"):
        model_quality("classification", [0.2, 0.4], [None, None])
    with pytest.raises(ValueError, match="problem"):
        model_quality("ranking", [1.0], [1.0])  # type: ignore[arg-type]
