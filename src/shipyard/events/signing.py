"""How a webhook body is signed, and the headers that carry it (docs/events.md shows a
receiver's side).

The signature is HMAC-SHA256, keyed with the subscription's secret, over
``f"{timestamp}.{body}"``: the exact body bytes, prefixed with the Unix time of the attempt,
so a receiver that checks the timestamp's age also refuses replays of old deliveries.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

SIGNATURE_HEADER = "X-Shipyard-Signature"
TIMESTAMP_HEADER = "X-Shipyard-Timestamp"
EVENT_HEADER = "X-Shipyard-Event"
DELIVERY_HEADER = "X-Shipyard-Delivery"


def encode_body(payload: dict[str, Any]) -> bytes:
    """Compact, key-sorted JSON: every attempt of a delivery sends the same bytes."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The value of ``X-Shipyard-Signature``: ``sha256=<hex>``."""
    message = str(timestamp).encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify(secret: str, timestamp: str, body: bytes, header: str) -> bool:
    """The receiver's check, in constant time (``shipyard.sdk.verify_signature`` adds the
    timestamp's age)."""
    # "²".isdigit() yet int() refuses it, as it does 4300+ digits; compare_digest refuses
    # non-ASCII text: malformed headers are False, never an exception.
    well_formed = timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 15
    if not (well_formed and header.isascii()):
        return False
    return hmac.compare_digest(signature(secret, int(timestamp), body), header)


def headers(
    *, event_type: str, delivery_id: str, timestamp: int, secret: str, body: bytes
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "Shipyard-Webhooks/1",
        EVENT_HEADER: event_type,
        DELIVERY_HEADER: delivery_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, timestamp, body),
    }
