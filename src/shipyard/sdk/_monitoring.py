"""Model monitoring of one project: baselines, monitors of endpoints, executions, reports,
ground truth.

A **baseline** profiles a dataset version (``statistics.json``) and suggests rules traffic
must keep (``constraints.json``: types, completeness, ranges, categories, drift thresholds),
which people may edit. A **monitor** (``ModelMonitor``) checks an endpoint's captured traffic
on a cron schedule — drift and data quality against a baseline, or model quality against
uploaded ground truth — and alerts (``monitor.violation`` events, delivered by webhooks) when
one of its rules breaks; an action can start a retraining job whose model registers as a new
pending version.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from shipyard.sdk._artifacts import split_project
from shipyard.sdk._transport import check, mapped_transport_errors

if TYPE_CHECKING:
    from shipyard.sdk._client import Session

DONE = ("Completed", "Failed")
POLL_S = 0.5


class ModelMonitor:
    """One monitor of an endpoint.

    Example::

        monitor = session.monitoring("ml/churn").create_monitor(
            "churn-drift", endpoint="customer-churn-v23", baseline="marketing", cron="0 * * * *"
        )
        execution = monitor.run()  # now, over the last hour of captured traffic
        print(execution["verdict"], execution["summary"]["drifted_features"])
    """

    def __init__(self, monitoring: Monitoring, data: Mapping[str, Any]) -> None:
        self._monitoring = monitoring
        self._data: dict[str, Any] = dict(data)

    def __repr__(self) -> str:
        return f"<ModelMonitor {self.name} on {self.endpoint}>"

    @property
    def name(self) -> str:
        return str(self._data["name"])

    @property
    def endpoint(self) -> str:
        return str(self._data["endpoint"])

    def as_dict(self) -> dict[str, Any]:
        return dict(self._data)

    def run(
        self,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        wait: bool = True,
        timeout: float = 300.0,
    ) -> dict[str, Any]:
        """Run now over the monitor's window ending now (or ``start``/``end``); with ``wait``,
        until the execution is Completed or Failed. The execution as the API describes it."""
        body = {k: v.isoformat() for k, v in (("start", start), ("end", end)) if v is not None}
        execution = self._monitoring._request(
            "POST", f"/schedules/{quote(self.name)}/run", json=body
        )
        return (
            self._monitoring.wait_execution(execution["id"], timeout=timeout) if wait else execution
        )

    def executions(self, *, limit: int = 50) -> builtins.list[dict[str, Any]]:
        """This monitor's executions, newest first."""
        return self._monitoring.executions(self.name, limit=limit)

    def latest_execution(self) -> dict[str, Any] | None:
        found = self.executions(limit=1)
        return found[0] if found else None

    def update(self, **changes: Any) -> ModelMonitor:
        """Change ``cron``, ``window_s``, ``rules``, ``actions`` or ``enabled``."""
        self._data = self._monitoring._request(
            "PATCH", f"/schedules/{quote(self.name)}", json=changes
        )
        return self

    def delete(self) -> None:
        self._monitoring._request("DELETE", f"/schedules/{quote(self.name)}")


class Monitoring:
    """Baselines, monitors and ground truth of ``"team/project"``; get it with
    ``session.monitoring(project)``."""

    def __init__(self, session: Session, project: str) -> None:
        self._session = session
        self.team, self.project = split_project(project)
        self._base = f"/api/v1/projects/{quote(self.team)}/{quote(self.project)}"

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._session.request(method, f"{self._base}/monitoring{path}", **kwargs)

    # --- baselines ------------------------------------------------------------------------

    def create_baseline(
        self,
        name: str,
        *,
        dataset: str | None = None,
        artifact_path: str | None = None,
        exclude: Iterable[str] = (),
    ) -> dict[str, Any]:
        """Profile ``dataset`` (``"marketing:3"``) or an artifact (CSV or Parquet) as a new
        version of baseline ``name``; ``exclude`` the columns the model does not take."""
        body: dict[str, Any] = {"name": name, "exclude": list(exclude)}
        body |= {"dataset": dataset} if dataset else {"artifact_path": artifact_path}
        result: dict[str, Any] = self._request("POST", "/baselines", json=body)
        return result

    def baselines(self) -> builtins.list[dict[str, Any]]:
        result: builtins.list[dict[str, Any]] = self._request("GET", "/baselines")
        return result

    def baseline(self, name: str, version: int | None = None) -> dict[str, Any]:
        params = {"version": version} if version else {}
        result: dict[str, Any] = self._request("GET", f"/baselines/{quote(name)}", params=params)
        return result

    def statistics(self, name: str, version: int) -> dict[str, Any]:
        result: dict[str, Any] = self._request(
            "GET", f"/baselines/{quote(name)}/versions/{version}/statistics"
        )
        return result

    def constraints(self, name: str, version: int) -> dict[str, Any]:
        result: dict[str, Any] = self._request(
            "GET", f"/baselines/{quote(name)}/versions/{version}/constraints"
        )
        return result

    def put_constraints(
        self, name: str, version: int, document: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Replace the constraints (edit what ``constraints()`` returned and send it back)."""
        path = f"/baselines/{quote(name)}/versions/{version}/constraints"
        result: dict[str, Any] = self._request("PUT", path, json=dict(document))
        return result

    # --- monitors -------------------------------------------------------------------------

    def create_monitor(
        self,
        name: str,
        *,
        endpoint: str,
        baseline: str | None = None,
        baseline_version: int | None = None,
        kind: str = "data_quality",
        problem_type: str | None = None,
        cron: str = "0 * * * *",
        window_s: int = 3600,
        rules: Iterable[Mapping[str, Any]] | None = None,
        retrain_job: Mapping[str, Any] | None = None,
        register_group: str | None = None,
        enabled: bool = True,
    ) -> ModelMonitor:
        """A monitor of ``endpoint``. Rules are ``{"metric", "op", "threshold"[, "feature"]}``
        (default: alert on any drifted feature or violation); ``retrain_job`` is a job spec
        (as ``Jobs.submit`` takes it) started when a rule breaks, whose model is registered in
        ``register_group``."""
        body: dict[str, Any] = {
            "name": name,
            "endpoint": endpoint,
            "kind": kind,
            "cron": cron,
            "window_s": window_s,
            "enabled": enabled,
        }
        if baseline is not None:
            body["baseline"] = {"name": baseline, "version": baseline_version}
        if problem_type is not None:
            body["problem_type"] = problem_type
        if rules is not None:
            body["rules"] = [dict(rule) for rule in rules]
        if retrain_job is not None:
            retrain = {"job": dict(retrain_job), "register_group": register_group}
            body["actions"] = {"retrain": retrain}
        return ModelMonitor(self, self._request("POST", "/schedules", json=body))

    def monitor(self, name: str) -> ModelMonitor:
        return ModelMonitor(self, self._request("GET", f"/schedules/{quote(name)}"))

    def monitors(self) -> builtins.list[ModelMonitor]:
        return [ModelMonitor(self, data) for data in self._request("GET", "/schedules")]

    # --- executions -----------------------------------------------------------------------

    def executions(
        self, monitor: str | None = None, *, limit: int = 50
    ) -> builtins.list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit, **({"monitor": monitor} if monitor else {})}
        result: builtins.list[dict[str, Any]] = self._request("GET", "/executions", params=params)
        return result

    def execution(self, execution_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", f"/executions/{quote(execution_id)}")
        return result

    def wait_execution(self, execution_id: str, *, timeout: float = 300.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (execution := self.execution(execution_id))["status"] not in DONE:
            if time.monotonic() > deadline:
                raise TimeoutError(f"execution {execution_id} is still {execution['status']}")
            time.sleep(POLL_S)
        return execution

    def report(self, execution_id: str, *, html: bool = False) -> Any:
        """The execution's JSON report (a dict), or its HTML report (text)."""
        suffix = "report.html" if html else "report"
        path = f"{self._base}/monitoring/executions/{quote(execution_id)}/{suffix}"
        with mapped_transport_errors(self._session.url):
            response = self._session.http.get(path)
        if not html:
            return check(response)
        if response.status_code >= 400:
            check(response)  # raises the APIError its status calls for
        return response.text

    # --- ground truth ---------------------------------------------------------------------

    def upload_ground_truth(
        self, endpoint: str, labels: Mapping[str, Any] | Iterable[tuple[str, Any]]
    ) -> dict[str, Any]:
        """Labels of captured predictions by event id (the answer's ``x-shipyard-event-id``)."""
        pairs = labels.items() if isinstance(labels, Mapping) else labels
        body = {"labels": [{"event_id": event_id, "label": label} for event_id, label in pairs]}
        path = f"{self._base}/endpoints/{quote(endpoint)}/ground-truth"
        result: dict[str, Any] = self._session.request("POST", path, json=body)
        return result
