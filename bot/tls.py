"""The process's one TLS context for its httpx clients (the IdP's endpoints, the SAML metadata, chat APIs).

Building a context reads the whole CA bundle, ~40 ms of CPU: once per process, not once per client. A context
is made to be shared; it is httpx's own default (certifi's bundle, or SSL_CERT_FILE / SSL_CERT_DIR), so trust is
unchanged."""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def tls_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()
