"""Admin authentication: a bearer token compared in constant time.

``Authorization: Bearer <token>`` must match the ``LEANML_ADMIN_TOKEN`` the service started with:
no header (or another scheme) -> 401 with ``WWW-Authenticate: Bearer``; a wrong token -> 403;
no token configured -> 403 (admin disabled). The comparison is ``hmac.compare_digest`` on the
SHA-256 digests, so neither the content nor the length of the token leaks through timing.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["check_bearer"]


def check_bearer(header: str | None, token: str | None) -> tuple[int, str] | None:
    """None when authorized, else (status, message)."""
    if not header:
        return 401, "admin endpoint: send 'Authorization: Bearer <LEANML_ADMIN_TOKEN>'"
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return 401, "admin endpoint: the Authorization header must use the Bearer scheme"
    if not token:
        return 403, "admin endpoints are disabled: start the server with LEANML_ADMIN_TOKEN set"
    a = hashlib.sha256(given.strip().encode("utf-8", "surrogatepass")).digest()
    b = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
    if not hmac.compare_digest(a, b):
        return 403, "admin endpoint: wrong bearer token"
    return None
