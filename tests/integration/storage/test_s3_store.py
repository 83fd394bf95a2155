"""The artifact store on S3: a real server writing to moto's S3 server over loopback HTTP.

Nothing is mocked in-process: moto runs as its own process (``python -m moto.server``), the
Shipyard server reaches it through ``SHIPYARD_STORE_URL`` and ``SHIPYARD_S3_ENDPOINT_URL``,
and the tests inspect the bucket with boto3 the way an operator would.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import Tenant, make_tenant
from tests.support.moto import AWS_ENV, MotoServer, start_moto
from tests.support.servers import RunningServer, start_server

BUCKET = "shipyard-artifacts"
PREFIX = "team-store"
MIB = 1024 * 1024


def _s3_env(moto: MotoServer, *, bucket: str = BUCKET) -> dict[str, str]:
    return {
        "SHIPYARD_STORE_URL": f"s3://{bucket}/{PREFIX}",
        "SHIPYARD_S3_ENDPOINT_URL": moto.url,
        **AWS_ENV,
    }


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    running = start_moto(tmp_path_factory.mktemp("moto"))
    running.client().create_bucket(Bucket=BUCKET)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def s3_server(
    moto: MotoServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("s3home") / "home", extra_env=_s3_env(moto))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def s3_tenant(s3_server: RunningServer) -> Tenant:
    return make_tenant(s3_server, roles=("scientist", "lead"))


def _base(tenant: Tenant) -> str:
    return f"/api/v1/projects/{tenant.team}/{tenant.project}"


def _keys(s3: Any, bucket: str = BUCKET) -> set[str]:
    keys: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys.update(obj["Key"] for obj in page.get("Contents", []))
    return keys


def _new_key(s3: Any, before: set[str]) -> str:
    new = _keys(s3) - before
    assert len(new) == 1, new
    return new.pop()


def _read(s3: Any, key: str) -> bytes:
    return bytes(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def _flip_byte(s3: Any, key: str, offset: int) -> None:
    data = bytearray(_read(s3, key))
    data[offset] ^= 0x01
    s3.put_object(Bucket=BUCKET, Key=key, Body=bytes(data))


def test_readyz_reports_the_store_reachable(s3_server: RunningServer) -> None:
    r = httpx.get(f"{s3_server.url}/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["checks"]["store"] == "ok"
    with s3_server.admin() as admin:
        assert admin.get("/api/v1/info").json()["store"] == f"s3://{BUCKET}/{PREFIX}"


def test_two_versions_round_trip_byte_exact_under_the_prefix(
    s3_server: RunningServer, s3_tenant: Tenant, moto: MotoServer
) -> None:
    s3 = moto.client()
    url = f"{_base(s3_tenant)}/artifacts/models/m.bin"
    first, second = os.urandom(70_000), b"second version " * 1000
    before = _keys(s3)
    with s3_server.client(s3_tenant.keys["scientist"]) as c:
        r1, r2 = c.put(url, content=first), c.put(url, content=second)
        assert (r1.status_code, r2.status_code) == (201, 201), r2.text
        assert (r1.json()["version"], r2.json()["version"]) == (1, 2)
        v1 = c.get(url, params={"version": 1})
        v2 = c.get(url, params={"version": 2})
        latest = c.get(url)
    assert (v1.status_code, v2.status_code, latest.status_code) == (200, 200, 200)
    assert v1.content == first and v1.headers["x-shipyard-version"] == "1"
    assert v2.content == second and v2.headers["x-shipyard-version"] == "2"
    assert latest.content == second
    assert v1.headers["x-shipyard-sha256"] == hashlib.sha256(first).hexdigest()
    new = _keys(s3) - before
    assert len(new) == 2, new  # one object per version, nothing else
    assert all(key.startswith(f"{PREFIX}/blobs/") for key in new), new


def test_plaintext_never_reaches_the_bucket(
    s3_server: RunningServer, s3_tenant: Tenant, moto: MotoServer
) -> None:
    marker = b"PLAINTEXT-CANARY-" + os.urandom(8).hex().encode()
    with s3_server.client(s3_tenant.keys["lead"]) as c:
        r = c.put(f"{_base(s3_tenant)}/artifacts/secret.txt", content=marker * 500)
        assert r.status_code == 201, r.text
        assert c.get(f"{_base(s3_tenant)}/artifacts/secret.txt").content == marker * 500
    s3 = moto.client()
    keys = _keys(s3)
    assert keys, "no object was written to the bucket"
    for key in keys:
        assert key.startswith(f"{PREFIX}/"), f"object {key} is outside the configured prefix"
        assert marker not in _read(s3, key), f"plaintext found in s3://{BUCKET}/{key}"


def test_flipped_byte_in_the_bucket_gives_an_integrity_error(
    s3_server: RunningServer, s3_tenant: Tenant, moto: MotoServer
) -> None:
    s3 = moto.client()
    url = f"{_base(s3_tenant)}/artifacts/flip/small.bin"
    before = _keys(s3)
    with s3_server.client(s3_tenant.keys["lead"]) as c:
        assert c.put(url, content=b"x" * 10_000).status_code == 201
        key = _new_key(s3, before)
        _flip_byte(s3, key, len(_read(s3, key)) // 2)
        r = c.get(url)
    assert r.status_code == 500
    assert r.json()["error"]["code"] == "integrity_error"
    assert b"x" * 100 not in r.content


def test_corruption_late_in_a_large_object_never_yields_the_full_body(
    s3_server: RunningServer, s3_tenant: Tenant, moto: MotoServer
) -> None:
    s3 = moto.client()
    url = f"{_base(s3_tenant)}/artifacts/flip/large.bin"
    payload = os.urandom(12 * MIB)
    before = _keys(s3)
    with s3_server.client(s3_tenant.keys["lead"]) as c:
        assert c.put(url, content=payload).status_code == 201
        key = _new_key(s3, before)
        _flip_byte(s3, key, -100)  # inside the last chunk
        received = b""
        with pytest.raises(httpx.HTTPError):
            with c.stream("GET", url) as r:
                assert r.status_code == 200
                for piece in r.iter_bytes():
                    received += piece
    assert len(received) < len(payload)


def test_multi_part_upload_round_trips(
    s3_server: RunningServer, s3_tenant: Tenant, moto: MotoServer
) -> None:
    s3 = moto.client()
    url = f"{_base(s3_tenant)}/artifacts/big/twenty.bin"
    payload = os.urandom(20 * MIB)  # more than two 8 MiB S3 parts
    pieces = [payload[i : i + MIB] for i in range(0, len(payload), MIB)]
    before = _keys(s3)
    with s3_server.client(s3_tenant.keys["scientist"]) as c:
        r = c.put(url, content=iter(pieces))  # streamed, no Content-Length
        assert r.status_code == 201, r.text
        assert r.json()["size"] == len(payload)
        assert r.json()["sha256"] == hashlib.sha256(payload).hexdigest()
        with c.stream("GET", url) as response:
            assert response.status_code == 200
            assert response.headers["content-length"] == str(len(payload))
            got = b"".join(response.iter_bytes())
    assert got == payload
    head = s3.head_object(Bucket=BUCKET, Key=_new_key(s3, before))
    assert "-" in head["ETag"], "expected a multipart upload (ETag of the form md5-N)"
    assert head["ContentLength"] > len(payload)  # the nonce and tag of each chunk


def _wait_for_a_part(s3: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for upload in s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []):
            parts = s3.list_parts(Bucket=BUCKET, Key=upload["Key"], UploadId=upload["UploadId"])
            if parts.get("Parts"):
                return
        time.sleep(0.05)
    raise AssertionError("the server never uploaded a part")


def test_store_outage_gives_errors_not_hangs_and_records_nothing(tmp_path: Path) -> None:
    moto = start_moto(tmp_path)
    s3 = moto.client()
    s3.create_bucket(Bucket=BUCKET)
    limit = 16 * MIB
    # botocore's own setting: one attempt per call. Against a stopped store the default (five
    # attempts with exponential back-off) makes each call take ~10 s; what is checked here is
    # that the error reaches the caller and nothing is recorded, not botocore's back-off.
    env = {**_s3_env(moto), "SHIPYARD_MAX_UPLOAD_BYTES": str(limit), "AWS_MAX_ATTEMPTS": "1"}
    server = start_server(tmp_path / "home", extra_env=env)
    try:
        tenant = make_tenant(server, roles=("scientist",))
        base = _base(tenant)
        with server.client(tenant.keys["scientist"]) as c:
            assert c.put(f"{base}/artifacts/kept.bin", content=b"version one").status_code == 201
            objects = _keys(s3)

            # Over the limit after a multipart upload has begun: 413, and the bucket holds
            # neither a new object nor an unfinished multipart upload.
            over = iter([b"o" * MIB] * 16 + [b"o" * 1024])
            r = c.put(f"{base}/artifacts/over.bin", content=over)
            assert r.status_code == 413, r.text
            assert _keys(s3) == objects
            assert not s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads")

            # The store goes away in the middle of a streamed upload, after its first part.
            def body() -> Iterator[bytes]:
                yield from [b"m" * MIB] * 9
                _wait_for_a_part(s3)
                moto.stop()
                yield from [b"m" * MIB] * 3

            started = time.monotonic()
            try:
                r = c.put(f"{base}/artifacts/midway.bin", content=body())
            except httpx.TransportError:
                pass  # the server may answer and close before the client finished sending
            else:
                assert 500 <= r.status_code < 600, r.text
                assert r.json()["error"]["code"]
            assert time.monotonic() - started < 45

            ready = httpx.get(f"{server.url}/readyz", timeout=60)
            assert ready.status_code == 503
            assert ready.json()["error"]["code"] == "not_ready"
            assert "store failing" in ready.json()["error"]["message"]

            started = time.monotonic()
            r = c.put(f"{base}/artifacts/kept.bin", content=b"version two")
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "store_unavailable"
            assert "artifact store failed" in r.json()["error"]["message"]
            assert c.get(f"{base}/artifacts/kept.bin").status_code == 503
            assert time.monotonic() - started < 45

            assert httpx.get(f"{server.url}/healthz").status_code == 200
            versions = c.get(f"{base}/artifact-versions/kept.bin")
            assert [v["version"] for v in versions.json()] == [1]
            assert c.get(f"{base}/artifact-versions/midway.bin").status_code == 404
            assert c.get(f"{base}/artifact-versions/over.bin").status_code == 404
            listed = c.get(f"{base}/artifacts").json()
            assert [(a["path"], a["version"]) for a in listed] == [("kept.bin", 1)]
        # A discarded upload is closed for good: fsspec's __del__ never tries to finish it.
        assert "Exception ignored" not in server.log()
    finally:
        server.stop()
        moto.stop()
