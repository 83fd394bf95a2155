"""Pure SDK logic: URL encoding of artifact paths, project refs, error classes, token expiry."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shipyard.sdk import _exceptions as exc
from shipyard.sdk._artifacts import encode_path, split_project
from shipyard.sdk._auth import token_expiry
from shipyard.sdk._transport import raise_for_error


@pytest.mark.parametrize(
    ("path", "encoded"),
    [
        ("models/model.pkl", "models/model.pkl"),
        ("../../etc/passwd", "%2E%2E/%2E%2E/etc/passwd"),
        ("a/./b", "a/%2E/b"),
        ("a?b#c", "a%3Fb%23c"),
        ("50%", "50%25"),
        ("a\\b", "a%5Cb"),
        ("x\x00y", "x%00y"),
        ("v1.2/file.tar.gz", "v1.2/file.tar.gz"),
    ],
)
def test_encode_path(path: str, encoded: str) -> None:
    assert encode_path(path) == encoded


@given(st.text(min_size=1, max_size=40))
def test_encoded_paths_survive_url_normalisation(path: str) -> None:
    """Whatever the user typed reaches the server verbatim: httpx must not resolve dot segments."""
    url = httpx.URL("http://h/api/v1/projects/t/p/artifacts/" + encode_path(path))
    prefix = "/api/v1/projects/t/p/artifacts/"
    assert url.raw_path.decode().startswith(prefix)
    from urllib.parse import unquote

    assert unquote(url.raw_path.decode()[len(prefix) :].split("?")[0]) == path


def test_split_project() -> None:
    assert split_project("ml/churn") == ("ml", "churn")
    for bad in ("ml", "ml/", "/churn", "a/b/c"):
        with pytest.raises(ValueError, match="TEAM/PROJECT"):
            split_project(bad)


def _response(status: int, body: object, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "invalid_path", exc.InvalidPath),
        (400, "bad_request", exc.BadRequest),
        (401, "unauthenticated", exc.Unauthenticated),
        (403, "permission_denied", exc.PermissionDenied),
        (404, "not_found", exc.NotFound),
        (409, "stale_write", exc.StaleWrite),
        (409, "conflict", exc.Conflict),
        (413, "payload_too_large", exc.PayloadTooLarge),
        (422, "validation_failed", exc.ValidationFailed),
        (429, "rate_limited", exc.RateLimited),
        (500, "integrity_error", exc.CorruptArtifact),
        (503, "store_unavailable", exc.StoreUnavailable),
        (500, "internal", exc.ServerError),
        (503, "unavailable", exc.ServerError),
    ],
)
def test_error_bodies_become_the_matching_exception(
    status: int, code: str, cls: type[exc.APIError]
) -> None:
    body = {"error": {"code": code, "message": "m", "request_id": "r1", "field": "f"}}
    with pytest.raises(cls) as caught:
        raise_for_error(_response(status, body, {"Retry-After": "7"}))
    assert type(caught.value) is cls
    assert (caught.value.status, caught.value.code, caught.value.request_id) == (status, code, "r1")
    assert caught.value.field == "f"
    if cls is exc.RateLimited:
        assert caught.value.retry_after == 7


def test_a_corrupt_artifact_is_both_a_server_and_an_integrity_error() -> None:
    assert issubclass(exc.CorruptArtifact, exc.ServerError)
    assert issubclass(exc.CorruptArtifact, exc.IntegrityError)


def test_a_non_json_error_still_raises_with_the_text() -> None:
    with pytest.raises(exc.ServerError, match="upstream down"):
        raise_for_error(httpx.Response(502, text="upstream down"))


def _jwt(claims: dict[str, object]) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return f"{b64(b'{}')}.{b64(json.dumps(claims).encode())}.sig"


def test_token_expiry_reads_exp_and_ignores_what_is_not_a_jwt() -> None:
    assert token_expiry(_jwt({"exp": 1_900_000_000})) == 1_900_000_000
    assert token_expiry(_jwt({"sub": "x"})) is None
    assert token_expiry("shpk_ABC_secret") is None
    assert token_expiry("a.!!!.c") is None
