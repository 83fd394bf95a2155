"""Flavor detection, model-file lookup, start-up checks and the predict each flavor serves."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

from shipyard.hosting.modelserver import flavors
from shipyard.hosting.modelserver.errors import ModelError, ModelLoadError
from shipyard.hosting.modelserver.handler import plan
from shipyard.hosting.modelserver.options import parse_args


@pytest.mark.parametrize(
    ("files", "flavor"),
    [
        (["model.onnx"], "onnx"),
        (["model.pt"], "pytorch"),
        (["model.pth"], "pytorch"),
        (["model.json"], "xgboost"),
        (["model.ubj"], "xgboost"),
        (["xgboost-model"], "xgboost"),
        (["model.joblib"], "sklearn"),
        (["model.pkl"], "sklearn"),
        (["model.pickle"], "sklearn"),
        (["model.onnx", "model.joblib"], "onnx"),  # the unambiguous name wins
        (["model.json", "model.pkl"], "xgboost"),
        (["README.md", "inference.py"], None),
        ([], None),
    ],
)
def test_detect_flavor_from_the_files_present(
    tmp_path: Path, files: list[str], flavor: str | None
) -> None:
    for name in files:
        (tmp_path / name).write_bytes(b"x")
    assert flavors.detect_flavor(tmp_path) == flavor


def test_a_directory_named_like_a_model_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").mkdir()
    assert flavors.detect_flavor(tmp_path) is None


def test_find_model_file_takes_the_first_name_and_lists_them_when_none(tmp_path: Path) -> None:
    (tmp_path / "model.pkl").write_bytes(b"x")
    (tmp_path / "model.joblib").write_bytes(b"x")
    assert flavors.find_model_file("sklearn", tmp_path).name == "model.joblib"
    assert flavors.find_model_file("xgboost", tmp_path).name == "model.joblib"  # sklearn API
    with pytest.raises(ModelLoadError, match=r"no onnx model .*expected one of: model\.onnx"):
        flavors.find_model_file("onnx", tmp_path)


def test_find_model_file_takes_the_one_file_with_the_flavors_extension(tmp_path: Path) -> None:
    (tmp_path / "watched.pkl").write_bytes(b"x")
    (tmp_path / "notes.txt").write_bytes(b"x")
    assert flavors.find_model_file("sklearn", tmp_path).name == "watched.pkl"
    (tmp_path / "other.joblib").write_bytes(b"x")  # two candidates: which one is ambiguous
    with pytest.raises(ModelLoadError, match="expected one of"):
        flavors.find_model_file("sklearn", tmp_path)


def test_plan_checks_the_directory_before_anything_loads(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        plan(tmp_path / "missing", "sklearn")
    with pytest.raises(ModelLoadError, match="no model in"):
        plan(tmp_path, None)
    with pytest.raises(ModelLoadError, match=r"custom flavor needs inference\.py"):
        plan(tmp_path, "custom")
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "inference.py").write_text("")
    assert plan(tmp_path, None).flavor == "custom"
    assert plan(tmp_path, "sklearn").script == tmp_path / "code" / "inference.py"
    (tmp_path / "model.onnx").write_bytes(b"x")
    assert plan(tmp_path, None).flavor == "onnx"


def _classifier() -> tuple[LogisticRegression, np.ndarray]:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(100, 4))
    return LogisticRegression().fit(x, (x[:, 0] > 0).astype(int)), x[:5]


def test_sklearn_loads_with_joblib_and_serves_predict_or_the_positive_probability(
    tmp_path: Path,
) -> None:
    model, rows = _classifier()
    joblib.dump(model, tmp_path / "model.joblib")
    loaded = flavors.load("sklearn", tmp_path, flavors.PredictOptions())
    assert (loaded.predict(rows) == model.predict(rows)).all()
    proba = flavors.load("sklearn", tmp_path, flavors.PredictOptions(mode="proba"))
    np.testing.assert_array_equal(proba.predict(rows), model.predict_proba(rows)[:, 1])


def test_proba_needs_predict_proba(tmp_path: Path) -> None:
    joblib.dump(LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0]), tmp_path / "model.pkl")
    with pytest.raises(ModelLoadError, match="LinearRegression has no predict_proba"):
        flavors.load("sklearn", tmp_path, flavors.PredictOptions(mode="proba"))


def test_a_broken_model_file_is_a_load_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "model.joblib").write_bytes(b"not a pickle")
    with pytest.raises(ModelLoadError, match=r"cannot load .*model\.joblib"):
        flavors.load("sklearn", tmp_path, flavors.PredictOptions())


def test_model_errors_come_out_as_model_error_with_the_libraries_message() -> None:
    model, _ = _classifier()
    predict = flavors.predictor_for(model, flavors.PredictOptions())
    with pytest.raises(ModelError, match="X has 3 features, but LogisticRegression"):
        predict(np.zeros((1, 3)))


def test_predictor_for_plain_callables_and_refuses_the_rest() -> None:
    predict = flavors.predictor_for(lambda x: np.asarray(x) * 2, flavors.PredictOptions())
    assert predict([1, 2]).tolist() == [2, 4]
    with pytest.raises(ModelLoadError, match="neither predict"):
        flavors.predictor_for(object(), flavors.PredictOptions())


def test_model_message_drops_native_stacks_and_torchscript_tracebacks() -> None:
    native = ValueError("Check failed: n == m (2 vs. 3)\nStack trace:\n  [bt] (0) libxgboost.so")
    assert flavors.model_message(native) == "Check failed: n == m (2 vs. 3)"
    script = RuntimeError(
        "The following operation failed in the TorchScript interpreter.\n"
        "Traceback of TorchScript, serialized code (most recent call last):\n  ...\n"
        "RuntimeError: mat1 and mat2 shapes cannot be multiplied (1x9 and 10x1)\n"
    )
    assert flavors.model_message(script) == (
        "RuntimeError: mat1 and mat2 shapes cannot be multiplied (1x9 and 10x1)"
    )
    assert flavors.model_message(KeyError()) == "KeyError"


# --- options ----------------------------------------------------------------------------------


def test_options_come_from_flags_then_the_environment_then_defaults() -> None:
    env = {
        "SM_MODEL_DIR": "/opt/ml/model",
        "SAGEMAKER_BIND_TO_PORT": "9000",
        "SHIPYARD_MODEL_FLAVOR": "xgboost",
        "SHIPYARD_MODEL_VERSION": "v23",
    }
    options = parse_args([], env)
    assert options.model_dir == Path("/opt/ml/model") and options.port == 9000
    assert options.flavor == "xgboost" and options.model_version == "v23"
    assert options.max_body_bytes == 6291456 and options.host == "127.0.0.1"
    options = parse_args(["--port", "81", "--flavor", "onnx", "--predict", "proba"], env)
    assert (options.port, options.flavor, options.predict) == (81, "onnx", "proba")
    assert parse_args(["--model-dir", "m"], {}).port == 8080


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        ([], {}),
        (["--model-dir", "m"], {"SAGEMAKER_BIND_TO_PORT": "eighty"}),
        (["--model-dir", "m"], {"SHIPYARD_MODEL_FLAVOR": "tensorflow"}),
        (["--model-dir", "m", "--flavor", "tensorflow"], {}),
    ],
)
def test_bad_options_are_usage_errors(argv: list[str], env: dict[str, str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(argv, env)
    assert exited.value.code == 2
