"""``shipyard.autolog()`` with scikit-learn against a real server."""

from __future__ import annotations

import pickle
from collections.abc import Iterator

import numpy as np
import pytest
from sklearn.base import BaseEstimator
from sklearn.datasets import make_classification, make_regression
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from tests.conftest import Tenant, unique
from tests.support.servers import RunningServer

import shipyard

CLASSIFIER_METRICS = {
    "training_accuracy_score",
    "training_precision_score",
    "training_recall_score",
    "training_f1_score",
    "training_roc_auc",
    "training_score",
}


@pytest.fixture
def tracking(
    server: RunningServer, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> Iterator[shipyard.Tracking]:
    project = f"{tenant.team}/{tenant.project}"
    monkeypatch.setenv("SHIPYARD_URL", server.url)
    monkeypatch.setenv("SHIPYARD_API_KEY", tenant.keys["scientist"])
    monkeypatch.setenv("SHIPYARD_PROJECT", project)
    shipyard.autolog()
    try:
        with shipyard.Session() as session:
            yield session.tracking(project)
    finally:
        shipyard.autolog(disable=True)


def test_a_fit_logs_params_metrics_tags_and_a_loadable_model(
    tracking: shipyard.Tracking,
) -> None:
    x, y = make_classification(n_samples=200, n_features=5, random_state=0)
    with shipyard.start_run(unique("auto-")) as run:
        model = LogisticRegression(C=0.5, max_iter=500).fit(x, y)
    got = tracking.get_run(run.id)
    assert got["params"]["C"] == "0.5" and got["params"]["max_iter"] == "500"
    assert set(got["metrics"]) == CLASSIFIER_METRICS
    assert got["metrics"]["training_accuracy_score"]["value"] == pytest.approx(model.score(x, y))
    assert got["tags"] == {
        "estimator_name": "LogisticRegression",
        "estimator_class": "sklearn.linear_model._logistic.LogisticRegression",
    }
    stored = tracking.artifacts().get(f"{got['artifact_uri']}/model/model.pkl")
    loaded = pickle.loads(bytes(stored))
    assert np.array_equal(loaded.predict(x), model.predict(x))


def test_a_pipeline_without_a_run_logs_one_run_for_the_outermost_fit(
    tracking: shipyard.Tracking,
) -> None:
    x, y = make_classification(n_samples=100, n_features=4, random_state=1)
    experiment = unique("pipe-")
    shipyard.autolog(experiment=experiment)
    Pipeline([("scale", StandardScaler()), ("lr", LogisticRegression())]).fit(x, y)
    assert shipyard.active_run() is None
    (run,) = tracking.search_runs(experiments=[experiment])
    assert run["status"] == "FINISHED" and run["tags"]["estimator_name"] == "Pipeline"
    assert run["params"]["scale__with_mean"] == "True" and run["params"]["lr__C"] == "1.0"
    assert set(run["metrics"]) == CLASSIFIER_METRICS
    nested = "tags.estimator_name IN ('StandardScaler', 'LogisticRegression')"
    assert tracking.search_runs(nested, experiments=[experiment]) == []


def test_grid_search_logs_once_for_a_regressor(tracking: shipyard.Tracking) -> None:
    x, y = make_regression(n_samples=80, n_features=3, noise=0.1, random_state=2)
    with shipyard.start_run(unique("grid-")) as run:
        GridSearchCV(LinearRegression(), {"fit_intercept": [True, False]}, cv=2).fit(x, y)
    got = tracking.get_run(run.id)
    assert got["tags"]["estimator_name"] == "GridSearchCV"
    assert {"training_mse", "training_rmse", "training_mae", "training_r2_score"} <= set(
        got["metrics"]
    )
    mse = got["metrics"]["training_mse"]["value"]
    assert got["metrics"]["training_rmse"]["value"] == pytest.approx(mse**0.5)


def test_disable_restores_scikit_learn(tracking: shipyard.Tracking) -> None:
    wrapped = LogisticRegression.fit
    shipyard.autolog(disable=True)
    assert LogisticRegression.fit is not wrapped
    assert not hasattr(LogisticRegression.fit, "__shipyard_original__")
    assert "__init_subclass__" not in BaseEstimator.__dict__
    with shipyard.start_run(unique("off-")) as run:
        LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    assert tracking.get_run(run.id)["params"] == {}
    shipyard.autolog(log_models=False)

    class Custom(BaseEstimator):  # defined after autolog(): hooked as it is created
        def fit(self, x: object, y: object = None) -> Custom:
            return self

    with shipyard.start_run(unique("custom-")) as run:
        Custom().fit([[1.0]])
    assert tracking.get_run(run.id)["tags"]["estimator_name"] == "Custom"
