"""Prometheus metrics of monitoring: each monitor's latest completed execution, read from the
database when ``/metrics`` is scraped, so existing Grafana alerting works on drift too.

    shipyard_monitor_feature_drift{project,endpoint,monitor,feature,metric}  psi, ks, js, chi2
    shipyard_monitor_drifted_features{project,endpoint,monitor}
    shipyard_monitor_violations{project,endpoint,monitor}
    shipyard_monitor_alerting{project,endpoint,monitor}                      1 if a rule broke
    shipyard_monitor_model_quality{project,endpoint,monitor,metric}
    shipyard_monitor_last_execution_timestamp_seconds{project,endpoint,monitor}

Reads are cached for a few seconds: several scrapers cost one query.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from datetime import UTC
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shipyard.db.engine import Database
from shipyard.monitoring.repository import monitoring_repository as repo
from shipyard.security.models import Project, Team

BASE = ["project", "endpoint", "monitor"]
Sample = tuple[str, list[str], float]


class MonitoringCollector(Collector):
    def __init__(self, db: Database, *, cache_s: float = 5.0) -> None:
        self._db = db
        self._cache_s = cache_s
        self._lock = threading.Lock()
        self._at = 0.0
        self._samples: list[Sample] = []

    def collect(self) -> Iterable[Metric]:
        families = {
            "shipyard_monitor_feature_drift": GaugeMetricFamily(
                "shipyard_monitor_feature_drift",
                "Drift of a feature in the monitor's latest execution, by statistic.",
                labels=[*BASE, "feature", "metric"],
            ),
            "shipyard_monitor_drifted_features": GaugeMetricFamily(
                "shipyard_monitor_drifted_features",
                "Features that drifted in the latest execution.",
                labels=BASE,
            ),
            "shipyard_monitor_violations": GaugeMetricFamily(
                "shipyard_monitor_violations",
                "Data-quality violations in the latest execution.",
                labels=BASE,
            ),
            "shipyard_monitor_alerting": GaugeMetricFamily(
                "shipyard_monitor_alerting",
                "1 when the latest execution broke an alert rule.",
                labels=BASE,
            ),
            "shipyard_monitor_model_quality": GaugeMetricFamily(
                "shipyard_monitor_model_quality",
                "Model-quality metrics of the latest execution.",
                labels=[*BASE, "metric"],
            ),
            "shipyard_monitor_last_execution_timestamp_seconds": GaugeMetricFamily(
                "shipyard_monitor_last_execution_timestamp_seconds",
                "When the latest execution finished (unix time).",
                labels=BASE,
            ),
        }
        for name, labels, value in self._read():
            families[name].add_metric(labels, value)
        return list(families.values())

    def _read(self) -> list[Sample]:
        with self._lock:
            if time.monotonic() - self._at > self._cache_s:
                self._samples = self._query()
                self._at = time.monotonic()
            return self._samples

    def _query(self) -> list[Sample]:
        samples: list[Sample] = []
        with self._db.read() as s:
            for schedule, execution in repo.latest_completed(s):
                team, project = s.get(Team, schedule.team_id), s.get(Project, schedule.project_id)
                label = f"{team.name}/{project.name}" if team and project else schedule.project_id
                samples += _samples([label, schedule.endpoint_name, schedule.name], execution)
        return samples


def _samples(base: list[str], execution: Any) -> list[Sample]:
    summary = execution.summary or {}
    out: list[Sample] = []
    for feature, metrics in (summary.get("feature_metrics") or {}).items():
        for metric, value in metrics.items():
            out.append(("shipyard_monitor_feature_drift", [*base, feature, metric], float(value)))
    if "drifted_features" in summary:
        drifted = float(len(summary["drifted_features"]))
        out.append(("shipyard_monitor_drifted_features", base, drifted))
        out.append(("shipyard_monitor_violations", base, float(summary.get("violations", 0))))
    for metric, value in (summary.get("metrics") or {}).items():
        out.append(("shipyard_monitor_model_quality", [*base, metric], float(value)))
    out.append(("shipyard_monitor_alerting", base, 1.0 if execution.alerts else 0.0))
    if execution.finished_at is not None:
        at = execution.finished_at
        stamp = (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()
        out.append(("shipyard_monitor_last_execution_timestamp_seconds", base, stamp))
    return out
