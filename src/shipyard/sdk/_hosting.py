"""Hosting of one project: deployable models, endpoint configs, endpoints, promotions, and a
``Predictor`` that invokes an endpoint through the gateway.

An endpoint serves one **endpoint config** (immutable: production variants, each a model on
N replicas of an instance type, an optional shadow, data capture); updating it to a new
config deploys the new fleet beside the old one and shifts traffic by a deployment policy
(``blue_green``, ``canary``, ``linear``, ``all_at_once``), rolling back by itself when the
new fleet fails its health checks or answers too many errors. ``staging`` and ``prod`` take
only Approved, verified registry versions, deployed by an engineer, lead or admin.
"""

from __future__ import annotations

import builtins
import contextlib
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from shipyard.sdk._artifacts import split_project
from shipyard.sdk._exceptions import (
    AsyncInferenceFailed,
    DeploymentFailed,
    ShipyardError,
    error_class,
)
from shipyard.sdk._transport import check, mapped_transport_errors

if TYPE_CHECKING:
    from shipyard.sdk._client import Session

SETTLED = ("InService", "Failed")
POLL_S = 0.5


class Endpoint:
    """An endpoint as the API last described it; ``refresh()`` reads it again.

    Example::

        ep = session.hosting("ml/churn").endpoint("churn-dev")
        print(ep.status, [(v["name"], v["current_instance_count"]) for v in ep.variants])
    """

    def __init__(self, hosting: Hosting, data: Mapping[str, Any]) -> None:
        self._hosting = hosting
        self._data: dict[str, Any] = dict(data)

    def __repr__(self) -> str:
        return f"<Endpoint {self.name} {self.status}>"

    @property
    def name(self) -> str:
        return str(self._data["name"])

    @property
    def status(self) -> str:
        return str(self._data["status"])

    @property
    def reason(self) -> str:
        return str(self._data.get("reason", ""))

    @property
    def environment(self) -> str:
        return str(self._data["environment"])

    @property
    def config_name(self) -> str:
        return str(self._data["config_name"])

    @property
    def current_config(self) -> str | None:
        value = self._data.get("current_config")
        return None if value is None else str(value)

    @property
    def variants(self) -> list[dict[str, Any]]:
        return list(self._data.get("variants", []))

    def as_dict(self) -> dict[str, Any]:
        """The endpoint exactly as the API returned it (JSON types)."""
        return dict(self._data)

    def refresh(self) -> Endpoint:
        self._data = self._hosting._endpoint_data(self.name)
        return self

    def wait(self, *, timeout: float = 300.0) -> Endpoint:
        """Until a deployment settles: InService on the wanted config, or Failed.

        Raises ``DeploymentFailed`` when it ends Failed, or rolled back from the config it
        was asked to serve (``reason`` says why); ``TimeoutError`` after ``timeout``.
        """
        deadline = time.monotonic() + timeout
        wanted = self.config_name
        while True:
            self.refresh()
            if self.status == "Failed":
                raise DeploymentFailed(self.name, self.status, self.reason)
            if self.status == "InService" and self.current_config == wanted:
                return self
            if self.status == "InService" and self.config_name != wanted:
                raise DeploymentFailed(self.name, "RolledBack", self.reason)
            if time.monotonic() > deadline:
                raise TimeoutError(f"endpoint {self.name} is still {self.status} after {timeout}s")
            time.sleep(POLL_S)

    def predictor(self) -> Predictor:
        return self._hosting.predictor(self.name)


class Predictor:
    """Invokes one endpoint through the gateway (SageMaker Runtime's InvokeEndpoint), with
    the session's credentials; the gateway's URL comes from ``GET /api/v1/info``.

    Example::

        predictor = session.hosting("ml/churn").predictor("customer-churn-v23")
        predictor.predict({"features": [25, 2, 0.0, 1, 0, 0, 0, 0, 0, 0]})
        # {'prediction': 0.87, 'model_version': 'v23'}
    """

    def __init__(self, session: Session, endpoint_name: str, *, gateway_url: str | None = None):
        self._session = session
        self.endpoint_name = endpoint_name
        self._gateway_url = gateway_url

    @property
    def gateway_url(self) -> str:
        if self._gateway_url is None:
            self._gateway_url = str(self._session.info()["gateway_url"]).rstrip("/")
        return self._gateway_url

    def predict(
        self,
        payload: Any,
        *,
        content_type: str = "application/json",
        accept: str | None = None,
        target_variant: str | None = None,
        custom_attributes: str | None = None,
    ) -> Any:
        """Send ``payload`` (JSON-encoded unless it is ``bytes``/``str``) and return the
        answer: parsed JSON for a JSON answer, else the raw bytes. Errors are the SDK's
        ``APIError`` tree by status; SageMaker-shaped gateway errors keep their ``__type``
        as ``code`` (an unknown endpoint is ``BadRequest`` with code ``ValidationError``, as
        SageMaker Runtime answers it).
        """
        headers = {"Content-Type": content_type}
        if accept:
            headers["Accept"] = accept
        if target_variant:
            headers["X-Amzn-SageMaker-Target-Variant"] = target_variant
        if custom_attributes:
            headers["X-Amzn-SageMaker-Custom-Attributes"] = custom_attributes
        response = self._post("invocations", headers, _body(payload))
        return _decoded(response)

    def predict_async(
        self,
        payload: Any = None,
        *,
        input_location: str | None = None,
        content_type: str = "application/json",
        accept: str | None = None,
        custom_attributes: str | None = None,
        inference_id: str | None = None,
        ttl_s: int | None = None,
    ) -> AsyncPrediction:
        """Queue a request (InvokeEndpointAsync) and return at once (202); the answer is
        written to ``output_location``, and ``.result()`` waits for it. Give the input as
        ``payload``, or as ``input_location`` (an artifact of the endpoint's project)."""
        headers = {"X-Amzn-SageMaker-Content-Type": content_type, "Content-Type": content_type}
        optional = {
            "X-Amzn-SageMaker-Accept": accept,
            "X-Amzn-SageMaker-Custom-Attributes": custom_attributes,
            "X-Amzn-SageMaker-Inference-Id": inference_id,
            "X-Amzn-SageMaker-InputLocation": input_location,
            "X-Amzn-SageMaker-RequestTTLSeconds": str(ttl_s) if ttl_s else None,
        }
        headers.update({name: value for name, value in optional.items() if value})
        body = {"content": b""} if payload is None else _body(payload)
        queued = self._post("async-invocations", headers, body).json()
        return AsyncPrediction(
            self._session,
            self.endpoint_name,
            str(queued["InferenceId"]),
            str(queued["OutputLocation"]),
            str(queued["FailureLocation"]),
        )

    def _post(
        self, operation: str, headers: dict[str, str], body: dict[str, Any]
    ) -> httpx.Response:
        name = quote(self.endpoint_name, safe="")
        url = f"{self.gateway_url}/endpoints/{name}/{operation}"
        with mapped_transport_errors(self.gateway_url):
            response = self._session.http.post(url, headers=headers, **body)
        if response.status_code >= 400:
            _raise_gateway_error(response)
        return response


class AsyncPrediction:
    """A queued request: where its answer will be, and ``result()`` to wait for it.

    Example::

        queued = predictor.predict_async({"features": [25, 2]})
        print(queued.inference_id, queued.output_location)
        queued.result(timeout=60)  # {'prediction': 0.87, 'model_version': 'v23'}
    """

    def __init__(
        self,
        session: Session,
        endpoint_name: str,
        inference_id: str,
        output_location: str,
        failure_location: str,
    ) -> None:
        self._session = session
        self.endpoint_name = endpoint_name
        self.inference_id = inference_id
        self.output_location = output_location
        self.failure_location = failure_location
        # shipyard://team/project/path: the project whose API follows the request
        team, project = output_location.removeprefix("shipyard://").split("/")[:2]
        self._base = (
            f"/api/v1/projects/{quote(team)}/{quote(project)}/endpoints/"
            f"{quote(endpoint_name, safe='')}/async-invocations/{quote(inference_id, safe='')}"
        )

    def __repr__(self) -> str:
        return f"<AsyncPrediction {self.endpoint_name} {self.inference_id}>"

    def status(self) -> dict[str, Any]:
        """The request as the API describes it (``status``: Queued, Running, Completed,
        Failed; ``error``; ``attempts``)."""
        data: dict[str, Any] = self._session.request("GET", self._base)
        return data

    def result(self, *, timeout: float = 300.0) -> Any:
        """Wait until the request is done; its answer (parsed JSON for a JSON answer, else
        bytes). Raises ``AsyncInferenceFailed`` if it failed, ``TimeoutError`` after
        ``timeout``."""
        deadline = time.monotonic() + timeout
        while (state := self.status())["status"] not in ("Completed", "Failed"):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"async invocation {self.inference_id} is still {state['status']} "
                    f"after {timeout}s"
                )
            time.sleep(POLL_S / 2)
        if state["status"] == "Failed":
            raise AsyncInferenceFailed(self.endpoint_name, self.inference_id, state["error"])
        with mapped_transport_errors(self._session.url):
            response = self._session.http.get(f"{self._base}/result")
        check(response)
        return _decoded(response)


def _body(payload: Any) -> dict[str, Any]:
    """httpx's keyword for the payload: bytes and text as they are, anything else as JSON."""
    if isinstance(payload, bytes | str):
        return {"content": payload.encode() if isinstance(payload, str) else payload}
    return {"json": payload}


def _decoded(response: httpx.Response) -> Any:
    if response.headers.get("content-type", "").startswith("application/json"):
        return response.json()
    return response.content


def _raise_gateway_error(response: httpx.Response) -> None:
    """The gateway answers errors as SageMaker Runtime does (``{"__type", "message"}``), or
    as the platform does; either becomes the ``APIError`` its status calls for."""
    body: Any = None
    with contextlib.suppress(ValueError):
        body = response.json()
    if isinstance(body, dict) and "__type" in body:
        code = str(body["__type"])
        status = response.status_code
        message = str(body.get("message") or body.get("Message") or code)
        raise error_class(status, code)(
            status, code, message, request_id=response.headers.get("x-amzn-requestid", "")
        )
    check(response)


class Hosting:
    """Hosting of one project; get it with ``session.hosting("team/project")``.

    Example::

        hosting = shipyard.Session().hosting("ml/churn")
        hosting.create_model("churn-v3", group="churn", version=3)
        hosting.create_config("churn-a", [{"model": "churn-v3", "initial_instance_count": 2}])
        ep = hosting.create_endpoint("churn-dev", "churn-a")      # waits until InService
        print(hosting.predictor("churn-dev").predict({"features": [25, 2, 0.0]}))
    """

    def __init__(self, session: Session, project: str) -> None:
        self._session = session
        self.team, self.project = split_project(project)
        self._base = f"/api/v1/projects/{quote(self.team)}/{quote(self.project)}"

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._session.request(method, self._base + path, **kwargs)

    # --- models and configs ------------------------------------------------------------

    def create_model(
        self,
        name: str,
        *,
        group: str | None = None,
        version: int | None = None,
        artifact_path: str | None = None,
        artifact_version: int | None = None,
        flavor: str | None = None,
        predict: str = "predict",
        environment: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """A deployable model: a registry version (``group`` + ``version``), or — dev only —
        an artifact (``artifact_path``, ``flavor``). ``predict="proba"`` serves a
        classifier's positive-class probability.

        Example::

            hosting.create_model("churn-v3", group="churn", version=3, predict="proba")
        """
        body = {
            "name": name,
            "group": group,
            "version": version,
            "artifact_path": artifact_path,
            "artifact_version": artifact_version,
            "flavor": flavor,
            "predict": predict,
            "environment": dict(environment or {}),
        }
        result: dict[str, Any] = self._request(
            "POST", "/hosted-models", json={k: v for k, v in body.items() if v is not None}
        )
        return result

    def models(self) -> builtins.list[dict[str, Any]]:
        result: builtins.list[dict[str, Any]] = self._request("GET", "/hosted-models")
        return result

    def delete_model(self, name: str) -> None:
        self._request("DELETE", f"/hosted-models/{quote(name)}")

    def create_config(
        self,
        name: str,
        variants: Sequence[Mapping[str, Any]],
        *,
        shadow: Mapping[str, Any] | None = None,
        shadow_percent: float = 100.0,
        data_capture: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """An endpoint config. Each variant: ``model``, and optionally ``name``
        (``AllTraffic``), ``instance_type`` (``cpu.small``), ``initial_instance_count`` (1),
        ``initial_weight`` (1.0), ``serverless`` (``{"max_concurrency", "idle_timeout_s"}``:
        scales to zero when idle). ``data_capture``: ``enabled``, ``sampling_percent``,
        ``capture_input``, ``capture_output``.

        Example::

            hosting.create_config("churn-ab", [
                {"name": "a", "model": "churn-v3", "initial_weight": 9},
                {"name": "b", "model": "churn-v4", "initial_weight": 1},
            ], data_capture={"enabled": True, "sampling_percent": 10})
        """
        body: dict[str, Any] = {
            "name": name,
            "variants": [dict(v) for v in variants],
            "shadow_percent": shadow_percent,
        }
        if shadow is not None:
            body["shadow"] = dict(shadow)
        if data_capture is not None:
            body["data_capture"] = dict(data_capture)
        result: dict[str, Any] = self._request("POST", "/endpoint-configs", json=body)
        return result

    def configs(self) -> builtins.list[dict[str, Any]]:
        result: builtins.list[dict[str, Any]] = self._request("GET", "/endpoint-configs")
        return result

    def config(self, name: str) -> dict[str, Any]:
        """One endpoint config: its variants, shadow and data capture."""
        result: dict[str, Any] = self._request("GET", f"/endpoint-configs/{quote(name)}")
        return result

    def delete_config(self, name: str) -> None:
        self._request("DELETE", f"/endpoint-configs/{quote(name)}")

    # --- endpoints -------------------------------------------------------------------------

    def create_endpoint(
        self,
        name: str,
        config_name: str,
        *,
        environment: str = "dev",
        autoscaling: Mapping[str, Mapping[str, Any]] | None = None,
        wait: bool = True,
        timeout: float = 300.0,
    ) -> Endpoint:
        """Create an endpoint (names are unique on the platform: ``Conflict`` if taken) and,
        with ``wait``, return once it is InService (``DeploymentFailed`` if it fails).

        Example::

            ep = hosting.create_endpoint("churn-dev", "churn-a", autoscaling={
                "AllTraffic": {"min_instance_count": 1, "max_instance_count": 4,
                               "target_invocations_per_instance_per_minute": 600}})
        """
        body = {
            "name": name,
            "config_name": config_name,
            "environment": environment,
            "autoscaling": {k: dict(v) for k, v in (autoscaling or {}).items()},
        }
        endpoint = Endpoint(self, self._request("POST", "/endpoints", json=body))
        return endpoint.wait(timeout=timeout) if wait else endpoint

    def endpoints(self) -> builtins.list[dict[str, Any]]:
        """The project's endpoints (name, environment, status, configs)."""
        result: builtins.list[dict[str, Any]] = self._request("GET", "/endpoints")
        return result

    def async_invocations(
        self, endpoint_name: str, *, status: str | None = None, limit: int = 100
    ) -> builtins.list[dict[str, Any]]:
        """The endpoint's asynchronous requests, newest first (optionally of one status)."""
        params: dict[str, Any] = {"limit": limit, **({"status": status} if status else {})}
        path = f"/endpoints/{quote(endpoint_name)}/async-invocations"
        result: builtins.list[dict[str, Any]] = self._request("GET", path, params=params)
        return result

    def _endpoint_data(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", f"/endpoints/{quote(name)}")
        return result

    def endpoint(self, name: str) -> Endpoint:
        return Endpoint(self, self._endpoint_data(name))

    def update_endpoint(
        self,
        name: str,
        *,
        config_name: str | None = None,
        deployment: Mapping[str, Any] | None = None,
        autoscaling: Mapping[str, Mapping[str, Any] | None] | None = None,
        instance_counts: Mapping[str, int] | None = None,
        wait: bool = True,
        timeout: float = 600.0,
    ) -> Endpoint:
        """Deploy ``config_name`` with a ``deployment`` policy (``strategy``: ``blue_green``
        (default), ``canary``, ``linear``, ``all_at_once``; ``bake_s``, ``max_error_rate``,
        ``canary_percent``, ``linear_step_percent``, ``linear_interval_s``), or change
        scaling. With ``wait`` and a new config, returns when it serves, or raises
        ``DeploymentFailed`` when the update rolled back (``reason`` says why).

        Example::

            hosting.update_endpoint("churn-dev", config_name="churn-b",
                                    deployment={"strategy": "canary", "canary_percent": 10,
                                                "bake_s": 120, "max_error_rate": 0.01})
        """
        body: dict[str, Any] = {}
        if config_name is not None:
            body["config_name"] = config_name
        if deployment is not None:
            body["deployment"] = dict(deployment)
        if autoscaling is not None:
            body["autoscaling"] = {k: (dict(v) if v else None) for k, v in autoscaling.items()}
        if instance_counts is not None:
            body["instance_counts"] = dict(instance_counts)
        endpoint = Endpoint(self, self._request("PATCH", f"/endpoints/{quote(name)}", json=body))
        if wait and config_name is not None:
            return endpoint.wait(timeout=timeout)
        return endpoint

    def scale(
        self,
        name: str,
        variant: str = "AllTraffic",
        *,
        count: int | None = None,
        policy: Mapping[str, Any] | None = None,
    ) -> Endpoint:
        """Set a variant's instance count now, and/or its autoscaling policy
        (``min_instance_count``, ``max_instance_count``,
        ``target_invocations_per_instance_per_minute``, ``target_cpu_percent``,
        ``scale_out_cooldown_s``, ``scale_in_cooldown_s``).

        Example::

            hosting.scale("churn-dev", count=3)
        """
        return self.update_endpoint(
            name,
            instance_counts={variant: count} if count is not None else None,
            autoscaling={variant: policy} if policy is not None else None,
            wait=False,
        )

    def delete_endpoint(
        self, name: str, *, force: bool = False, wait: bool = True, timeout: float = 120.0
    ) -> None:
        """Delete an endpoint (a prod one only with ``force=True``, by a platform admin)."""
        params = {"force": "true"} if force else None
        self._request("DELETE", f"/endpoints/{quote(name)}", params=params)
        deadline = time.monotonic() + timeout
        while wait:
            try:
                self._endpoint_data(name)
            except ShipyardError as exc:
                if getattr(exc, "status", None) == 404:
                    return
                raise
            if time.monotonic() > deadline:
                raise TimeoutError(f"endpoint {name} still exists after {timeout}s")
            time.sleep(POLL_S)

    def predictor(self, endpoint_name: str) -> Predictor:
        return Predictor(self._session, endpoint_name)

    def predict(self, endpoint_name: str, payload: Any, **options: Any) -> Any:
        """``predictor(endpoint_name).predict(payload, **options)``."""
        return self.predictor(endpoint_name).predict(payload, **options)

    # --- promotions ------------------------------------------------------------------------

    def promote(
        self,
        group: str,
        version: int,
        environment: str,
        *,
        endpoint_name: str | None = None,
        instance_type: str = "cpu.small",
        instance_count: int = 1,
        predict: str = "predict",
        model_version_label: str | None = None,
        data_capture: Mapping[str, Any] | None = None,
        wait: bool = True,
        timeout: float = 900.0,
    ) -> dict[str, Any]:
        """Promote a registry version into ``dev``, ``staging`` or ``prod``: verify its
        bytes, deploy it (endpoint ``<group>-<environment>`` unless named), invoke its
        example, roll back on failure. ``prod`` needs a Succeeded promotion to ``staging``
        first. ``data_capture`` (``{"enabled", "sampling_percent"}``) defaults to what the
        endpoint captures now. With ``wait``, returns the promotion once it ends; raises
        ``DeploymentFailed`` if it Failed (the steps say where).

        Example::

            run = hosting.promote("churn", 23, "staging")
            print([(s["step"], s["status"]) for s in run["steps"]])
        """
        body = {
            "environment": environment,
            "endpoint_name": endpoint_name,
            "instance_type": instance_type,
            "instance_count": instance_count,
            "predict": predict,
            "model_version_label": model_version_label,
            "data_capture": dict(data_capture) if data_capture is not None else None,
        }
        path = f"/models/{quote(group, safe='')}/versions/{int(version)}/promote"
        run: dict[str, Any] = self._request(
            "POST", path, json={k: v for k, v in body.items() if v is not None}
        )
        if not wait:
            return run
        deadline = time.monotonic() + timeout
        while run["status"] == "Running":
            if time.monotonic() > deadline:
                raise TimeoutError(f"promotion {run['id']} still running after {timeout}s")
            time.sleep(POLL_S)
            run = self.promotion(run["id"])
        if run["status"] != "Succeeded":
            raise DeploymentFailed(run["endpoint_name"], "Failed", run["reason"], promotion=run)
        return run

    def promotion(self, promotion_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", f"/promotions/{quote(promotion_id)}")
        return result

    def promotions(
        self, group: str | None = None, version: int | None = None
    ) -> builtins.list[dict[str, Any]]:
        """Promotions, newest first, each with its steps."""
        params = {k: v for k, v in {"group": group, "version": version}.items() if v is not None}
        result: builtins.list[dict[str, Any]] = self._request("GET", "/promotions", params=params)
        return result
