"""The platform starts, serves health and refuses anonymous API calls."""

from tests.support.servers import RunningServer


def test_health_and_anonymous_refusal(server: RunningServer) -> None:
    with server.client() as anon:
        assert anon.get("/healthz").json()["status"] == "ok"
        assert anon.get("/readyz").json()["checks"]["database"] == "ok"
        r = anon.get("/api/v1/teams")
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "unauthenticated"
        assert r.headers["x-request-id"] == r.json()["error"]["request_id"]
