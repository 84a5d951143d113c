"""Admin and feedback authentication: a token compared in constant time.

``Authorization: Bearer <token>`` must match the ``LEANML_ADMIN_TOKEN`` the service started with:
no header (or another scheme) -> 401 with ``WWW-Authenticate: Bearer``; a wrong token -> 403;
no token configured -> 403 (admin disabled). The comparison is ``hmac.compare_digest`` on the
SHA-256 digests, so neither the content nor the length of the token leaks through timing.

Feedback (:func:`check_feedback_token`) needs a credential only when ``[serving]
feedback_token`` (``LEANML_FEEDBACK_TOKEN``) is set: ``Authorization: Bearer <token>`` or
``X-Feedback-Token: <token>``; missing -> 401, wrong -> 403.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["FEEDBACK_TOKEN_HEADER", "check_bearer", "check_feedback_token"]

#: the header that may carry the feedback credential instead of ``Authorization``
FEEDBACK_TOKEN_HEADER = "x-feedback-token"


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


def _same(given: str, token: str) -> bool:
    a = hashlib.sha256(given.encode("utf-8", "surrogatepass")).digest()
    b = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
    return hmac.compare_digest(a, b)


def check_feedback_token(
    authorization: str | None, header_token: str | None, token: str | None
) -> tuple[int, str] | None:
    """None when feedback is authorized (always, without a configured token), else
    (status, message naming the header)."""
    if token is None:
        return None
    given = header_token
    if given is None and authorization:
        scheme, _, rest = authorization.partition(" ")
        given = rest.strip() if scheme.lower() == "bearer" else None
    if not given:
        return 401, (
            "feedback needs a credential: send 'Authorization: Bearer <LEANML_FEEDBACK_TOKEN>' "
            "or 'X-Feedback-Token: <LEANML_FEEDBACK_TOKEN>'"
        )
    if not _same(given, token):
        return 403, "feedback: wrong token in Authorization / X-Feedback-Token"
    return None
