"""Signing in with the access token (when one is configured), signing out, and a liveness probe."""

from __future__ import annotations

import anyio
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from dagd.webserver import security
from dagd.webserver.forms import parse_form
from dagd.webserver.i18n import gettext
from dagd.webserver.render import page, redirect, ui_of

# Slows down guessing without a lockout anyone could trigger for someone else.
FAILED_SIGN_IN_DELAY = 0.5


async def login_form(request: Request) -> Response:
    if ui_of(request).access_token is None:
        return redirect("/")
    target = security.safe_next(request.query_params.get("next"))
    return await page(request, "login.html", active="", with_banners=False, next=target, error=None)


async def login(request: Request) -> Response:
    token = ui_of(request).access_token
    if token is None:
        return redirect("/")
    form = parse_form(await request.body())
    target = security.safe_next(form.get("next"))
    if not security.token_ok(token, form.get("token", "")):
        await anyio.sleep(FAILED_SIGN_IN_DELAY)
        return await page(
            request,
            "login.html",
            active="",
            with_banners=False,
            status_code=401,
            next=target,
            error=gettext("That is not the access token."),
        )
    response = redirect(target)
    response.set_cookie(
        security.SESSION_COOKIE,
        security.new_session_cookie(token),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


async def logout(request: Request) -> Response:
    response = redirect("/login")
    response.delete_cookie(security.SESSION_COOKIE, httponly=True, samesite="strict")
    return response


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


routes = [
    Route("/login", login_form, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/healthz", healthz),
]
