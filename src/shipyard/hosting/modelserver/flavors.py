"""Built-in flavors: which file each one loads, how, and the predict function it serves.

==========  ======================================================  ============================
flavor      files (first found wins)                                loaded with
==========  ======================================================  ============================
sklearn     model.joblib, model.pkl, model.pickle                   joblib.load
xgboost     model.json, model.ubj, model.xgb, xgboost-model,        xgboost.Booster.load_model
            or a pickled sklearn-API model (model.joblib/pkl/...)   (inplace_predict), joblib
pytorch     model.pt, model.pth (TorchScript)                       torch.jit.load, CPU,
                                                                    inference_mode
onnx        model.onnx (one input)                                  onnxruntime, CPU provider
==========  ======================================================  ============================

Each library is imported only by its own loader. Intra-op threads default to one
(``--intra-op-threads``; 0 keeps the library's default): a replica is one process among
several on a host and serves mostly small batches, where a thread pool costs more than it
gives (an xgboost one-row predict took 3.3 ms with OpenMP on every core, 0.18 ms on one).
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from shipyard.hosting.modelserver.errors import ModelError, ModelLoadError

log = logging.getLogger("shipyard.modelserver")

Predict = Callable[[Any], Any]

BUILTIN: Final = ("sklearn", "xgboost", "pytorch", "onnx")
FLAVORS: Final = (*BUILTIN, "custom")
_PICKLES: Final = ("model.joblib", "model.pkl", "model.pickle")
_XGB_NATIVE: Final = ("model.json", "model.ubj", "model.xgb", "xgboost-model")
MODEL_FILES: Final[dict[str, tuple[str, ...]]] = {
    "sklearn": _PICKLES,
    "xgboost": (*_XGB_NATIVE, *_PICKLES),
    "pytorch": ("model.pt", "model.pth"),
    "onnx": ("model.onnx",),
}
# Guessing a flavor from files (for ``custom`` without model_fn): the unambiguous names first.
_DETECT: Final = (
    ("onnx", MODEL_FILES["onnx"]),
    ("pytorch", MODEL_FILES["pytorch"]),
    ("xgboost", _XGB_NATIVE),
    ("sklearn", _PICKLES),
)
_ONNX_DTYPES: Final[dict[str, Any]] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
    "tensor(string)": object,
}


@dataclass(frozen=True, slots=True)
class PredictOptions:
    mode: str = "predict"  # or "proba": the positive-class probability (sklearn-API, ONNX)
    threads: int = 1  # intra-op threads for xgboost, torch and onnxruntime; 0: the library's


@dataclass(frozen=True, slots=True)
class LoadedModel:
    flavor: str
    model: Any  # what an inference.py predict_fn receives
    predict: Predict


def detect_flavor(model_dir: Path) -> str | None:
    """The built-in flavor whose model file is in ``model_dir``, or None."""
    for flavor, names in _DETECT:
        if any((model_dir / name).is_file() for name in names):
            return flavor
    return None


def find_model_file(flavor: str, model_dir: Path) -> Path:
    """The flavor's file by its usual name, else the one file with its extension (a model
    deployed from an artifact keeps the artifact's own name: ``watched.pkl``)."""
    for name in MODEL_FILES[flavor]:
        if (path := model_dir / name).is_file():
            return path
    suffixes = {Path(name).suffix for name in MODEL_FILES[flavor]}
    found = [p for p in model_dir.iterdir() if p.is_file() and p.suffix in suffixes]
    if len(found) == 1:
        return found[0]
    expected = ", ".join(MODEL_FILES[flavor])
    raise ModelLoadError(f"no {flavor} model in {model_dir} (expected one of: {expected})")


def load(flavor: str, model_dir: Path, options: PredictOptions) -> LoadedModel:
    """Load the ``flavor`` model found in ``model_dir``; ModelLoadError says why not."""
    path = find_model_file(flavor, model_dir)
    try:
        model = _LOADERS[flavor](path)
    except ModelLoadError:
        raise
    except ImportError as exc:
        raise ModelLoadError(
            f"the {flavor} flavor needs {exc.name or exc}: pip install 'shipyard[serving]'"
        ) from exc
    except Exception as exc:
        raise ModelLoadError(f"cannot load {path}: {model_message(exc)}") from exc
    return LoadedModel(flavor, model, predictor_for(model, options))


def predictor_for(model: Any, options: PredictOptions) -> Predict:
    """The default predict for a model object, by its type: a Booster, a TorchScript module,
    an onnxruntime session, anything with ``predict`` (scikit-learn API), or a callable."""
    package, kind = type(model).__module__.split(".", 1)[0], type(model).__name__
    if package == "onnxruntime":
        return _onnx_predictor(model, options)
    if package == "torch":
        return _torch_predictor(model, options)
    if package == "xgboost" and kind == "Booster":
        return _booster_predictor(model, options)
    if hasattr(model, "predict"):
        return _sklearn_predictor(model, options)
    if callable(model):
        return _guarded(model)
    raise ModelLoadError(f"a {kind} has neither predict() nor __call__(): write a predict_fn")


def model_message(exc: BaseException) -> str:
    """The useful line of a library's error: no C++ stack, no TorchScript traceback."""
    text = str(exc).split("\nStack trace:", 1)[0].strip()
    if "Traceback of TorchScript" in text or text.startswith("The following operation failed"):
        text = text.splitlines()[-1].strip()
    return text or type(exc).__name__


def _guarded(predict: Predict) -> Predict:
    """Library exceptions as ModelError with a clean message."""

    def guarded(data: Any) -> Any:
        try:
            return predict(data)
        except (ModelError, MemoryError):
            raise
        except Exception as exc:
            raise ModelError(model_message(exc)) from exc

    return guarded


# --- loaders: a path in, the model object out; the library is imported here and only here ------


def _unpickle(path: Path) -> Any:
    try:
        import joblib  # a scikit-learn dependency; it also reads plain pickles
    except ImportError:
        with path.open("rb") as src:
            return pickle.load(src)  # noqa: S301 -- the registry scanned it before approval
    return joblib.load(path)


def _load_xgboost(path: Path) -> Any:
    import xgboost

    if path.name not in _XGB_NATIVE:
        return _unpickle(path)
    booster = xgboost.Booster()
    try:
        booster.load_model(str(path))
    except xgboost.core.XGBoostError:
        if path.name != "xgboost-model":  # SageMaker's name, for a native or a pickled model
            raise
        return _unpickle(path)
    return booster


def _load_torch(path: Path) -> Any:
    import torch

    try:
        model = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
    except RuntimeError as exc:
        raise ModelLoadError(
            f"{path} is not a TorchScript model (save it with torch.jit.save): {model_message(exc)}"
        ) from exc
    model.eval()
    return model


def _load_onnx(path: Path) -> Any:
    import onnxruntime

    session_options = onnxruntime.SessionOptions()
    session_options.log_severity_level = 3  # errors only
    # Idle pool threads spin for a while after each run by default, burning a core per
    # replica between requests.
    session_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(
        str(path), session_options, providers=["CPUExecutionProvider"]
    )


_LOADERS: Final[dict[str, Callable[[Path], Any]]] = {
    "sklearn": _unpickle,
    "xgboost": _load_xgboost,
    "pytorch": _load_torch,
    "onnx": _load_onnx,
}


# --- predictors ---------------------------------------------------------------------------


def _sklearn_predictor(model: Any, options: PredictOptions) -> Predict:
    if options.threads and hasattr(model, "get_booster") and hasattr(model, "set_params"):
        model.set_params(n_jobs=options.threads)  # an xgboost sklearn-API model
    if options.mode != "proba":
        return _guarded(model.predict)
    proba = getattr(model, "predict_proba", None)
    if proba is None:
        raise ModelLoadError(f"--predict proba: a {type(model).__name__} has no predict_proba()")

    def predict(data: Any) -> Any:
        return _positive_class(proba(data))

    return _guarded(predict)


def _positive_class(proba: Any) -> Any:
    """A binary classifier's ``(n, 2)`` probabilities as the positive class's ``n``."""
    if isinstance(proba, np.ndarray) and proba.ndim == 2 and proba.shape[1] == 2:
        return np.ascontiguousarray(proba[:, 1])
    return proba


def _booster_predictor(booster: Any, options: PredictOptions) -> Predict:
    if options.threads:
        booster.set_param({"nthread": options.threads})
    if options.mode == "proba":
        log.warning("--predict proba: a Booster answers what its objective gives (as is)")

    def predict(data: Any) -> Any:
        return booster.inplace_predict(data if isinstance(data, np.ndarray) else np.asarray(data))

    return _guarded(predict)


def _torch_predictor(model: Any, options: PredictOptions) -> Predict:
    import torch

    if options.threads:
        torch.set_num_threads(options.threads)
    if options.mode == "proba":
        log.warning("--predict proba: a torch model answers what its forward() gives (as is)")
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)

    def predict(data: Any) -> Any:
        array = data if isinstance(data, np.ndarray) else np.asarray(data)
        tensor = torch.as_tensor(array, dtype=dtype if array.dtype.kind == "f" else None)
        with torch.inference_mode():
            return _to_numpy(model(tensor))

    return _guarded(predict)


def _to_numpy(output: Any) -> Any:
    if isinstance(output, tuple | list):  # several outputs: the first is the prediction
        output = output[0]
    if isinstance(output, dict):
        return {key: _to_numpy(value) for key, value in output.items()}
    return output.numpy() if hasattr(output, "numpy") else output


def _onnx_predictor(session: Any, options: PredictOptions) -> Predict:
    first = session.get_inputs()[0]
    name, dtype = first.name, _ONNX_DTYPES.get(first.type)
    outputs = [output.name for output in session.get_outputs()]
    output = outputs[0]
    if options.mode == "proba":
        probabilities = [out for out in outputs if "prob" in out.lower()]
        if not probabilities:
            raise ModelLoadError(f"--predict proba: no probability output in {outputs}")
        output = probabilities[0]

    def predict(data: Any) -> Any:
        array = np.asarray(data, dtype=dtype)
        result = session.run([output], {name: array})[0]
        if isinstance(result, list) and result and isinstance(result[0], dict):
            result = np.array([[row[key] for key in sorted(row)] for row in result])  # ZipMap
        return _positive_class(result) if options.mode == "proba" else result

    return _guarded(predict)
