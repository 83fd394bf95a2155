"""Verification of AWS Signature Version 4 (``AWS4-HMAC-SHA256``) on incoming requests.

Why this exists: the gateway accepts ``boto3.client("sagemaker-runtime", endpoint_url=...)``
unchanged, with a Shipyard API key id and secret as the AWS key pair, so it has to check the
``Authorization`` header exactly as AWS would. botocore is the reference: whatever botocore
signs must verify here, byte for byte, and nothing else may.

Usage, on the gateway's hot path::

    credential = parse_authorization(headers["authorization"])
    secret = secrets_by_key_id[credential.access_key_id]       # the caller's lookup
    verify(method=..., raw_path=..., query_string=..., headers=headers, body=body,
           secret=secret, credential=credential)               # raises SigV4Error

``verify`` does not judge the scope's region or service: check ``credential.service`` (and
region, if it matters) before calling it. The canonical URI depends on the service, as in
botocore: for ``s3`` it is the path as sent; for every other service the path is
normalised (dot segments and empty segments removed) and percent-encoded once more, so
``/endpoints/a%20b/invocations`` is signed as ``/endpoints/a%2520b/invocations``.

Error codes are the ones AWS JSON-protocol services (SageMaker Runtime among them) send in
``x-amzn-ErrorType``, so a boto3 caller sees what real SageMaker would have said:

    IncompleteSignatureException  the Authorization header or the required signed headers
                                  are malformed or missing
    InvalidSignatureException     the signature does not match, the signature has expired
                                  or is not yet current, the scope date is not the request's
    XAmzContentSHA256Mismatch     x-amz-content-sha256 is not the SHA-256 of the body
    InvalidArgument               x-amz-content-sha256 is neither a digest nor UNSIGNED-PAYLOAD

Messages never contain the secret, the expected signature or parts of the header that could
be a mis-pasted secret; they quote AWS's wording where AWS has one.

Not supported: presigned URLs (``X-Amz-Signature`` in the query), chunked ``STREAMING-*``
payloads, SigV4a. Repeated headers must be joined with ``","`` by the caller (as botocore
does when signing), because ``headers`` is a plain mapping.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache
from urllib.parse import quote, unquote_to_bytes

__all__ = [
    "ALGORITHM",
    "UNSIGNED_PAYLOAD",
    "SigV4Credential",
    "SigV4Error",
    "parse_authorization",
    "verify",
]

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_TERMINATOR = "aws4_request"
_AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"

INCOMPLETE = "IncompleteSignatureException"
INVALID = "InvalidSignatureException"
PAYLOAD_MISMATCH = "XAmzContentSHA256Mismatch"
INVALID_ARGUMENT = "InvalidArgument"

_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)
_HEX = frozenset("0123456789abcdefABCDEF")


class SigV4Error(Exception):
    """A request whose signature cannot be accepted; ``code`` is AWS's error code for it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class SigV4Credential:
    """What the ``Authorization`` header claims: who signed, for which scope, over what."""

    access_key_id: str
    date: str  # yyyyMMdd, the scope's day
    region: str
    service: str
    signed_headers: tuple[str, ...]  # lower-case names, in the order the client signed them
    signature: str  # hex, as sent


def parse_authorization(header: str) -> SigV4Credential:
    """Split ``AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...``.

    Cheap and allocation-light; it checks shape only. Whether the signature is right is
    ``verify``'s business.
    """
    algorithm, _, params_text = header.strip().partition(" ")
    if algorithm != ALGORITHM:
        # Not echoed: a client that sends a bare token here would see it in our logs.
        raise SigV4Error(INCOMPLETE, f"Unsupported authorization algorithm: expected {ALGORITHM}.")
    params = _auth_params(params_text)
    missing = [n for n in ("Credential", "Signature", "SignedHeaders") if n not in params]
    if missing:
        raise SigV4Error(
            INCOMPLETE, " ".join(f"Authorization header requires '{n}' parameter." for n in missing)
        )
    key_id, date, region, service = _credential_scope(params["Credential"])
    return SigV4Credential(
        key_id, date, region, service, _signed_headers(params["SignedHeaders"]), params["Signature"]
    )


def _auth_params(text: str) -> dict[str, str]:
    """The comma-separated ``Name=value`` pairs after the algorithm; blanks are tolerated."""
    params: dict[str, str] = {}
    for position, part in enumerate(text.split(","), start=1):
        name, equals, value = part.strip().partition("=")
        if not name and not equals:
            continue
        if not equals:
            raise SigV4Error(
                INCOMPLETE,
                f"Parameter {position} of the Authorization header is not a valid key=value "
                "pair (missing equal-sign).",
            )
        if name in params:
            raise SigV4Error(INCOMPLETE, f"Authorization header repeats the '{name}' parameter.")
        params[name] = value
    return params


@lru_cache(maxsize=1024)
def _signed_headers(text: str) -> tuple[str, ...]:
    """Cached: one client sends the same list on every call."""
    return tuple(text.split(";"))


@lru_cache(maxsize=1024)
def _credential_scope(credential: str) -> tuple[str, str, str, str]:
    """``keyid/yyyyMMdd/region/service/aws4_request`` -> (key id, date, region, service).

    Cached: a key's scope changes once a day. Failures raise, so they are not cached.
    """
    parts = credential.split("/")
    if len(parts) != 5:
        raise SigV4Error(
            INCOMPLETE,
            "Credential must have exactly 5 slash-delimited elements, "
            f"e.g. keyid/date/region/service/term, got {len(parts)}.",
        )
    key_id, date, region, service, terminator = parts
    if terminator != _TERMINATOR:
        raise SigV4Error(
            INCOMPLETE, f"Credential should be scoped with a valid terminator: '{_TERMINATOR}'."
        )
    if not (len(date) == 8 and date.isascii() and date.isdigit()):
        raise SigV4Error(INCOMPLETE, "Credential date must be in the format yyyyMMdd.")
    if not (key_id and region and service):
        raise SigV4Error(INCOMPLETE, "Credential has an empty key id, region or service.")
    return key_id, date, region, service


def verify(
    *,
    method: str,
    raw_path: bytes,
    query_string: bytes,
    headers: Mapping[str, str],
    body: bytes,
    secret: str,
    credential: SigV4Credential,
    now: datetime | None = None,
    max_skew_s: int = 300,
) -> None:
    """Accept the request or raise ``SigV4Error`` saying precisely why not.

    ``raw_path`` and ``query_string`` are the bytes on the wire (ASGI ``raw_path``, without
    the query, and ``query_string``); ``headers`` has lower-case names. ``now`` (default:
    the clock; naive means UTC) must be within ``max_skew_s`` of the signed time.
    """
    if "host" not in credential.signed_headers:
        raise SigV4Error(
            INCOMPLETE, "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
        )
    amz_date = _request_time(headers, credential.signed_headers)
    _check_time(amz_date, credential.date, now, max_skew_s)
    canonical = _canonical_request(method, raw_path, query_string, headers, credential, body)
    scope = f"{credential.date}/{credential.region}/{credential.service}/{_TERMINATOR}"
    string_to_sign = f"{ALGORITHM}\n{amz_date}\n{scope}\n{hashlib.sha256(canonical).hexdigest()}"
    signer = _signer(secret, credential.date, credential.region, credential.service)
    expected = signer.hexdigest(string_to_sign.encode())
    provided = credential.signature
    # compare_digest refuses non-ASCII str; such a signature cannot match anyway.
    if not (provided.isascii() and hmac.compare_digest(expected, provided)):
        raise SigV4Error(INVALID, _MISMATCH)


def _request_time(headers: Mapping[str, str], signed: tuple[str, ...]) -> str:
    """The signed request time as ``yyyyMMddTHHmmssZ``: X-Amz-Date, else Date (as botocore)."""
    value = headers.get("x-amz-date")
    name, label = "x-amz-date", "X-Amz-Date"
    if value is None:
        value, name, label = headers.get("date"), "date", "Date"
        if value is None:
            raise SigV4Error(
                INCOMPLETE,
                "Authorization header requires existence of either a 'X-Amz-Date' or a "
                "'Date' header.",
            )
        value = _http_date_as_amz(value)
    if name not in signed:
        raise SigV4Error(
            INCOMPLETE, f"'{label}' must be a 'SignedHeader' in the AWS Authorization."
        )
    return value.strip()


def _http_date_as_amz(value: str) -> str:
    """An RFC 7231 ``Date`` header in the basic ISO-8601 form the string to sign uses."""
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        raise SigV4Error(INCOMPLETE, "The Date header is not a valid HTTP date.") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).strftime(_AMZ_DATE_FORMAT)


def _check_time(amz_date: str, scope_date: str, now: datetime | None, max_skew_s: int) -> None:
    """Reject a malformed, mis-scoped, stale or future request time (AWS's wording)."""
    signed_at = _amz_epoch(amz_date)
    if amz_date[:8] != scope_date:
        raise SigV4Error(
            INVALID,
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{scope_date}' != '{amz_date[:8]}', from '{amz_date}'.",
        )
    now_s = time.time() if now is None else _utc(now).timestamp()
    if signed_at < now_s - max_skew_s:
        raise SigV4Error(
            INVALID,
            f"Signature expired: {amz_date} is now earlier than {_amz(now_s - max_skew_s)} "
            f"({_amz(now_s)} - {_span(max_skew_s)})",
        )
    if signed_at > now_s + max_skew_s:
        raise SigV4Error(
            INVALID,
            f"Signature not yet current: {amz_date} is still later than "
            f"{_amz(now_s + max_skew_s)} ({_amz(now_s)} + {_span(max_skew_s)})",
        )


@lru_cache(maxsize=256)
def _amz_epoch(amz_date: str) -> float:
    """Seconds since the epoch of ``yyyyMMddTHHmmssZ``.

    Cached: under load many requests are signed in the same second.
    """
    digits = amz_date[:8] + amz_date[9:15]
    well_formed = (
        len(amz_date) == 16 and amz_date[8] == "T" and amz_date[15] == "Z" and digits.isascii()
    )
    try:
        if not (well_formed and digits.isdigit()):
            raise ValueError(amz_date)
        return datetime(
            int(digits[0:4]),
            int(digits[4:6]),
            int(digits[6:8]),
            int(digits[8:10]),
            int(digits[10:12]),
            int(digits[12:14]),
            tzinfo=UTC,
        ).timestamp()
    except ValueError:
        raise SigV4Error(
            INCOMPLETE, "X-Amz-Date must be in the ISO-8601 basic format yyyyMMdd'T'HHmmss'Z'."
        ) from None


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _amz(epoch_s: float) -> str:
    return time.strftime(_AMZ_DATE_FORMAT, time.gmtime(epoch_s))


def _span(seconds: int) -> str:
    return f"{seconds // 60} min." if seconds % 60 == 0 else f"{seconds} s."


def _canonical_request(
    method: str,
    raw_path: bytes,
    query_string: bytes,
    headers: Mapping[str, str],
    credential: SigV4Credential,
    body: bytes,
) -> bytes:
    """The six lines of the canonical request, UTF-8 encoded as botocore hashes them."""
    signed = credential.signed_headers
    text = "\n".join(
        (
            method.upper(),
            _canonical_uri(raw_path, credential.service == "s3"),
            _canonical_query(query_string),
            _canonical_headers(headers, signed),
            ";".join(signed),
            _payload_hash(headers, body),
        )
    )
    # surrogateescape: an S3 path that is not UTF-8 goes back to its own bytes.
    return text.encode("utf-8", "surrogateescape")


@lru_cache(maxsize=4096)
def _canonical_uri(raw_path: bytes, is_s3: bool) -> str:
    """Cached: a gateway sees the same few endpoint paths over and over."""
    if is_s3:  # S3 signs the path exactly as sent
        return raw_path.decode("utf-8", "surrogateescape")
    # Everything else: normalise, then encode again (already-encoded '%' becomes '%25').
    return quote(_remove_dot_segments(raw_path), safe="/~")


def _remove_dot_segments(path: bytes) -> bytes:
    """RFC 3986 §5.2.4 plus collapsed ``//``, as botocore's ``remove_dot_segments``."""
    if not path:
        return b"/"
    kept: list[bytes] = []
    for segment in path.split(b"/"):
        if segment == b"..":
            if kept:
                kept.pop()
        elif segment and segment != b".":
            kept.append(segment)
    first = b"/" if path.startswith(b"/") else b""
    last = b"/" if path.endswith(b"/") and kept else b""
    return first + b"/".join(kept) + last


def _canonical_query(query_string: bytes) -> str:
    """Pairs decoded and re-encoded (RFC 3986, ``%20`` for space), sorted by name then value.

    Already-canonical input (what botocore sends) comes out unchanged; ``+`` is read as a
    space because form encoders (``urlencode``, botocore's ``params=``) put it there.
    """
    if not query_string:
        return ""
    pairs = []
    for item in query_string.split(b"&"):
        name, _, value = item.partition(b"=")
        pairs.append((_query_component(name), _query_component(value)))
    pairs.sort()
    return "&".join(f"{name}={value}" for name, value in pairs)


def _query_component(raw: bytes) -> str:
    return quote(unquote_to_bytes(raw.replace(b"+", b" ")), safe="-_.~")


def _canonical_headers(headers: Mapping[str, str], signed: tuple[str, ...]) -> str:
    """``name:trimmed value\\n`` per signed header; inner runs of whitespace become one space."""
    lines = []
    for name in signed:
        value = headers.get(name)
        if value is None:
            raise SigV4Error(INVALID, f"The signed header '{name[:64]}' is not in the request.")
        lines.append(f"{name}:{' '.join(value.split())}\n")
    return "".join(lines)


def _payload_hash(headers: Mapping[str, str], body: bytes) -> str:
    """The payload line: the declared x-amz-content-sha256 once checked, else the body's hash.

    A declared digest is checked against the body: trusting it unchecked would let anyone
    replay a captured signature with a different body.
    """
    declared = headers.get("x-amz-content-sha256")
    if declared == UNSIGNED_PAYLOAD:
        return declared
    actual = hashlib.sha256(body).hexdigest()
    if declared is None or declared == actual:
        return actual
    if len(declared) == 64 and _HEX.issuperset(declared):
        raise SigV4Error(
            PAYLOAD_MISMATCH,
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        )
    raise SigV4Error(
        INVALID_ARGUMENT,
        "x-amz-content-sha256 must be UNSIGNED-PAYLOAD or the hex SHA-256 of the body "
        "(streaming payloads are not supported).",
    )


@lru_cache(maxsize=1024)
def _signer(secret: str, date: str, region: str, service: str) -> _HmacSha256:
    """The day's signing key, ready to sign: cached, as it changes once a day per scope.

    The cache holds secrets in memory, as the caller's key table already does.
    """
    return _HmacSha256(_signing_key(secret, date, region, service))


def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """``AWS4``+secret -> date -> region -> service -> ``aws4_request``: four HMACs."""
    key = hmac.digest(f"AWS4{secret}".encode(), date.encode(), "sha256")
    for part in (region, service, _TERMINATOR):
        key = hmac.digest(key, part.encode(), "sha256")
    return key


class _HmacSha256:
    """HMAC-SHA256 (RFC 2104) under a fixed key whose two padded blocks are hashed once.

    ``hmac.digest`` pads and hashes the key again on every call; copying the two prepared
    states instead halves the cost of the one HMAC each verification needs.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        block = key.ljust(64, b"\0")  # a derived key is 32 bytes, shorter than a block
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def hexdigest(self, message: bytes) -> str:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()
