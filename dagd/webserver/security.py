"""The UI's security decisions as pure functions: CSRF tokens, same-origin checks, sign-in cookies.

CSRF is a signed double-submit token. Every browser gets a ``dagd_csrf`` cookie holding
``nonce.signature`` (HMAC-SHA256 of the nonce under a key only this webserver process knows); each
form repeats that value in a hidden field. A state-changing request passes only when the field
equals the cookie *and* the signature verifies: another site can neither read the cookie nor mint
a valid one (even one planted from a sibling subdomain). A new process means a new key: forms
rendered before a restart are refused once, and the next page load issues a fresh cookie.

The optional access token is never stored in the browser. Signing in sets ``dagd_session`` to
``nonce.HMAC(token, nonce)``, so changing the token signs everybody out, and the cookie alone does
not reveal the token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

CSRF_COOKIE = "dagd_csrf"
CSRF_FIELD = "csrf_token"
SESSION_COOKIE = "dagd_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_SESSION_CONTEXT = b"dagd-webserver-session-v1"


def _sign(key: bytes, nonce: str) -> str:
    digest = hmac.new(key, nonce.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _signed(key: bytes, value: str | None) -> bool:
    if not value or value.count(".") != 1:
        return False
    nonce, signature = value.split(".")
    return bool(nonce) and hmac.compare_digest(signature, _sign(key, nonce))


def new_csrf_token(key: bytes) -> str:
    """A fresh cookie value (and form field value) for one browser."""
    nonce = secrets.token_urlsafe(18)
    return f"{nonce}.{_sign(key, nonce)}"


def csrf_cookie_valid(key: bytes, cookie: str | None) -> bool:
    """True when ``cookie`` was issued by this process (else a new one must be issued)."""
    return _signed(key, cookie)


def csrf_ok(key: bytes, cookie: str | None, submitted: str | None) -> bool:
    """A state-changing request's token check: field equals cookie, and the cookie is ours."""
    if not cookie or not submitted or not csrf_cookie_valid(key, cookie):
        return False
    return hmac.compare_digest(cookie.encode(), submitted.encode())


def same_origin(*, origin: str | None, referer: str | None, fetch_site: str | None, host: str | None) -> bool:
    """Whether a state-changing request comes from our own pages, judged from the browser's headers.

    Browsers send ``Origin`` on POSTs (and ``Sec-Fetch-Site``); when neither they nor ``Referer``
    say anything, the CSRF token alone decides. Hosts are compared, not schemes: behind a proxy
    that terminates TLS the browser says ``https`` while this server sees ``http``.
    """
    if fetch_site is not None and fetch_site.lower() not in ("same-origin", "none"):
        return False
    if not host:
        return False
    claimed = origin if origin is not None else referer
    if claimed is None or claimed == "":
        return True
    parts = urlsplit(claimed)  # Origin: null (sandboxed frames) has no host and is refused
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()


def session_key(token: str) -> bytes:
    """The key sign-in cookies are signed with: derived from the access token, never the token."""
    return hmac.new(token.encode(), _SESSION_CONTEXT, hashlib.sha256).digest()


def new_session_cookie(token: str) -> str:
    nonce = secrets.token_urlsafe(18)
    return f"{nonce}.{_sign(session_key(token), nonce)}"


def session_ok(token: str, cookie: str | None) -> bool:
    return _signed(session_key(token), cookie)


def bearer_ok(token: str, authorization: str | None) -> bool:
    """``Authorization: Bearer <token>`` (any case of ``Bearer``), compared in constant time."""
    from dagd.bearer import bearer_matches

    return bearer_matches(authorization, token)


def token_ok(token: str, presented: str) -> bool:
    return hmac.compare_digest(presented.encode(), token.encode())


def safe_next(target: str | None, default: str = "/") -> str:
    """A redirect target from a form or query: a path on this site, never another host."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or any(ord(c) < 0x20 for c in target):
        return default
    return target
