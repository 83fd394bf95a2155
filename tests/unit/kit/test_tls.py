"""The shared TLS context: one per process and setting, verifying as httpx's own would."""

from __future__ import annotations

import ssl

from shipyard.kit.tls import client_ssl_context


def test_one_context_per_trust_setting() -> None:
    assert client_ssl_context() is client_ssl_context()
    assert client_ssl_context(trust_env=False) is not client_ssl_context()


def test_the_context_verifies_certificates_and_host_names() -> None:
    context = client_ssl_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 0  # a CA bundle was loaded
