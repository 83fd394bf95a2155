"""Webhook signatures as the server makes them and as receivers check them — with the
standalone function of docs/events.md or with ``shipyard.sdk.verify_signature``, which must
agree; the event-type filter; the retry backoff."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shipyard.events import signing
from shipyard.events.dispatcher import backoff_s
from shipyard.events.service import matches
from shipyard.sdk import verify_signature

DOC = Path(__file__).resolve().parents[3] / "docs" / "events.md"
Verifier = Callable[[str, str, bytes, str], bool]  # (secret, timestamp, body, signature)


def documented_verifier() -> Verifier:
    """The receiver's standalone function from docs/events.md, run exactly as written there."""
    blocks = re.findall(r"^```python\n(.*?)^```", DOC.read_text(), flags=re.S | re.M)
    (code,) = [b for b in blocks if "def verify_shipyard_signature(" in b]
    namespace: dict[str, Any] = {}
    exec(compile(code, str(DOC), "exec"), namespace)
    verify: Verifier = namespace["verify_shipyard_signature"]
    return verify


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"id":"e1","type":"job.completed"}'
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signing.signature("s3cret", 1700000000, body) == f"sha256={expected}"


def test_headers_name_event_delivery_timestamp_and_signature() -> None:
    body = signing.encode_body({"b": 1, "a": "é"})
    assert body == '{"a":"é","b":1}'.encode()  # compact, sorted, UTF-8
    headers = signing.headers(
        event_type="job.failed", delivery_id="d1", timestamp=1700000000, secret="k", body=body
    )
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Shipyard-Event"] == "job.failed"
    assert headers["X-Shipyard-Delivery"] == "d1"
    assert headers["X-Shipyard-Timestamp"] == "1700000000"
    assert headers["X-Shipyard-Signature"] == signing.signature("k", 1700000000, body)


@pytest.mark.parametrize("verify", [documented_verifier(), verify_signature])
def test_a_receiver_accepts_a_real_signature_and_nothing_else(verify: Verifier) -> None:
    body, secret, now = b'{"id":"e1"}', "the-secret", int(time.time())
    good = signing.signature(secret, now, body)
    assert verify(secret, str(now), body, good)
    assert signing.verify(secret, str(now), body, good)
    assert not verify("another-secret", str(now), body, good)
    assert not verify(secret, str(now), body + b" ", good)  # body changed
    assert not verify(secret, str(now + 1), body, good)  # timestamp changed
    old = now - 3600  # a replay of an hour-old delivery, correctly signed
    assert not verify(secret, str(old), body, signing.signature(secret, old, body))
    future = now + 3600  # signed with a clock far ahead, or forged
    assert not verify(secret, str(future), body, signing.signature(secret, future, body))
    full_width = str(now).translate({ord(d): 0xFF10 + int(d) for d in "0123456789"})
    for malformed in ("soon", "", "²", full_width, f"+{now}", f" {now}", "9" * 5000):
        assert not verify(secret, malformed, body, good), malformed
        assert not signing.verify(secret, malformed, body, good), malformed
    assert not verify(secret, str(now), body, good.upper())
    assert not verify(secret, str(now), body, "sha256=é" + good[8:])  # non-ASCII: no TypeError
    assert not signing.verify(secret, str(now), body, "sha256=é" + good[8:])


def test_the_sdk_takes_its_tolerance_and_clock_as_keywords() -> None:
    body, secret, at = b"{}", "k", 1_700_000_000
    good = signing.signature(secret, at, body)
    assert verify_signature(secret, str(at), body, good, now=at + 300)
    assert not verify_signature(secret, str(at), body, good, now=at + 301)
    assert not verify_signature(secret, str(at), body, good, now=at - 301)  # from the future
    assert verify_signature(secret, str(at), body, good, now=at + 3600, tolerance_s=3600)
    assert not verify_signature(secret, str(at), body, good)  # years old by this clock


@given(st.text(min_size=1, max_size=64), st.binary(max_size=2048))
def test_the_documented_receiver_agrees_with_the_server(secret: str, body: bytes) -> None:
    now = int(time.time())
    good = signing.signature(secret, now, body)
    assert documented_verifier()(secret, str(now), body, good)
    assert verify_signature(secret, str(now), body, good)


# Ages well inside or well outside the tolerance: the two functions read the clock a moment
# apart, so an age of exactly 300 s could fall on either side for one and not the other.
_AGES = st.one_of(st.integers(-290, 290), st.integers(310, 10**6), st.integers(-(10**6), -310))


@given(
    secret=st.text(max_size=32),
    body=st.binary(max_size=256),
    stamp=st.one_of(_AGES.map(lambda age: str(int(time.time()) - age)), st.text(max_size=20)),
    forged=st.one_of(st.none(), st.text(max_size=80)),
)
def test_the_documented_receiver_and_the_sdk_give_the_same_answer(
    secret: str, body: bytes, stamp: str, forged: str | None
) -> None:
    """Same arguments, same answer: a signature made right (for any timestamp text) or any
    forged header text, fresh, stale or malformed timestamps alike."""
    made = "sha256=" + hmac.new(secret.encode(), stamp.encode() + b"." + body, "sha256").hexdigest()
    signature = made if forged is None else forged
    documented = documented_verifier()(secret, stamp, body, signature)
    assert documented == verify_signature(secret, stamp, body, signature)


@pytest.mark.parametrize(
    ("patterns", "event_type", "expected"),
    [
        ([], "job.completed", True),
        (["*"], "model.version.approved", True),
        (["job.completed"], "job.completed", True),
        (["job.completed"], "job.failed", False),
        (["model.*"], "model.version.approved", True),
        (["model.*"], "job.completed", False),
        (["model.version.*"], "model.version.blocked", True),
        (["model.version.*"], "model.version", False),
        (["model.version.*"], "model.versions.x", False),
        (["job.*", "model.version.approved"], "model.version.approved", True),
    ],
)
def test_the_event_type_filter(patterns: list[str], event_type: str, expected: bool) -> None:
    assert matches(patterns, event_type) is expected


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    for attempt, full in [(1, 2.0), (2, 4.0), (3, 8.0), (9, 300.0), (40, 300.0)]:
        assert backoff_s(attempt, 2.0, 300.0, rand=0.0) == pytest.approx(full / 2)
        assert backoff_s(attempt, 2.0, 300.0, rand=1.0) == pytest.approx(full)
        assert full / 2 <= backoff_s(attempt, 2.0, 300.0) <= full
