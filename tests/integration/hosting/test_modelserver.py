"""The model-server replica as the hosting tier runs it: a real process per flavor, real HTTP.

Each flavor's model is built here, served by ``python -m shipyard.hosting.modelserver`` (one
process per module), and every answer is compared with the model's own in-process prediction.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import io
import json
import os
import selectors
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

FEATURES = 10
ROWS = np.random.default_rng(11).normal(size=(5, FEATURES))
JSON_HEADERS = {"content-type": "application/json"}


# --- running a replica ----------------------------------------------------------------------


def _die_with_parent() -> None:
    """Linux: the replica gets SIGTERM if the test process dies, so none is left running."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Replica:
    proc: subprocess.Popen[bytes]
    stderr_path: Path
    port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def wait_ready(self, timeout: float = 60) -> None:
        line = _read_line(self.proc, timeout)
        assert line.startswith("READY "), f"{line!r}; stderr: {self.stderr()}"
        self.port = int(line.split()[1])

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()


def _read_line(proc: subprocess.Popen[bytes], timeout: float) -> str:
    """The first stdout line, without blocking past ``timeout`` or past the process's end."""
    assert proc.stdout is not None
    selector, buffer = selectors.DefaultSelector(), b""
    selector.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while b"\n" not in buffer:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not selector.select(remaining):
            raise TimeoutError(f"no line from the replica in {timeout}s")
        chunk = os.read(proc.stdout.fileno(), 4096)
        if not chunk:
            break
        buffer += chunk
    return buffer.decode().split("\n", 1)[0]


def launch(
    model_dir: Path, *args: str, env: dict[str, str] | None = None, log_dir: Path | None = None
) -> Replica:
    cmd = [sys.executable, "-m", "shipyard.hosting.modelserver", *args]
    if "--model-dir" not in args and not (env or {}).get("SM_MODEL_DIR"):
        cmd += ["--model-dir", str(model_dir)]
    if "--port" not in args and not (env or {}).get("SAGEMAKER_BIND_TO_PORT"):
        cmd += ["--port", "0"]
    stderr_path = (log_dir or model_dir.parent) / f"{model_dir.name}.stderr"
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env={**os.environ, **(env or {})},
            preexec_fn=_die_with_parent,
        )
    return Replica(proc, stderr_path)


@contextlib.contextmanager
def serving(model_dir: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Replica]:
    replica = launch(model_dir, *args, env=env)
    try:
        replica.wait_ready()
        yield replica
    finally:
        replica.stop()


# --- one model and one replica per flavor ---------------------------------------------------


@dataclass
class Served:
    replica: Replica
    expected: Callable[[np.ndarray], np.ndarray]  # the model's own prediction, in process
    rtol: float = 1e-9


def _train_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    features = rng.normal(size=(300, FEATURES))
    return features, (features[:, 0] - features[:, 3] > 0).astype(int)


@pytest.fixture(scope="module")
def sklearn_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Configured through the environment, as SageMaker does: proba and a model version."""
    model_dir = tmp_path_factory.mktemp("sklearn") / "model"
    model_dir.mkdir()
    model = LogisticRegression().fit(*_train_data())
    joblib.dump(model, model_dir / "model.joblib")
    env = {
        "SM_MODEL_DIR": str(model_dir),
        "SAGEMAKER_BIND_TO_PORT": "0",
        "SHIPYARD_MODEL_FLAVOR": "sklearn",
        "SHIPYARD_MODEL_VERSION": "v23",
        "SHIPYARD_PREDICT": "proba",
    }
    with serving(model_dir, env=env) as replica:
        yield Served(replica, lambda x: model.predict_proba(x)[:, 1])


@pytest.fixture(scope="module")
def xgboost_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    import xgboost

    model_dir = tmp_path_factory.mktemp("xgboost") / "model"
    model_dir.mkdir()
    features, labels = _train_data()
    params = {"objective": "binary:logistic", "max_depth": 3, "nthread": 1}
    booster = xgboost.train(params, xgboost.DMatrix(features, label=labels), num_boost_round=8)
    booster.save_model(model_dir / "model.json")
    with serving(model_dir, "--flavor", "xgboost", "--model-version", "v7") as replica:
        yield Served(replica, lambda x: booster.predict(xgboost.DMatrix(x)), rtol=1e-6)


@pytest.fixture(scope="module")
def pytorch_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    import torch

    model_dir = tmp_path_factory.mktemp("pytorch") / "model"
    model_dir.mkdir()
    torch.manual_seed(0)
    with warnings.catch_warnings():  # TorchScript is deprecated in favour of torch.export
        warnings.simplefilter("ignore", DeprecationWarning)
        module: Any = torch.jit.script(torch.nn.Linear(FEATURES, 1))
    module.save(str(model_dir / "model.pt"))

    def expected(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return np.asarray(module(torch.as_tensor(x, dtype=torch.float32)).numpy())

    with serving(model_dir, "--flavor", "pytorch", "--model-version", "v7") as replica:
        yield Served(replica, expected, rtol=1e-6)


@pytest.fixture(scope="module")
def onnx_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from skl2onnx import to_onnx

    model_dir = tmp_path_factory.mktemp("onnx") / "model"
    model_dir.mkdir()
    model = LogisticRegression().fit(*_train_data())
    onx = to_onnx(model, ROWS[:1].astype(np.float32), options={"zipmap": False})
    (model_dir / "model.onnx").write_bytes(onx.SerializeToString())
    args = ("--flavor", "onnx", "--model-version", "v7", "--predict", "proba")
    with serving(model_dir, *args) as replica:
        yield Served(replica, lambda x: model.predict_proba(x)[:, 1], rtol=1e-5)


CUSTOM_SCRIPT = '''
    """A hand-written linear model: model_fn, predict_fn and the request context."""
    import json
    import os

    import numpy as np


    class Refused(Exception):
        status_code = 422


    def model_fn(model_dir):
        with open(os.path.join(model_dir, "weights.json")) as src:
            return np.array(json.load(src))


    def predict_fn(data, model, context):
        attributes = context.custom_attributes or ""
        if "fail" in attributes:
            raise ValueError("predict_fn refused the request: fail was asked for")
        if "refuse" in attributes:
            raise Refused("refused with a status of its own")
        if attributes:
            context.response_custom_attributes = "echo=" + attributes
        data = np.asarray(data, dtype=float)
        if data.shape[-1] != len(model):
            raise ValueError(f"expected {len(model)} features, got {data.shape[-1]}")
        return data @ model
'''


@pytest.fixture(scope="module")
def custom_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    model_dir = tmp_path_factory.mktemp("custom") / "model"
    (model_dir / "code").mkdir(parents=True)
    weights = np.linspace(-1, 1, FEATURES)
    (model_dir / "weights.json").write_text(json.dumps(weights.tolist()))
    (model_dir / "code" / "inference.py").write_text(textwrap.dedent(CUSTOM_SCRIPT))
    with serving(model_dir, "--flavor", "custom", "--model-version", "v7") as replica:
        yield Served(replica, lambda x: x @ weights)


FLAVORS = ["sklearn", "xgboost", "pytorch", "onnx", "custom"]


@pytest.fixture(params=FLAVORS)
def served(request: pytest.FixtureRequest) -> Served:
    return request.getfixturevalue(f"{request.param}_served")  # type: ignore[no-any-return]


def _flat(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(-1)


def _error(response: httpx.Response) -> dict[str, str]:
    assert response.headers["content-type"] == "application/json"
    return response.json()["error"]  # type: ignore[no-any-return]


# --- the contract, for every flavor ----------------------------------------------------------


def test_ping_answers_200_once_loaded(served: Served) -> None:
    with served.replica.client() as client:
        response = client.get("/ping")
    assert response.status_code == 200 and response.content == b""


def test_one_row_of_json_features_gives_one_prediction_and_the_version(served: Served) -> None:
    with served.replica.client() as client:
        response = client.post("/invocations", json={"features": ROWS[0].tolist()})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert list(answer) == ["prediction", "model_version"]
    assert answer["model_version"] in {"v23", "v7"}
    expected = _flat(served.expected(ROWS[:1]))[0]
    np.testing.assert_allclose(answer["prediction"], expected, served.rtol)


def test_json_instances_and_a_bare_list_of_rows_give_predictions(served: Served) -> None:
    expected = _flat(served.expected(ROWS))
    with served.replica.client() as client:
        for payload in ({"instances": ROWS.tolist()}, ROWS.tolist()):
            response = client.post("/invocations", json=payload)
            assert response.status_code == 200, response.text
            answer = response.json()
            assert set(answer) == {"predictions", "model_version"}
            np.testing.assert_allclose(answer["predictions"], expected, served.rtol)


def test_csv_rows_give_one_prediction_per_line(served: Served) -> None:
    body = "\n".join(",".join(map(str, row)) for row in ROWS.tolist()) + "\n"
    headers = {"content-type": "text/csv", "accept": "text/csv"}
    with served.replica.client() as client:
        response = client.post("/invocations", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv"
    lines = response.text.splitlines()
    assert len(lines) == len(ROWS)
    np.testing.assert_allclose([float(v) for v in lines], _flat(served.expected(ROWS)), served.rtol)


def test_npy_in_npy_out(served: Served) -> None:
    buffer = io.BytesIO()
    np.save(buffer, ROWS)
    headers = {"content-type": "application/x-npy", "accept": "application/x-npy"}
    with served.replica.client() as client:
        response = client.post("/invocations", content=buffer.getvalue(), headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-npy"
    answer = np.load(io.BytesIO(response.content), allow_pickle=False)
    np.testing.assert_allclose(_flat(answer), _flat(served.expected(ROWS)), served.rtol)


def test_a_wrong_feature_count_is_a_400_model_error_naming_it(served: Served) -> None:
    with served.replica.client() as client:
        response = client.post("/invocations", json={"features": [1.0] * 9})
        assert response.status_code == 400
        error = _error(response)
        assert error["code"] == "ModelError"
        assert "9" in error["message"] and "10" in error["message"], error["message"]
        assert "Traceback" not in error["message"]
        # and the replica goes on serving
        assert client.post("/invocations", json={"features": ROWS[0].tolist()}).status_code == 200


def test_text_plain_is_415(served: Served) -> None:
    headers = {"content-type": "text/plain"}
    with served.replica.client() as client:
        response = client.post("/invocations", content=b"1,2,3", headers=headers)
    assert response.status_code == 415
    assert _error(response)["code"] == "UnsupportedMediaType"


# --- codecs, limits and errors (on the sklearn replica) --------------------------------------


def test_accept_picks_the_answer_format_and_unknown_ones_are_406(sklearn_served: Served) -> None:
    expected = _flat(sklearn_served.expected(ROWS))
    with sklearn_served.replica.client() as client:
        for accept in ("*/*", "application/json; q=0.9", "image/png, application/json"):
            response = client.post("/invocations", json=ROWS.tolist(), headers={"accept": accept})
            np.testing.assert_allclose(response.json()["predictions"], expected)
        response = client.post(
            "/invocations", json={"features": ROWS[0].tolist()}, headers={"accept": "text/csv"}
        )
        assert float(response.text) == pytest.approx(expected[0])
        response = client.post("/invocations", json=ROWS.tolist(), headers={"accept": "image/png"})
        assert response.status_code == 406 and _error(response)["code"] == "NotAcceptable"


@pytest.mark.parametrize(
    ("body", "content_type", "words"),
    [
        (b'{"features": [1, 2,', "application/json", "not valid JSON"),
        (b'{"rows": [[1, 2]]}', "application/json", "features"),
        (b"[[1, 2], [3]]", "application/json", "same number"),
        (b"1,2,x,4\n", "text/csv", "'x' is not a number"),
        (b"not an array", "application/x-npy", "NPY"),
        (b"", "application/json", "empty"),
    ],
)
def test_unparsable_bodies_are_400_model_errors(
    sklearn_served: Served, body: bytes, content_type: str, words: str
) -> None:
    with sklearn_served.replica.client() as client:
        response = client.post("/invocations", content=body, headers={"content-type": content_type})
    assert response.status_code == 400
    error = _error(response)
    assert error["code"] == "ModelError" and words in error["message"]


def test_a_body_over_the_limit_is_413_declared_or_chunked(sklearn_served: Served) -> None:
    oversize = b"[" + b" " * (6 * 1024 * 1024) + b"]"
    with sklearn_served.replica.client() as client:
        response = client.post("/invocations", content=oversize, headers=JSON_HEADERS)
        assert response.status_code == 413 and _error(response)["code"] == "PayloadTooLarge"

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is checked as it reads
            for _ in range(7):
                yield b" " * (1024 * 1024)

        response = client.post("/invocations", content=chunks(), headers=JSON_HEADERS)
        assert response.status_code == 413
        # the same keep-alive connection still serves
        response = client.post("/invocations", json={"features": ROWS[0].tolist()})
        assert response.status_code == 200


def test_a_large_body_is_predicted_off_the_loop_with_the_same_answer(
    sklearn_served: Served,
) -> None:
    rows = np.random.default_rng(5).normal(size=(4000, FEATURES))  # ~800 KB of JSON
    with sklearn_served.replica.client() as client:
        response = client.post("/invocations", json={"instances": rows.tolist()})
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(response.json()["predictions"], sklearn_served.expected(rows))


def test_a_sklearn_replica_loads_no_other_flavors_library(sklearn_served: Served) -> None:
    maps = Path(f"/proc/{sklearn_served.replica.proc.pid}/maps").read_text()
    for library in ("libtorch", "libxgboost", "onnxruntime"):
        assert library not in maps


def test_unknown_routes_and_methods_answer_json(sklearn_served: Served) -> None:
    with sklearn_served.replica.client() as client:
        assert client.get("/nope").status_code == 404
        response = client.get("/invocations")
        assert response.status_code == 405 and _error(response)["code"] == "MethodNotAllowed"


# --- inference.py: errors, context, custom attributes ----------------------------------------


def test_a_predict_fn_that_raises_answers_its_message_and_the_replica_goes_on(
    custom_served: Served,
) -> None:
    payload = {"features": ROWS[0].tolist()}
    with custom_served.replica.client() as client:
        attrs = {"X-Amzn-SageMaker-Custom-Attributes": "fail=1"}
        response = client.post("/invocations", json=payload, headers=attrs)
        assert response.status_code == 400
        assert _error(response) == {
            "code": "ModelError",
            "message": "predict_fn refused the request: fail was asked for",
        }
        attrs = {"X-Amzn-SageMaker-Custom-Attributes": "refuse=1"}
        response = client.post("/invocations", json=payload, headers=attrs)
        assert response.status_code == 422  # the exception's own status_code
        assert _error(response)["message"] == "refused with a status of its own"
        response = client.post("/invocations", json=payload)
        assert response.status_code == 200
        assert "x-amzn-sagemaker-custom-attributes" not in response.headers


def test_custom_attributes_reach_the_script_and_come_back(custom_served: Served) -> None:
    attrs = {"X-Amzn-SageMaker-Custom-Attributes": "trace=abc"}
    with custom_served.replica.client() as client:
        response = client.post("/invocations", json={"features": ROWS[0].tolist()}, headers=attrs)
    assert response.status_code == 200
    assert response.headers["x-amzn-sagemaker-custom-attributes"] == "echo=trace=abc"


def test_a_custom_script_with_only_output_fn_falls_back_to_the_flavor_of_the_files(
    tmp_path: Path,
) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    model = LogisticRegression().fit(*_train_data())
    joblib.dump(model, model_dir / "model.pkl")
    (model_dir / "inference.py").write_text(
        textwrap.dedent(
            """
            def output_fn(prediction, accept):
                return "labels:" + ",".join(str(int(v)) for v in prediction), "text/plain"
            """
        )
    )
    with serving(model_dir, "--flavor", "custom") as replica, replica.client() as client:
        response = client.post("/invocations", json=ROWS.tolist())
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain"
    assert response.text == "labels:" + ",".join(str(v) for v in model.predict(ROWS))


# --- start-up and shutdown --------------------------------------------------------------------


def test_a_model_dir_without_a_model_exits_non_zero_with_one_stderr_line(tmp_path: Path) -> None:
    model_dir = tmp_path / "empty"
    model_dir.mkdir()
    replica = launch(model_dir, "--flavor", "sklearn")
    assert replica.proc.wait(30) != 0
    lines = replica.stderr().strip().splitlines()
    assert lines == [
        f"modelserver: error: no sklearn model in {model_dir} "
        "(expected one of: model.joblib, model.pkl, model.pickle)"
    ]


def test_a_model_that_cannot_be_loaded_exits_non_zero_naming_the_file(tmp_path: Path) -> None:
    model_dir = tmp_path / "broken"
    model_dir.mkdir()
    (model_dir / "model.joblib").write_bytes(b"this is not a pickle")
    replica = launch(model_dir, "--flavor", "sklearn")
    assert replica.proc.wait(60) == 1
    last = replica.stderr().strip().splitlines()[-1]
    assert last.startswith("modelserver: error: cannot load ") and "model.joblib" in last


SLOW_SCRIPT = """
    import time


    def model_fn(model_dir):
        time.sleep(1.5)  # a large model: /ping says 503 meanwhile
        return "slow"


    def predict_fn(data, model):
        time.sleep(float(data["sleep"]))
        return {"slept": data["sleep"]}
"""


def test_ping_is_503_while_loading_and_sigterm_answers_in_flight_requests(
    tmp_path: Path,
) -> None:
    model_dir = tmp_path / "slow"
    model_dir.mkdir()
    (model_dir / "inference.py").write_text(textwrap.dedent(SLOW_SCRIPT))
    # Every body goes to the predict threads, so the loop stays free to take all requests in.
    replica = launch(model_dir, "--flavor", "custom", "--port", "0", "--inline-max-bytes", "0")
    try:
        # --port 0: the port is only known from READY, so find it from the process's socket
        port = _listening_port(replica.proc.pid)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            assert client.get("/ping").status_code == 503
            response = client.post("/invocations", json={"sleep": 0})
            assert response.status_code == 503 and _error(response)["code"] == "ModelNotReady"
        replica.wait_ready()
        assert replica.port == port
        with httpx.Client(base_url=replica.url) as client:
            assert client.get("/ping").status_code == 200

        def invoke(_: int) -> httpx.Response:
            with httpx.Client(base_url=replica.url, timeout=30) as client:
                return client.post("/invocations", json={"sleep": 1.0})

        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            futures = [pool.submit(invoke, i) for i in range(3)]
            time.sleep(0.5)  # all three are in the replica, none answered yet
            assert not any(future.done() for future in futures)
            replica.proc.send_signal(signal.SIGTERM)
            responses = [future.result() for future in futures]
        assert [r.status_code for r in responses] == [200, 200, 200]
        assert all(r.json() == {"slept": 1.0} for r in responses)
        assert replica.proc.wait(30) == 0
    finally:
        replica.stop()


def _listening_port(pid: int, timeout: float = 30) -> int:
    """The TCP port ``pid`` listens on (from /proc), once it does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        inodes = set()
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
        for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                return int(fields[1].split(":")[1], 16)
        time.sleep(0.05)
    raise TimeoutError(f"process {pid} is not listening")


# --- micro-batching -----------------------------------------------------------------------------


def test_micro_batching_answers_every_concurrent_request_on_its_own(tmp_path: Path) -> None:
    model_dir = tmp_path / "batched"
    model_dir.mkdir()
    model = LogisticRegression().fit(*_train_data())
    joblib.dump(model, model_dir / "model.joblib")
    rows = np.random.default_rng(9).normal(size=(48, FEATURES))
    args = ("--flavor", "sklearn", "--batch-max", "8", "--batch-wait-ms", "2")
    with serving(model_dir, *args) as replica:

        def invoke(i: int) -> httpx.Response:
            features = rows[i].tolist() if i % 12 else [1.0] * 9  # every 12th one is wrong
            with httpx.Client(base_url=replica.url, timeout=30) as client:
                return client.post("/invocations", json={"features": features})

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            responses = list(pool.map(invoke, range(len(rows))))
    expected = model.predict(rows)
    for i, response in enumerate(responses):
        if i % 12:
            assert response.status_code == 200, response.text
            assert response.json()["prediction"] == expected[i]
        else:
            assert response.status_code == 400 and "9 features" in _error(response)["message"]
