"""One ASGI middleware in front of every route: sign-in, CSRF, body size, security headers.

Because the checks live here and not in the handlers, no route can forget them: every request
that is not GET/HEAD/OPTIONS must carry the CSRF token (form field ``csrf_token`` or header
``X-CSRF-Token``) and come from our own origin, or it is refused with 403 before any handler runs.
The decisions themselves are the pure functions of :mod:`dagd.webserver.security`.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dagd.errors import InvalidArgument
from dagd.webserver import security
from dagd.webserver.forms import MAX_BODY_BYTES, parse_form

# No inline script or style anywhere: even a missed escape could not run code. SVG colours come
# from presentation attributes and classes, which CSP does not restrict.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
}
# Reachable without signing in: the sign-in page itself, a liveness probe, the static files, and
# the language switch (so the sign-in page can be read in either language; it still needs CSRF).
PUBLIC_PATHS = ("/login", "/healthz", "/static/", "/language")


@dataclass(frozen=True)
class SecuritySettings:
    csrf_key: bytes
    access_token: str | None = None
    max_body_bytes: int = MAX_BODY_BYTES


class _BodyTooLarge(Exception):
    pass


class SecurityMiddleware:
    def __init__(self, app: ASGIApp, settings: SecuritySettings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        cookie = request.cookies.get(security.CSRF_COOKIE)
        issue = not security.csrf_cookie_valid(self.settings.csrf_key, cookie)
        token = security.new_csrf_token(self.settings.csrf_key) if issue else str(cookie)
        scope.setdefault("state", {})["csrf_token"] = token
        static = request.url.path.startswith("/static/")
        send = self._decorating(send, token if issue else None, scope["scheme"] == "https", static)

        refusal = self._refuse_unauthenticated(request)
        if refusal is None and request.method not in security.SAFE_METHODS:
            try:
                body = await self._read_body(request, receive)
            except _BodyTooLarge:
                refusal = PlainTextResponse("request body too large", status_code=413)
            else:
                refusal = self._refuse_forgery(request, body, cookie)
                receive = _replay(body)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    # -- checks ------------------------------------------------------------------------------------

    def _refuse_unauthenticated(self, request: Request) -> Response | None:
        token = self.settings.access_token
        path = request.url.path
        if token is None or path.startswith(PUBLIC_PATHS):
            return None
        if security.session_ok(token, request.cookies.get(security.SESSION_COOKIE)):
            return None
        if security.bearer_ok(token, request.headers.get("authorization")):
            return None
        if request.method in ("GET", "HEAD"):
            target = path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
        return PlainTextResponse("sign in first: this dagd web UI needs its access token", status_code=401)

    def _refuse_forgery(self, request: Request, body: bytes, cookie: str | None) -> Response | None:
        headers = request.headers
        if not security.same_origin(
            origin=headers.get("origin"),
            referer=headers.get("referer"),
            fetch_site=headers.get("sec-fetch-site"),
            host=headers.get("host"),
        ):
            return PlainTextResponse("refused: this request did not come from this site", status_code=403)
        submitted = headers.get("x-csrf-token")
        if submitted is None and headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            try:
                submitted = parse_form(body).get(security.CSRF_FIELD)
            except InvalidArgument:
                submitted = None
        if not security.csrf_ok(self.settings.csrf_key, cookie, submitted):
            return PlainTextResponse(
                "refused: missing or expired form token (CSRF). Reload the page and try again.",
                status_code=403,
            )
        return None

    async def _read_body(self, request: Request, receive: Receive) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.settings.max_body_bytes:
            raise _BodyTooLarge
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.settings.max_body_bytes:
                raise _BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    # -- responses ---------------------------------------------------------------------------------

    @staticmethod
    def _decorating(send: Send, new_csrf: str | None, secure: bool, static: bool) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in SECURITY_HEADERS.items():
                    headers.setdefault(key, value)
                # Pages show live state and carry the CSRF token: never cached. Static files may be.
                headers.setdefault("cache-control", "max-age=300" if static else "no-store")
                if new_csrf is not None:
                    flags = "; Secure" if secure else ""
                    headers.append(
                        "set-cookie",
                        f"{security.CSRF_COOKIE}={new_csrf}; Path=/; HttpOnly; SameSite=Strict{flags}",
                    )
            await send(message)

        return wrapped


def _replay(body: bytes) -> Receive:
    """A ``receive`` that hands the already-read body to the app once, then waits for disconnect."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive
