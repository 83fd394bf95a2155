"""SigV4 verification against botocore as the signer: what botocore signs verifies, and any
change to what was signed fails with AWS's error code and wording.

Requests are signed at the real current time (botocore's clock is left alone); the time
checks move ``now`` instead.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSPreparedRequest, AWSRequest, AWSResponse
from botocore.credentials import Credentials
from botocore.utils import percent_encode, percent_encode_sequence
from hypothesis import given
from hypothesis import strategies as st

from shipyard.kit.sigv4 import (
    SigV4Credential,
    SigV4Error,
    parse_authorization,
    verify,
)

KEY_ID = "SYKEY0CHURN0INVOKER1"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"
REGION = "eu-west-1"
HOST = "runtime.sagemaker.eu-west-1.amazonaws.com"
MISMATCH = "The request signature we calculated does not match the signature you provided."
INVOKE = "/endpoints/customer-churn-v23/invocations"
JSON_BODY = b'{"features": [25, 2, 0.0, 1, 0, 0, 0, 0, 0, 0]}'


@dataclass(frozen=True)
class Wire:
    """A request as the gateway receives it: raw path and query, lower-case headers."""

    method: str
    raw_path: bytes
    query_string: bytes
    headers: dict[str, str]
    body: bytes

    def with_header(self, name: str, value: str | None) -> Wire:
        headers = {k: v for k, v in self.headers.items() if k != name}
        if value is not None:
            headers[name] = value
        return replace(self, headers=headers)

    def with_authorization(self, pattern: str, repl: str) -> Wire:
        return self.with_header(
            "authorization", re.sub(pattern, repl, self.headers["authorization"])
        )


def _text(value: str | bytes) -> str:
    """Header values as an ASGI server hands them over: bytes read as Latin-1."""
    return value.decode("latin-1") if isinstance(value, bytes) else value


def on_the_wire(request: AWSPreparedRequest) -> Wire:
    """What the server sees of a prepared botocore request, adding the Host the client sends."""
    parts = urlsplit(request.url)
    headers = {name.lower(): _text(value) for name, value in request.headers.items()}
    headers.setdefault("host", parts.netloc)
    body = request.body or b""
    assert isinstance(body, bytes)
    return Wire(request.method, parts.path.encode(), parts.query.encode(), headers, body)


def sign(
    path: str = INVOKE,
    *,
    method: str = "POST",
    body: bytes = JSON_BODY,
    headers: dict[str, str] | None = None,
    params: Any = None,
    query: str = "",
    service: str = "sagemaker",
    scheme: str = "https",
    context: dict[str, Any] | None = None,
    auth: type[SigV4Auth] = SigV4Auth,
) -> Wire:
    url = f"{scheme}://{HOST}{path}" + (f"?{query}" if query else "")
    request = AWSRequest(method=method, url=url, data=body, headers=headers or {}, params=params)
    request.context.update(context or {})
    auth(Credentials(KEY_ID, SECRET), service, REGION).add_auth(request)
    return on_the_wire(request.prepare())


def check(wire: Wire, *, secret: str = SECRET, now: datetime | None = None) -> SigV4Credential:
    credential = parse_authorization(wire.headers["authorization"])
    verify(
        method=wire.method,
        raw_path=wire.raw_path,
        query_string=wire.query_string,
        headers=wire.headers,
        body=wire.body,
        secret=secret,
        credential=credential,
        now=now,
    )
    return credential


def rejected(wire: Wire, code: str, message: str, **kwargs: Any) -> None:
    with pytest.raises(SigV4Error) as caught:
        check(wire, **kwargs)
    assert caught.value.code == code
    assert message in caught.value.message, caught.value.message
    assert SECRET not in str(caught.value)


# --- what botocore signs verifies -----------------------------------------------------------

PATHS = [
    INVOKE,
    "/endpoints/a%20b/invocations",  # signed as a%2520b: non-S3 paths are encoded twice
    "/endpoints/" + percent_encode("modèle-ñ-😀-模型") + "/invocations",
    "/endpoints/arn:aws:sagemaker:eu-west-1:123456789012:endpoint/x/invocations",
    "/endpoints/" + percent_encode("arn:aws:sagemaker:x") + "/invocations",
    "/endpoints/./churn/../customer-churn-v23//invocations",  # normalised before signing
    "/endpoints/100%25-sure~v1/invocations",
]
BODIES = [
    JSON_BODY,
    b"age,tenure,balance\n25,2,0.0\n41,7,1234.5\n",
    bytes(range(256)) * 4,
    b"",
]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("body", BODIES, ids=["json", "csv", "binary", "empty"])
def test_botocore_signed_invocations_verify(path: str, body: bytes) -> None:
    credential = check(sign(path, body=body))
    assert (credential.access_key_id, credential.region, credential.service) == (
        KEY_ID,
        REGION,
        "sagemaker",
    )


def test_sagemaker_headers_are_signed_and_verify() -> None:
    wire = sign(
        headers={
            "Content-Type": "text/csv",
            "Accept": "application/json",
            "X-Amzn-SageMaker-Custom-Attributes": "  trace=abc,   user = 42  ",
            "X-Amzn-SageMaker-Target-Variant": "blue",
        },
        body=BODIES[1],
    )
    credential = check(wire)
    assert {"x-amzn-sagemaker-custom-attributes", "x-amzn-sagemaker-target-variant"} <= set(
        credential.signed_headers
    )


@pytest.mark.parametrize(
    "params",
    [
        {"a": "1"},
        [("b", "2"), ("a", "2"), ("a", "1")],  # repeated names sort by value
        {"space here": "and there", "plus": "1+1", "tilde~": "~", "slash": "a/b", "eq": "x=y"},
        {"unicode": "ñ模型😀", "empty": ""},
    ],
)
def test_query_parameters_verify(params: Any) -> None:
    check(sign(method="GET", body=b"", params=params))


def test_query_in_the_url_as_botocore_serializes_it_verifies() -> None:
    query = percent_encode_sequence([("X-Id", "a b"), ("versions", ""), ("k", "模/型")])
    check(sign(query=query + "&flag"))


def test_unsigned_payload_verifies_and_leaves_the_body_unbound() -> None:
    wire = sign(context={"payload_signing_enabled": False})
    assert wire.headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
    check(wire)
    check(replace(wire, body=b"anything at all"))  # what UNSIGNED-PAYLOAD means


def test_s3_paths_are_signed_as_sent_not_encoded_twice() -> None:
    wire = sign("/bucket/data/a%20b.csv", method="PUT", service="s3", auth=S3SigV4Auth)
    assert wire.headers["x-amz-content-sha256"] != "UNSIGNED-PAYLOAD"
    check(wire)


def test_a_declared_body_digest_must_match_the_body() -> None:
    wire = sign("/bucket/key", method="PUT", service="s3", auth=S3SigV4Auth)
    rejected(
        replace(wire, body=wire.body + b" "),
        "XAmzContentSHA256Mismatch",
        "The provided 'x-amz-content-sha256' header does not match what was computed.",
    )
    rejected(
        wire.with_header("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
        "InvalidArgument",
        "x-amz-content-sha256 must be UNSIGNED-PAYLOAD or the hex SHA-256 of the body",
    )


def test_a_date_header_stands_in_for_x_amz_date() -> None:
    wire = sign(headers={"Date": "Mon, 01 Jan 2001 00:00:00 GMT"})  # botocore rewrites it
    assert "x-amz-date" not in wire.headers
    check(wire)


def test_now_may_be_naive_utc_or_aware_in_any_zone() -> None:
    wire = sign()
    utc_now = datetime.now(UTC)
    check(wire, now=utc_now.replace(tzinfo=None))
    check(wire, now=utc_now.astimezone())


# --- any change to what was signed fails ----------------------------------------------------


@pytest.fixture
def invoke() -> Wire:
    return sign(
        headers={
            "Content-Type": "application/json",
            "X-Amzn-SageMaker-Custom-Attributes": "a=1",
            "X-Amzn-SageMaker-Target-Variant": "blue",
        },
        params={"trace": "on"},
    )


def test_wrong_secret_is_a_mismatch(invoke: Wire) -> None:
    rejected(invoke, "InvalidSignatureException", MISMATCH, secret=SECRET + "x")


def test_a_body_changed_by_one_byte_is_a_mismatch(invoke: Wire) -> None:
    body = bytearray(invoke.body)
    body[3] ^= 0x01
    rejected(replace(invoke, body=bytes(body)), "InvalidSignatureException", MISMATCH)


def test_a_changed_signed_header_is_a_mismatch(invoke: Wire) -> None:
    changed = invoke.with_header("x-amzn-sagemaker-target-variant", "green")
    rejected(changed, "InvalidSignatureException", MISMATCH)


def test_a_signed_header_missing_from_the_request_is_named(invoke: Wire) -> None:
    stripped = invoke.with_header("x-amzn-sagemaker-custom-attributes", None)
    rejected(
        stripped,
        "InvalidSignatureException",
        "The signed header 'x-amzn-sagemaker-custom-attributes' is not in the request.",
    )


def test_a_header_listed_as_signed_but_absent_is_named(invoke: Wire) -> None:
    listed = invoke.with_authorization(r"SignedHeaders=", "SignedHeaders=accept;")
    rejected(
        listed, "InvalidSignatureException", "The signed header 'accept' is not in the request."
    )


def test_a_changed_method_is_a_mismatch(invoke: Wire) -> None:
    rejected(replace(invoke, method="PUT"), "InvalidSignatureException", MISMATCH)


def test_a_changed_path_is_a_mismatch(invoke: Wire) -> None:
    other = invoke.raw_path.replace(b"v23", b"v24")
    rejected(replace(invoke, raw_path=other), "InvalidSignatureException", MISMATCH)


def test_a_singly_encoded_path_is_a_mismatch_outside_s3() -> None:
    wire = sign("/endpoints/a%20b/invocations")
    rejected(
        replace(wire, raw_path=b"/endpoints/a b/invocations"), "InvalidSignatureException", MISMATCH
    )


@pytest.mark.parametrize("query", [b"trace=off", b"", b"trace=on&debug=1"])
def test_a_changed_query_is_a_mismatch(invoke: Wire, query: bytes) -> None:
    rejected(replace(invoke, query_string=query), "InvalidSignatureException", MISMATCH)


def test_a_signature_16_minutes_old_has_expired(invoke: Wire) -> None:
    signed_at = datetime.strptime(invoke.headers["x-amz-date"], "%Y%m%dT%H%M%SZ")
    now = signed_at.replace(tzinfo=UTC) + timedelta(minutes=16)
    rejected(
        invoke,
        "InvalidSignatureException",
        f"Signature expired: {invoke.headers['x-amz-date']} is now earlier than "
        f"{(now - timedelta(minutes=5)):%Y%m%dT%H%M%SZ} ({now:%Y%m%dT%H%M%SZ} - 5 min.)",
        now=now,
    )


def test_a_signature_from_16_minutes_ahead_is_not_yet_current(invoke: Wire) -> None:
    now = datetime.now(UTC) - timedelta(minutes=16)
    rejected(invoke, "InvalidSignatureException", "Signature not yet current:", now=now)


def test_the_scope_date_must_be_the_request_day(invoke: Wire) -> None:
    day = invoke.headers["x-amz-date"][:8]
    moved = invoke.with_authorization(rf"/{day}/", "/20000101/")
    rejected(
        moved,
        "InvalidSignatureException",
        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from "
        f"HTTP: '20000101' != '{day}', from '{invoke.headers['x-amz-date']}'.",
    )


def test_a_malformed_x_amz_date_is_incomplete(invoke: Wire) -> None:
    for bad in (
        "2024-01-01T00:00:00Z",
        "20241301T000000Z",
        "20240101T000000",
        "\uff12\uff10\uff12\uff140101T000000Z",
    ):
        rejected(
            invoke.with_header("x-amz-date", bad),
            "IncompleteSignatureException",
            "X-Amz-Date must be in the ISO-8601 basic format",
        )


def test_a_missing_date_header_is_incomplete(invoke: Wire) -> None:
    rejected(
        invoke.with_header("x-amz-date", None),
        "IncompleteSignatureException",
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
    )


def test_an_unreadable_date_header_is_incomplete() -> None:
    wire = sign(headers={"Date": "Mon, 01 Jan 2001 00:00:00 GMT"})
    rejected(
        wire.with_header("date", "yesterday"),
        "IncompleteSignatureException",
        "The Date header is not a valid HTTP date.",
    )


def test_host_must_be_signed(invoke: Wire) -> None:
    rejected(
        invoke.with_authorization(r"(?<=[=;])host;", ""),
        "IncompleteSignatureException",
        "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
    )


def test_x_amz_date_must_be_signed(invoke: Wire) -> None:
    rejected(
        invoke.with_authorization(r";x-amz-date", ""),
        "IncompleteSignatureException",
        "'X-Amz-Date' must be a 'SignedHeader' in the AWS Authorization.",
    )


# --- malformed Authorization headers --------------------------------------------------------

GOOD = (
    "AWS4-HMAC-SHA256 Credential=SYKEY/20260101/eu-west-1/sagemaker/aws4_request, "
    "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64
)


def test_a_well_formed_header_parses() -> None:
    assert parse_authorization(GOOD) == SigV4Credential(
        "SYKEY", "20260101", "eu-west-1", "sagemaker", ("host", "x-amz-date"), "0" * 64
    )
    compact = GOOD.replace(", ", ",")
    assert parse_authorization(compact) == parse_authorization(GOOD)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (
            re.sub(r"Credential=[^,]*, ", "", GOOD),
            "Authorization header requires 'Credential' parameter.",
        ),
        (
            re.sub(r"SignedHeaders=[^,]*, ", "", GOOD),
            "Authorization header requires 'SignedHeaders' parameter.",
        ),
        (
            re.sub(r", Signature=.*", "", GOOD),
            "Authorization header requires 'Signature' parameter.",
        ),
        (
            "AWS4-HMAC-SHA256",
            "Authorization header requires 'Credential' parameter. Authorization header "
            "requires 'Signature' parameter. Authorization header requires 'SignedHeaders' "
            "parameter.",
        ),
        (
            GOOD.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA512"),
            "Unsupported authorization algorithm: expected AWS4-HMAC-SHA256.",
        ),
        ("Bearer sy_secret_token", "Unsupported authorization algorithm"),
        (
            GOOD.replace("/eu-west-1/sagemaker/aws4_request", "/sagemaker"),
            "Credential must have exactly 5 slash-delimited elements, "
            "e.g. keyid/date/region/service/term, got 3.",
        ),
        (
            GOOD.replace("aws4_request", "aws5_request"),
            "Credential should be scoped with a valid terminator: 'aws4_request'.",
        ),
        (GOOD.replace("20260101", "2026-1-1"), "Credential date must be in the format yyyyMMdd."),
        (GOOD.replace("/eu-west-1/", "//"), "Credential has an empty key id, region or service."),
        (
            GOOD.replace(", Signature=", ", x, Signature="),
            "Parameter 3 of the Authorization header is not a valid key=value pair",
        ),
        (
            GOOD + ", Signature=" + "1" * 64,
            "Authorization header repeats the 'Signature' parameter.",
        ),
    ],
)
def test_malformed_authorization_is_incomplete(header: str, message: str) -> None:
    with pytest.raises(SigV4Error) as caught:
        parse_authorization(header)
    assert caught.value.code == "IncompleteSignatureException"
    assert message in caught.value.message, caught.value.message
    assert "sy_secret_token" not in caught.value.message


# --- boto3's own InvokeEndpoint request -----------------------------------------------------


class _RawBody(io.BytesIO):
    """Enough of urllib3's response for botocore: ``read`` and ``stream``."""

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.read()


def test_boto3_sagemaker_runtime_invoke_endpoint_verifies() -> None:
    client = boto3.client(
        "sagemaker-runtime",
        endpoint_url="http://127.0.0.1:1",
        region_name="us-east-1",
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
    )
    sent: list[AWSPreparedRequest] = []

    def short_circuit(request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        sent.append(request)  # returning a response here means nothing goes on the network
        headers = {"Content-Type": "application/json", "X-Amzn-Invoked-Production-Variant": "blue"}
        return AWSResponse(request.url, 200, headers, _RawBody(b'{"prediction": 0.87}'))

    client.meta.events.register("before-send.sagemaker-runtime.InvokeEndpoint", short_circuit)
    answer = client.invoke_endpoint(
        EndpointName="customer-churn-v23",
        Body=b'{"features":[1]}',
        ContentType="application/json",
        CustomAttributes="a=1",
        TargetVariant="blue",
    )
    assert answer["Body"].read() == b'{"prediction": 0.87}'
    assert answer["InvokedProductionVariant"] == "blue"

    (request,) = sent
    wire = on_the_wire(request)
    assert wire.raw_path == b"/endpoints/customer-churn-v23/invocations"
    credential = check(wire)
    assert (credential.access_key_id, credential.region, credential.service) == (
        KEY_ID,
        "us-east-1",
        "sagemaker",
    )
    assert {"host", "x-amz-date", "content-type", "x-amzn-sagemaker-target-variant"} <= set(
        credential.signed_headers
    )
    rejected(replace(wire, body=b'{"features":[2]}'), "InvalidSignatureException", MISMATCH)


# --- properties -----------------------------------------------------------------------------

segments = st.lists(st.text(max_size=12), min_size=1, max_size=5)
queries = st.lists(st.tuples(st.text(max_size=8), st.text(max_size=8)), max_size=4)
header_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)


@st.composite
def signed_requests(draw: st.DrawFn) -> Wire:
    path = "/" + "/".join(percent_encode(s, safe="") for s in draw(segments))
    return sign(
        path,
        method=draw(st.sampled_from(["GET", "POST", "PUT", "DELETE"])),
        body=draw(st.binary(max_size=256)),
        params=draw(queries),
        headers={"X-Amzn-SageMaker-Custom-Attributes": draw(header_values)},
    )


@given(signed_requests())
def test_any_botocore_signed_request_verifies(wire: Wire) -> None:
    check(wire)


@given(signed_requests(), st.integers(0, 63), st.characters(codec="utf-8"))
def test_flipping_any_signature_character_fails(wire: Wire, index: int, char: str) -> None:
    credential = parse_authorization(wire.headers["authorization"])
    original = credential.signature
    if char == original[index]:
        char = "0" if original[index] != "0" else "1"
    forged = replace(credential, signature=original[:index] + char + original[index + 1 :])
    with pytest.raises(SigV4Error) as caught:
        verify(
            method=wire.method,
            raw_path=wire.raw_path,
            query_string=wire.query_string,
            headers=wire.headers,
            body=wire.body,
            secret=SECRET,
            credential=forged,
        )
    assert caught.value.code == "InvalidSignatureException"
