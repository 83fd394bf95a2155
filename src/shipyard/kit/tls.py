"""One TLS context per process for every outgoing httpx client.

``httpx.Client()`` builds a new SSL context by default, loading the whole CA bundle: ~30 ms of
CPU for each client, whether or not it ever speaks TLS. The SDK's sessions, the webhook
dispatcher (a fresh client per delivery, on purpose) and the tests make many clients, so they
share the context built once here, with the settings httpx would choose (its CA bundle, or
``SSL_CERT_FILE``/``SSL_CERT_DIR`` when the environment is trusted).
"""

from __future__ import annotations

import functools
import ssl


@functools.cache
def client_ssl_context(*, trust_env: bool = True) -> ssl.SSLContext:
    """The shared context; ``trust_env=False`` ignores the ``SSL_CERT_*`` variables."""
    import httpx  # only processes that make clients pay for httpx

    return httpx.create_ssl_context(trust_env=trust_env)
