"""``shipyard.autolog()``: scikit-learn fits log themselves to the active run.

How it hooks in: every class derived from ``sklearn.base.BaseEstimator`` that defines ``fit``
gets that ``fit`` wrapped, the classes already imported found through ``__subclasses__()``, and
classes defined later (a module imported after ``autolog()``, or a custom estimator) through
a hook on ``BaseEstimator.__init_subclass__``. Unlike wrapping the classes listed by
``sklearn.utils.all_estimators()``, this imports nothing extra (that import alone takes
seconds), and it covers third-party and user-defined estimators too.

Only the outermost ``fit`` logs: a ``Pipeline`` fitting its steps or a ``GridSearchCV`` fitting
its candidates runs the inner fits untouched. The flag is process-wide, so fits running at the
same time in several threads log only the first; fits in worker processes never log.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import pickle
import tempfile
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shipyard.sdk._exceptions import ShipyardError
from shipyard.sdk._tracking import MAX_PARAM_LENGTH, ActiveRun, active_run, start_run

MAX_PARAM_TEXT = 500
"""Longer param values (reprs of nested estimators and step lists) are skipped: with
``get_params(deep=True)`` each nested estimator's own params are logged one by one."""
_ORIGINAL = "__shipyard_original__"
_FIT = "fit"


class _State:
    def __init__(self) -> None:
        self.patched: dict[type, Callable[..., Any]] = {}
        self.subclass_hook: tuple[bool, Any] | None = None  # (was in __dict__, previous)
        self.busy = False
        self.lock = threading.Lock()
        self.project: str | None = None
        self.experiment = "Default"
        self.log_models = True


_state = _State()


def autolog(
    *,
    disable: bool = False,
    log_models: bool = True,
    project: str | None = None,
    experiment: str = "Default",
) -> None:
    """Log every scikit-learn ``fit``: params, training metrics, tags and the pickled model.

    Each fit logs to the active run, or to a new run in ``experiment`` of ``project``
    (default ``$SHIPYARD_PROJECT``) that ends when the fit returns. Logged:
    ``estimator.get_params()`` as params; ``training_score`` and, for classifiers,
    ``training_accuracy_score``, ``training_precision_score``, ``training_recall_score``,
    ``training_f1_score`` (weighted) and ``training_roc_auc`` (binary, with
    ``predict_proba``), for regressors ``training_mse``, ``training_rmse``, ``training_mae``
    and ``training_r2_score``; the tags ``estimator_name`` and ``estimator_class``; and
    ``model/model.pkl``.
    ``autolog(disable=True)`` restores scikit-learn as it was.

    Example::

        import shipyard
        from sklearn.linear_model import LogisticRegression

        shipyard.autolog()
        with shipyard.start_run("baseline", project="ml/churn"):
            LogisticRegression().fit(X, y)
    """
    try:
        from sklearn.base import BaseEstimator
    except ImportError as exc:
        raise ImportError(
            "shipyard.autolog() logs scikit-learn fits: install scikit-learn"
        ) from exc
    with _state.lock:
        if disable:
            _unpatch(BaseEstimator)
            return
        _state.project, _state.experiment = project, experiment
        _state.log_models = log_models
        for cls in _subclasses(BaseEstimator):
            _patch_class(cls)
        _hook_new_subclasses(BaseEstimator)


def _subclasses(base: type) -> list[type]:
    found: dict[type, None] = {}
    stack: list[type] = [base]
    while stack:
        subs: list[type] = stack.pop().__subclasses__()
        for sub in subs:
            if sub not in found:
                found[sub] = None
                stack.append(sub)
    return list(found)


def _patch_class(cls: type) -> None:
    """Wrap the ``fit`` that ``cls`` uses, in the class that defines it."""
    for owner in cls.__mro__:
        fit = owner.__dict__.get(_FIT)
        if fit is None:
            continue
        if inspect.isfunction(fit) and not hasattr(fit, _ORIGINAL):
            wrapped = _wrap(fit)
            setattr(owner, _FIT, wrapped)
            _state.patched[owner] = fit
        return


def _hook_new_subclasses(base: Any) -> None:
    if _state.subclass_hook is not None:
        return
    had = "__init_subclass__" in base.__dict__
    previous = base.__dict__.get("__init_subclass__")

    def hook(cls: type[Any], /, **kwargs: Any) -> None:
        if previous is not None:
            previous.__get__(None, cls)(**kwargs)
        else:
            super(base, cls).__init_subclass__(**kwargs)
        _patch_class(cls)

    type.__setattr__(base, "__init_subclass__", classmethod(hook))
    _state.subclass_hook = (had, previous)


def _unpatch(base: type) -> None:
    for owner, fit in _state.patched.items():
        setattr(owner, _FIT, fit)
    _state.patched.clear()
    if _state.subclass_hook is not None:
        had, previous = _state.subclass_hook
        if had:
            type.__setattr__(base, "__init_subclass__", previous)
        else:
            type.__delattr__(base, "__init_subclass__")
        _state.subclass_hook = None


def _wrap(fit: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fit)
    def logging_fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not _claim():
            return fit(self, *args, **kwargs)
        try:
            return _fit_and_log(fit, self, args, kwargs)
        finally:
            _state.busy = False

    setattr(logging_fit, _ORIGINAL, fit)
    return logging_fit


def _claim() -> bool:
    """True for the outermost fit only (and not while this module is itself logging)."""
    with _state.lock:
        if _state.busy:
            return False
        _state.busy = True
        return True


def _fit_and_log(
    fit: Callable[..., Any], estimator: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    run = active_run()
    owned = run is None
    if run is None:
        try:
            run = start_run(_state.experiment, project=_state.project)
        except ShipyardError as exc:
            warnings.warn(f"shipyard.autolog is not logging this fit: {exc}", stacklevel=3)
            return fit(estimator, *args, **kwargs)
    try:
        result = fit(estimator, *args, **kwargs)
    except BaseException:
        if owned:
            with contextlib.suppress(Exception):
                run.end("FAILED")
        raise
    try:
        _log_fit(run, estimator, args, kwargs)
        if owned:
            run.end()
    except Exception as exc:  # the fit succeeded: a logging failure must not undo it
        warnings.warn(
            f"shipyard.autolog could not log the fit of {type(estimator).__name__} to run "
            f"{run.id}: {exc}",
            stacklevel=3,
        )
    return result


def _fit_inputs(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any, Any]:
    x = args[0] if args else kwargs.get("X")
    y = args[1] if len(args) > 1 else kwargs.get("y")
    return x, y, kwargs.get("sample_weight")


def _log_fit(run: ActiveRun, estimator: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    x, y, weights = _fit_inputs(args, kwargs)
    cls = type(estimator)
    params = loggable_params(estimator)
    with run._lock:  # a param logged before with another value is kept, not a failure
        known = dict(run._params)
    clashing = sorted(k for k, v in params.items() if known.get(k, v) != v)
    if clashing:
        warnings.warn(
            f"shipyard.autolog: params already logged differently: {clashing}", stacklevel=4
        )
    run.log_params({k: v for k, v in params.items() if k not in clashing})
    run.set_tags(
        {"estimator_name": cls.__name__, "estimator_class": f"{cls.__module__}.{cls.__qualname__}"}
    )
    if y is not None:
        run.log_metrics(training_metrics(estimator, x, y, weights))
    if _state.log_models:
        with tempfile.TemporaryDirectory(prefix="shipyard-model-") as tmp:
            path = Path(tmp) / "model.pkl"
            with path.open("wb") as out:
                pickle.dump(estimator, out, protocol=pickle.HIGHEST_PROTOCOL)
            run.log_artifact(path, "model")


def loggable_params(estimator: Any) -> dict[str, str]:
    """``get_params(deep=True)`` as text, without values too long to be worth a param."""
    out = {}
    for key, value in estimator.get_params(deep=True).items():
        text = str(value)
        if len(text) <= min(MAX_PARAM_TEXT, MAX_PARAM_LENGTH) and 0 < len(key) <= 250:
            out[key] = text
    return out


def training_metrics(estimator: Any, x: Any, y: Any, weights: Any) -> dict[str, float]:
    """The training metrics of a fitted classifier or regressor (those that can be computed)."""
    from sklearn import metrics
    from sklearn.base import is_classifier, is_regressor

    found: dict[str, float] = {}

    def add(name: str, compute: Callable[[], float]) -> None:
        with contextlib.suppress(Exception):  # e.g. multi-output targets some metrics refuse
            found[name] = float(compute())

    if is_classifier(estimator):
        predicted = estimator.predict(x)
        w = {"sample_weight": weights}
        avg = {"average": "weighted", "zero_division": 0, **w}
        add("training_accuracy_score", lambda: metrics.accuracy_score(y, predicted, **w))
        add("training_precision_score", lambda: metrics.precision_score(y, predicted, **avg))
        add("training_recall_score", lambda: metrics.recall_score(y, predicted, **avg))
        add("training_f1_score", lambda: metrics.f1_score(y, predicted, **avg))
        if hasattr(estimator, "predict_proba") and len(getattr(estimator, "classes_", ())) == 2:
            add(
                "training_roc_auc",
                lambda: metrics.roc_auc_score(y, estimator.predict_proba(x)[:, 1], **w),
            )
    elif is_regressor(estimator):
        predicted = estimator.predict(x)
        w = {"sample_weight": weights}
        add("training_mse", lambda: metrics.mean_squared_error(y, predicted, **w))
        if "training_mse" in found:
            found["training_rmse"] = math.sqrt(found["training_mse"])
        add("training_mae", lambda: metrics.mean_absolute_error(y, predicted, **w))
        add("training_r2_score", lambda: metrics.r2_score(y, predicted, **w))
    if hasattr(estimator, "score"):
        extra = {} if weights is None else {"sample_weight": weights}
        add("training_score", lambda: estimator.score(x, y, **extra))
    return found
