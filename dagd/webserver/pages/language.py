"""The language switch: remember the chosen language in a cookie and go back to the same page."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dagd.errors import InvalidArgument
from dagd.webserver import i18n
from dagd.webserver.forms import parse_form
from dagd.webserver.render import redirect
from dagd.webserver.security import safe_next


async def choose(request: Request) -> Response:
    form = parse_form(await request.body())
    lang = form.get("lang", "")
    if lang not in i18n.LANGUAGES:
        raise InvalidArgument(f"no language {lang[:20]!r} (one of: {', '.join(i18n.LANGUAGES)})")
    response = redirect(safe_next(form.get("next")))
    # Not HttpOnly-worthy (no secret), but the page never reads it: the server renders the language.
    response.set_cookie(
        i18n.COOKIE,
        lang,
        max_age=i18n.COOKIE_MAX_AGE,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


routes = [Route("/language", choose, methods=["POST"], name="language")]
