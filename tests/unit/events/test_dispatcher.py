"""What one attempt sends and how its answer is judged, through httpx's own in-memory
transport: the request goes to the address that was checked, names the host in ``Host`` and
(for https) in the TLS server name, and a redirect is refused rather than followed."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from shipyard.config import Settings
from shipyard.events.dispatcher import WebhookDispatcher
from shipyard.kit.netguard import check_url

PUBLIC = "93.184.215.14"


def dispatcher(tmp_path: Path, handler: httpx.MockTransport) -> WebhookDispatcher:
    settings = Settings(home=tmp_path, webhook_timeout_s=1.0)
    return WebhookDispatcher(db=None, events=None, settings=settings, transport=handler)  # type: ignore[arg-type]


def test_an_https_name_is_reached_at_its_checked_address_with_host_and_sni(
    tmp_path: Path,
) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    resolutions: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        resolutions.append(host)  # a rebinding name would answer 127.0.0.1 next time
        return [PUBLIC] if len(resolutions) == 1 else ["127.0.0.1"]

    checked = check_url("https://hooks.example.test:8443/in?a=1", resolve=resolve)
    result = dispatcher(tmp_path, httpx.MockTransport(answer))._post(
        checked, {"X-Shipyard-Event": "job.completed"}, b"{}"
    )
    assert result.delivered and result.status_code == 204 and result.address == PUBLIC
    (request,) = seen
    assert str(request.url) == f"https://{PUBLIC}:8443/in?a=1"
    assert request.headers["Host"] == "hooks.example.test:8443"
    assert request.extensions["sni_hostname"] == "hooks.example.test"
    assert resolutions == ["hooks.example.test"]  # resolved once, for the check


@pytest.mark.parametrize(
    ("status", "delivered", "final", "error"),
    [
        (200, True, False, ""),
        (202, True, False, ""),
        (301, False, True, "redirect refused (HTTP 301 to https://elsewhere.test/)"),
        (307, False, True, "redirect refused"),
        (404, False, False, "HTTP 404"),
        (500, False, False, "HTTP 500"),
    ],
)
def test_answers_are_judged(
    tmp_path: Path, status: int, delivered: bool, final: bool, error: str
) -> None:
    calls: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(status, headers={"Location": "https://elsewhere.test/"})

    checked = check_url(f"http://{PUBLIC}/hook")
    result = dispatcher(tmp_path, httpx.MockTransport(answer))._post(checked, {}, b"{}")
    assert (result.delivered, result.final, result.status_code) == (delivered, final, status)
    assert error in result.error
    assert len(calls) == 1  # never followed


def test_a_refused_connection_tries_the_next_checked_address(tmp_path: Path) -> None:
    tried: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        tried.append(request.url.host)
        if len(tried) == 1:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200)

    checked = check_url("http://two.example.test/", resolve=lambda h, p: [PUBLIC, "1.1.1.1"])
    result = dispatcher(tmp_path, httpx.MockTransport(answer))._post(checked, {}, b"{}")
    assert result.delivered and tried == [PUBLIC, "1.1.1.1"]
