"""The one rule for ``Authorization: Bearer <token>``, used by the gRPC server and the web UI.

RFC 6750 §2.1 with RFC 7235's case-insensitive auth scheme: ``Bearer``, ``bearer`` and ``BEARER``
are the same scheme; one or more spaces separate it from the token. The token is compared in
constant time.
"""

from __future__ import annotations

import hmac


def bearer_matches(authorization: str | bytes | None, token: str) -> bool:
    """True when ``authorization`` carries exactly ``token`` with the Bearer scheme."""
    if isinstance(authorization, bytes):
        try:
            authorization = authorization.decode()
        except UnicodeDecodeError:
            return False
    if not authorization or not token:
        return False
    scheme, _, presented = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.lstrip(" ").encode(), token.encode())
