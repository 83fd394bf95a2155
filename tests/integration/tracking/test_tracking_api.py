"""Tracking over real HTTP: runs, batched metrics, history, search, compare, bad input."""

from __future__ import annotations

import math
import uuid

import httpx
import pytest
from tests.conftest import Tenant, unique
from tests.support.servers import RunningServer


def _base(tenant: Tenant) -> str:
    return f"/api/v1/projects/{tenant.team}/{tenant.project}"


def _run(c: httpx.Client, tenant: Tenant, experiment: str, **body: object) -> dict[str, object]:
    r = c.post(f"{_base(tenant)}/runs", json={"experiment": experiment, **body})
    assert r.status_code == 201, r.text
    return dict(r.json())


def _log(c: httpx.Client, tenant: Tenant, run_id: object, **batch: object) -> httpx.Response:
    return c.post(f"{_base(tenant)}/runs/{run_id}/log", json=batch)


def test_a_run_records_params_tags_metrics_source_and_parent(
    server: RunningServer, tenant: Tenant
) -> None:
    exp = unique("exp-")
    with server.client(tenant.keys["scientist"]) as c:
        parent = _run(c, tenant, exp, name="sweep")
        child = _run(
            c,
            tenant,
            exp,
            parent_run_id=parent["id"],
            params={"lr": "0.1"},
            tags={"team": "growth"},
            source={"name": "train.py", "git_commit": "abc123", "git_dirty": True},
        )
        points = [{"key": "loss", "value": 1.0 / (i + 1), "step": i} for i in range(50)]
        assert (
            _log(c, tenant, child["id"], metrics=points, params={"depth": "3"}).status_code == 204
        )
        r = c.patch(f"{_base(tenant)}/runs/{child['id']}", json={"status": "FINISHED"})
        assert r.status_code == 200
        got = c.get(f"{_base(tenant)}/runs/{child['id']}").json()
    assert got["status"] == "FINISHED" and got["end_time"] >= got["start_time"]
    assert got["params"] == {"lr": "0.1", "depth": "3"}
    assert got["tags"] == {"team": "growth"}
    assert got["metrics"]["loss"]["step"] == 49
    assert got["metrics"]["loss"]["value"] == pytest.approx(1 / 50)
    assert got["parent_run_id"] == parent["id"]
    assert got["source"] == {"name": "train.py", "git_commit": "abc123", "git_dirty": True}
    assert got["user"] == tenant.users["scientist"]
    assert got["experiment"] == exp


def test_latest_value_follows_step_not_arrival_order(server: RunningServer, tenant: Tenant) -> None:
    with server.client(tenant.keys["scientist"]) as c:
        run = _run(c, tenant, unique("exp-"))
        _log(c, tenant, run["id"], metrics=[{"key": "acc", "value": 0.9, "step": 10}])
        _log(c, tenant, run["id"], metrics=[{"key": "acc", "value": 0.1, "step": 3}])
        got = c.get(f"{_base(tenant)}/runs/{run['id']}").json()
        history = c.get(f"{_base(tenant)}/runs/{run['id']}/metrics/acc/history").json()
    assert got["metrics"]["acc"]["value"] == 0.9
    assert history["steps"] == [3, 10] and history["values"] == [0.1, 0.9]
    assert history["total_points"] == 2


def test_history_pages_and_downsampling_keep_every_point_accounted(
    server: RunningServer, tenant: Tenant
) -> None:
    with server.client(tenant.keys["scientist"]) as c:
        run = _run(c, tenant, unique("exp-"))
        points = [{"key": "x", "value": float(i % 100), "step": i} for i in range(10_000)]
        assert _log(c, tenant, run["id"], metrics=points).status_code == 204
        url = f"{_base(tenant)}/runs/{run['id']}/metrics/x/history"
        steps: list[int] = []
        token = None
        while True:
            params = {"page_size": 3000, **({"page_token": token} if token else {})}
            page = c.get(url, params=params).json()
            steps += page["steps"]
            token = page["next_page_token"]
            if not token:
                break
        small = c.get(url, params={"max_points": 100}).json()
    assert steps == list(range(10_000))
    assert small["downsampled"] is True and len(small["steps"]) == 100
    assert sum(small["counts"]) == 10_000
    assert max(small["max"]) == 99.0 and min(small["min"]) == 0.0
    assert small["steps"][0] == 0 and small["steps"] == sorted(small["steps"])


def test_nan_and_infinity_round_trip(server: RunningServer, tenant: Tenant) -> None:
    with server.client(tenant.keys["scientist"]) as c:
        run = _run(c, tenant, unique("exp-"))
        body = (
            '{"metrics": [{"key": "m", "value": NaN, "step": 0},'
            ' {"key": "m", "value": "Infinity", "step": 1},'
            ' {"key": "m", "value": -Infinity, "step": 2}, {"key": "m", "value": 1.5, "step": 3}]}'
        )
        r = c.post(
            f"{_base(tenant)}/runs/{run['id']}/log",
            content=body,
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 204, r.text
        history = c.get(f"{_base(tenant)}/runs/{run['id']}/metrics/m/history").json()
        _log(c, tenant, run["id"], metrics=[{"key": "n", "value": "NaN", "step": 0}])
        latest = c.get(f"{_base(tenant)}/runs/{run['id']}").json()["metrics"]["n"]
    assert history["values"] == ["NaN", "Infinity", "-Infinity", 1.5]
    assert latest["value"] == "NaN"
    assert math.isnan(float(latest["value"]))


def test_bad_input_gets_clear_errors_and_loses_nothing(
    server: RunningServer, tenant: Tenant
) -> None:
    base = _base(tenant)
    with server.client(tenant.keys["scientist"]) as c:
        run = _run(c, tenant, unique("exp-"), params={"lr": "0.1"})
        missing = c.get(f"{base}/runs/{uuid.uuid4().hex}")
        too_many = _log(c, tenant, run["id"], metrics=[{"key": "k", "value": 1}] * 10_001)
        changed = _log(c, tenant, run["id"], params={"lr": "0.2"})
        half = _log(c, tenant, run["id"], metrics=[{"key": "k", "value": 1}], params={"lr": "9"})
        c.patch(f"{base}/runs/{run['id']}", json={"status": "KILLED"})
        finished = _log(c, tenant, run["id"], metrics=[{"key": "k", "value": 2}])
        bad_filter = c.post(f"{base}/runs/search", json={"filter": "metrics.auc > AND"})
        got = c.get(f"{base}/runs/{run['id']}").json()
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "run_id"
    assert too_many.status_code == 413 and "10000" in too_many.json()["error"]["message"]
    assert changed.status_code == 409 and changed.json()["error"]["field"] == "params.lr"
    assert half.status_code == 409
    assert finished.status_code == 409 and "KILLED" in finished.json()["error"]["message"]
    assert bad_filter.status_code == 400
    assert bad_filter.json()["error"]["details"]["position"] == 14
    assert got["params"] == {"lr": "0.1"} and got["metrics"] == {}  # the refused batch left nothing


def test_search_filters_orders_and_pages(server: RunningServer, tenant: Tenant) -> None:
    exp = unique("exp-")
    base = _base(tenant)
    with server.client(tenant.keys["scientist"]) as c:
        ids = []
        for i in range(12):
            run = _run(c, tenant, exp, name=f"r{i}", params={"model": "rf" if i % 2 else "lr"})
            _log(c, tenant, run["id"], metrics=[{"key": "auc", "value": i / 10, "step": 0}])
            ids.append(run["id"])
        query = {
            "experiments": [exp],
            "filter": "metrics.auc >= 0.4 AND params.model = 'rf'",
            "order_by": ["metrics.auc DESC"],
            "max_results": 2,
        }
        names, token = [], None
        while True:
            page = c.post(f"{base}/runs/search", json={**query, "page_token": token}).json()
            names += [r["name"] for r in page["runs"]]
            token = page["next_page_token"]
            if not token:
                break
        like = c.post(
            f"{base}/runs/search",
            json={"experiments": [exp], "filter": "attributes.run_name LIKE 'r1%'"},
        ).json()
        via_get = c.get(
            f"{base}/runs", params={"experiment": exp, "filter": "params.model IN ('lr')"}
        ).json()
        compare = c.get(f"{base}/runs/compare", params={"run_id": ids[:3]}).json()
    assert names == ["r11", "r9", "r7", "r5"]
    assert sorted(r["name"] for r in like["runs"]) == ["r1", "r10", "r11"]
    assert len(via_get["runs"]) == 6
    assert compare["params"]["model"] == ["lr", "rf", "lr"]
    assert compare["metrics"]["auc"] == [0.0, 0.1, 0.2]


def test_viewers_read_but_cannot_write_and_other_teams_see_nothing(
    server: RunningServer, tenant: Tenant
) -> None:
    other = unique("exp-")
    with server.client(tenant.keys["scientist"]) as c:
        run = _run(c, tenant, other)
    with server.client(tenant.keys["viewer"]) as v:
        assert v.get(f"{_base(tenant)}/runs/{run['id']}").status_code == 200
        assert _log(v, tenant, run["id"], metrics=[{"key": "a", "value": 1}]).status_code == 403
    from tests.conftest import make_tenant

    stranger = make_tenant(server, roles=("lead",))
    with server.client(stranger.keys["lead"]) as s:
        assert s.get(f"{_base(tenant)}/runs/{run['id']}").status_code == 404
        assert s.get(f"{_base(stranger)}/runs/{run['id']}").status_code == 404


def test_one_point_per_call_history_reads_whole_and_in_order(
    server: RunningServer, tenant: Tenant
) -> None:
    """Single-point logging leaves small history blocks that get merged; nothing is lost."""
    with server.client(tenant.keys["scientist"]) as c:
        run = _run(c, tenant, unique("exp-"))
        for step in reversed(range(100)):
            r = _log(
                c, tenant, run["id"], metrics=[{"key": "lr", "value": step / 10, "step": step}]
            )
            assert r.status_code == 204
        whole = c.get(f"{_base(tenant)}/runs/{run['id']}/metrics/lr/history").json()
        paged = c.get(
            f"{_base(tenant)}/runs/{run['id']}/metrics/lr/history", params={"page_size": 60}
        ).json()
    assert whole["steps"] == list(range(100))
    assert whole["values"] == [s / 10 for s in range(100)]
    assert paged["steps"] == list(range(60)) and paged["next_page_token"]


def test_a_logged_batch_and_its_audit_entry_commit_together_once(
    server: RunningServer, tenant: Tenant
) -> None:
    with server.client(tenant.keys["scientist"]) as c:
        run = _run(c, tenant, unique("exp-"))
        ok = _log(c, tenant, run["id"], metrics=[{"key": "a", "value": 1.0}])
        refused = _log(c, tenant, run["id"], params={"p": "x" * 7000})
    with server.client(tenant.keys["lead"]) as lead:
        entries = lead.get("/api/v1/audit", params={"n": 200}).json()
    by_request = {}
    for entry in entries:
        by_request.setdefault(entry["request_id"], []).append(entry)
    mine = by_request[ok.headers["x-request-id"]]
    assert [(e["status_code"], e["outcome"]) for e in mine] == [(204, "ok")]
    assert mine[0]["actor"].startswith(tenant.users["scientist"])
    assert run["id"] in mine[0]["resource"]
    bad = by_request[refused.headers["x-request-id"]]
    assert [e["status_code"] for e in bad] == [422]
    with server.client(server.admin_key) as admin:
        assert admin.get("/api/v1/audit/verify").json()["ok"] is True
