"""SigV4 verification on the gateway's hot path, against botocore signing the same request.

Usage: .venv/bin/python bench/sigv4.py [--quick]

The request is the one boto3's ``sagemaker-runtime`` client really sends for
``invoke_endpoint`` (captured in ``before-send``, nothing goes on the network): the churn
example's JSON body, ``CustomAttributes`` and ``TargetVariant``. One verification is
``parse_authorization`` + ``verify``, as the gateway will call them. The anchor is what
botocore spends signing that request on the client (``SigV4Auth.add_auth``): the same
hashing and HMACs, so the ratio says how much the verifier adds on top of the work itself.

The same request is verified over and over, so the verifier's small caches (signing key per
key and day, request time per second, canonical path per path) hit, as they do for a busy
endpoint; the "every cache cold" row is the first request of a new key, path and second.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSPreparedRequest, AWSRequest, AWSResponse
from botocore.credentials import Credentials

sys.path.insert(0, str(Path(__file__).parent))
from _harness import console, ratio_table

from shipyard.kit import sigv4

KEY_ID, SECRET, REGION = (
    "SYKEY0CHURN0INVOKER1",
    "bench-secret/0123456789abcdefghijklmn",
    "us-east-1",
)
BODY = b'{"features": [25, 2, 0.0, 1, 0, 0, 0, 0, 0, 0]}'


class _RawBody(io.BytesIO):
    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.read()


def captured_invoke(body: bytes) -> AWSPreparedRequest:
    """boto3's own InvokeEndpoint request, exactly as it would leave the client."""
    client = boto3.client(
        "sagemaker-runtime",
        endpoint_url="http://127.0.0.1:1",
        region_name=REGION,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
    )
    sent: list[AWSPreparedRequest] = []

    def short_circuit(request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        sent.append(request)
        return AWSResponse(request.url, 200, {}, _RawBody(b"{}"))

    client.meta.events.register("before-send.sagemaker-runtime.InvokeEndpoint", short_circuit)
    client.invoke_endpoint(
        EndpointName="customer-churn-v23",
        Body=body,
        ContentType="application/json",
        CustomAttributes="trace=abc",
        TargetVariant="blue",
    )
    return sent[0]


def gateway_view(request: AWSPreparedRequest) -> dict[str, Any]:
    """What the gateway has in hand: raw path and query, lower-case str headers, body."""
    parts = urlsplit(request.url)
    headers = {
        k.lower(): v.decode("latin-1") if isinstance(v, bytes) else v
        for k, v in request.headers.items()
    }
    headers["host"] = parts.netloc
    body = request.body if isinstance(request.body, bytes) else b""
    return {
        "method": request.method,
        "raw_path": parts.path.encode(),
        "query_string": parts.query.encode(),
        "headers": headers,
        "body": body,
    }


def verifier(view: dict[str, Any], cold: bool = False) -> Callable[[], None]:
    authorization = view["headers"]["authorization"]
    caches = (
        sigv4._signer,
        sigv4._amz_epoch,
        sigv4._canonical_uri,
        sigv4._credential_scope,
        sigv4._signed_headers,
    )

    def once() -> None:
        if cold:
            for cache in caches:
                cache.cache_clear()
        credential = sigv4.parse_authorization(authorization)
        sigv4.verify(**view, secret=SECRET, credential=credential)

    once()  # warm the caches (and fail loudly if the request does not verify)
    return once


def botocore_signer(request: AWSPreparedRequest) -> Callable[[], None]:
    """botocore signing the same request again (the header values as text, as it got them)."""
    auth = SigV4Auth(Credentials(KEY_ID, SECRET), "sagemaker", REGION)
    view = gateway_view(request)
    headers = {k: v for k, v in view["headers"].items() if k not in ("authorization", "host")}

    def once() -> None:
        auth.add_auth(AWSRequest(request.method, request.url, headers, view["body"]))

    return once


def per_call_s(fn: Callable[[], None], loops: int, repeat: int = 5) -> float:
    """Best of ``repeat`` runs of ``loops`` calls: the machine is shared and noisy."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(loops):
            fn()
        best = min(best, (time.perf_counter() - started) / loops)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    loops = 2_000 if parser.parse_args().quick else 20_000

    typical = captured_invoke(BODY)
    view = gateway_view(typical)
    warm = per_call_s(verifier(view), loops)
    cold = per_call_s(verifier(view, cold=True), loops)
    signing = per_call_s(botocore_signer(typical), loops)
    big = gateway_view(captured_invoke(b"x" * (1 << 20)))
    big_warm = per_call_s(verifier(big), max(loops // 1000, 10))

    us = 1e6
    ratio_table(
        f"SigV4 verification, boto3 invoke_endpoint request ({len(BODY)} B JSON body)",
        [
            (
                "verify, signing key cached",
                f"{warm * us:.1f} µs",
                f"{1 / warm:,.0f} verifications/s",
            ),
            ("verify, every cache cold", f"{cold * us:.1f} µs", f"{1 / cold:,.0f}/s"),
            (
                "botocore SigV4Auth.add_auth (anchor)",
                f"{signing * us:.1f} µs",
                "client-side signing",
            ),
            ("verify (cached) / botocore signing", f"{warm / signing:.2f}x", "lower is better"),
            (
                "verify, 1 MiB body (cached)",
                f"{big_warm * us:.0f} µs",
                "SHA-256 of the body dominates",
            ),
        ],
    )
    console.print(
        f"{1 / warm:,.0f} verifications/s, {warm * us:.1f} µs per verify (warm key cache)"
    )


if __name__ == "__main__":
    main()
