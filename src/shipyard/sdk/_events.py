"""The event log and webhooks of one project, and the check a webhook receiver makes.

Every state change in a project (a job submitted or completed, a model version registered
or approved…) is an **event**, listed oldest first and paged with ``after``. A **webhook**
POSTs the project's events, signed with HMAC-SHA256, to a URL; ``verify_signature`` is what
a receiver written in Python runs on each request before trusting it. docs/events.md has the
same check as a standalone function for receivers without the SDK.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from shipyard.sdk._artifacts import split_project

if TYPE_CHECKING:
    from shipyard.sdk._client import Session

MAX_PAGE = 1000
"""The most events one request returns (the server's limit)."""
_MAX_TIMESTAMP_DIGITS = 15  # Unix seconds have 10 digits until the year 2286


def verify_signature(
    secret: str,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    tolerance_s: int = 300,
    now: float | None = None,
) -> bool:
    """True if a webhook request is Shipyard's, signed with ``secret`` and recent.

    Pass the headers ``X-Shipyard-Timestamp`` and ``X-Shipyard-Signature`` as they came and
    the **raw** request body (before any JSON parsing: re-encoding changes the bytes). The
    signature is ``sha256=`` + hex HMAC-SHA256 of ``f"{timestamp}.{body}"``, compared in
    constant time. A timestamp more than ``tolerance_s`` seconds away from ``now`` (default:
    this machine's clock) is refused either way: an old one is a captured delivery replayed,
    one from the future is forged or from a clock far off. Malformed headers are ``False``,
    never an exception.

    Example (a Flask view)::

        from shipyard.sdk import verify_signature

        @app.post("/shipyard")
        def shipyard_hook():
            if not verify_signature(
                SECRET,
                request.headers.get("X-Shipyard-Timestamp", ""),
                request.get_data(),
                request.headers.get("X-Shipyard-Signature", ""),
            ):
                abort(401)
            event = request.get_json()
            ...
    """
    well_formed = (
        timestamp.isascii()
        and timestamp.isdigit()  # ASCII digits only: "²" is a digit int() refuses
        and len(timestamp) <= _MAX_TIMESTAMP_DIGITS
        and signature.isascii()  # compare_digest refuses non-ASCII text with a TypeError
    )
    if not well_formed:
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance_s:
        return False
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest("sha256=" + mac.hexdigest(), signature)


def _as_list(values: str | Iterable[str] | None) -> builtins.list[str]:
    if values is None:
        return []
    if isinstance(values, str):  # one entry, not its characters
        return [values]
    return [str(v) for v in values]


class Events:
    """The events and webhooks of one project; get it with ``session.events("team/project")``.

    Reading events takes ``event:read`` (anyone in the team); webhooks and their deliveries
    take ``webhook:manage`` (leads and admins), since their URLs may embed tokens.

    Example::

        events = shipyard.Session().events("ml/churn")
        hook = events.create_webhook("https://hooks.example.com/shipyard", event_types=["job.*"])
        save_secret(hook["secret"])             # shown this once
        events.ping(hook["id"])                 # a webhook.ping delivery, now
        for event in events.iterate(type="job.*"):
            print(event["created_at"], event["type"], event["subject"])
    """

    def __init__(self, session: Session, project: str) -> None:
        self._session = session
        self.team, self.project = split_project(project)
        self._base = f"/api/v1/projects/{quote(self.team)}/{quote(self.project)}"

    @property
    def project_ref(self) -> str:
        return f"{self.team}/{self.project}"

    def _hook_url(self, webhook_id: str, action: str = "") -> str:
        url = f"{self._base}/webhooks/{quote(webhook_id, safe='')}"
        return url + (f"/{action}" if action else "")

    # --- the event log -------------------------------------------------------------------

    def list(
        self, *, type: str | None = None, after: str | None = None, limit: int = 100
    ) -> builtins.list[dict[str, Any]]:
        """One page of the project's events, oldest first.

        Each event is ``{"id", "type", "subject", "project", "actor", "created_at",
        "data"}``, the same shape webhooks receive. ``type`` is an exact type
        (``job.completed``) or a prefix wildcard (``model.version.*``, ``*``); ``after`` is
        the id of the last event already seen (an unknown id is ``ValidationFailed`` on
        ``after``); ``limit`` is 1 to 1000. Pages never skip or repeat an event, even while
        new ones are written; ``iterate`` walks them all.

        Example::

            page = events.list(type="job.*", limit=50)
            newer = events.list(type="job.*", after=page[-1]["id"]) if page else []
        """
        params: dict[str, Any] = {"limit": limit}
        if type is not None:
            params["type"] = type
        if after is not None:
            params["after"] = after
        result: builtins.list[dict[str, Any]] = self._session.request(
            "GET", f"{self._base}/events", params=params
        )
        return result

    def iterate(
        self, *, type: str | None = None, after: str | None = None, page_size: int = 100
    ) -> Iterator[dict[str, Any]]:
        """Every event (of ``type``, after ``after``), oldest first, a page at a time.

        The iterator asks for the next page with ``after`` = the last id it yielded and ends
        when the log is exhausted; events written meanwhile are included if they arrive
        before the last page is read. Keep the last id to resume later without repeats.

        Example::

            last = None
            for event in events.iterate(type="model.version.*"):
                handle(event)
                last = event["id"]
            # later: events.iterate(type="model.version.*", after=last)
        """
        if not 1 <= page_size <= MAX_PAGE:
            raise ValueError(f"page_size must be 1 to {MAX_PAGE}, got {page_size}")
        while True:
            page = self.list(type=type, after=after, limit=page_size)
            yield from page
            if len(page) < page_size:
                return
            after = page[-1]["id"]

    # --- webhooks ------------------------------------------------------------------------

    def create_webhook(
        self,
        url: str,
        *,
        event_types: str | Iterable[str] | None = None,
        description: str = "",
    ) -> dict[str, Any]:
        """Subscribe ``url`` to the project's events; the answer holds the signing ``secret``,
        which is never shown again.

        ``event_types`` takes exact types and prefix wildcards (``["job.*",
        "model.version.approved"]``); none means every event. The URL must be http(s) and
        resolve only to public addresses unless a platform admin allow-listed it; otherwise
        ``ValidationFailed`` on ``url`` says why (loopback, link-local, private…).

        Example::

            hook = events.create_webhook(
                "https://hooks.example.com/shipyard",
                event_types=["model.version.*"],
                description="the review bot",
            )
            print(hook["id"], hook["secret"])
        """
        body = {"url": url, "event_types": _as_list(event_types), "description": description}
        result: dict[str, Any] = self._session.request("POST", f"{self._base}/webhooks", json=body)
        return result

    def webhooks(self) -> builtins.list[dict[str, Any]]:
        """The project's webhooks (never their secrets): ``id``, ``url``, ``event_types``,
        ``description``, ``active``, ``created_by``, ``created_at``."""
        result: builtins.list[dict[str, Any]] = self._session.request(
            "GET", f"{self._base}/webhooks"
        )
        return result

    def webhook(self, webhook_id: str) -> dict[str, Any]:
        """One webhook (``NotFound`` if there is none, or it was deleted)."""
        result: dict[str, Any] = self._session.request("GET", self._hook_url(webhook_id))
        return result

    def delete_webhook(self, webhook_id: str) -> None:
        """Stop delivering to a webhook; its pending deliveries end ``Failed`` and its
        history stays on the server.

        Example::

            events.delete_webhook(hook["id"])
        """
        self._session.request("DELETE", self._hook_url(webhook_id))

    def deliveries(self, webhook_id: str, *, limit: int = 100) -> builtins.list[dict[str, Any]]:
        """The webhook's deliveries, newest first, each with every attempt.

        A delivery is ``{"id", "event_id", "event_type", "state", "attempts",
        "next_attempt_at", "last_status_code", "last_error", "created_at", "finished_at",
        "history"}``; ``state`` is ``Pending`` (being retried), ``Delivered`` or ``Failed``,
        and ``history`` lists each attempt's ``number``, ``started_at``, ``duration_ms``,
        ``status_code``, ``error`` and ``next_attempt_at``.

        Example::

            for d in events.deliveries(hook["id"]):
                print(d["event_type"], d["state"], d["attempts"], d["last_error"])
        """
        result: builtins.list[dict[str, Any]] = self._session.request(
            "GET", self._hook_url(webhook_id, "deliveries"), params={"limit": limit}
        )
        return result

    def ping(self, webhook_id: str) -> dict[str, Any]:
        """Send a ``webhook.ping`` event to this webhook alone, whatever its ``event_types``;
        returns ``{"delivery_id", "event_id"}`` at once (the delivery runs in the background,
        follow it with ``deliveries``).

        Example::

            sent = events.ping(hook["id"])
            [d] = [d for d in events.deliveries(hook["id"]) if d["id"] == sent["delivery_id"]]
        """
        result: dict[str, Any] = self._session.request("POST", self._hook_url(webhook_id, "ping"))
        return result


ALLOWLIST_PATH = "/api/v1/admin/webhook-allowlist"


def webhook_allowlist(session: Session) -> builtins.list[str]:
    """``GET /admin/webhook-allowlist`` for ``Session.webhook_allowlist``."""
    result: builtins.list[str] = session.request("GET", ALLOWLIST_PATH)["entries"]
    return result


def set_webhook_allowlist(session: Session, entries: str | Iterable[str]) -> builtins.list[str]:
    """``PUT /admin/webhook-allowlist`` for ``Session.set_webhook_allowlist``."""
    body = {"entries": _as_list(entries)}
    result: builtins.list[str] = session.request("PUT", ALLOWLIST_PATH, json=body)["entries"]
    return result
