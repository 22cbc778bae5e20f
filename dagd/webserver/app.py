"""The Starlette application: routes of every page, static files, the security middleware, errors.

Errors from the supervisor arrive as dagd errors (the client maps gRPC status codes to them);
here, in one place, they become HTTP status codes and an error page.
"""

from __future__ import annotations

import pathlib

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from dagd.client.client import SupervisorUnreachable
from dagd.errors import (
    Conflict,
    DagdError,
    InvalidArgument,
    InvalidTransition,
    NotFound,
    Unauthenticated,
    Unavailable,
)
from dagd.webserver.i18n import N_, LocaleMiddleware, gettext
from dagd.webserver.middleware import SecurityMiddleware, SecuritySettings
from dagd.webserver.pages import (
    auth,
    deployment,
    instigators,
    jobs,
    language,
    launchpad,
    live,
    overview,
    runs,
)
from dagd.webserver.render import UI, page

STATIC = pathlib.Path(__file__).parent / "static"

HTTP_STATUS: list[tuple[type[DagdError], int, str]] = [
    (SupervisorUnreachable, 503, N_("Supervisor unreachable")),
    (NotFound, 404, N_("Not found")),
    (InvalidArgument, 400, N_("Bad request")),
    (InvalidTransition, 409, N_("Not possible now")),
    (Conflict, 409, N_("Conflict")),
    (Unauthenticated, 502, N_("The supervisor refused the webserver's token")),
    (Unavailable, 503, N_("Unavailable")),
]


async def dagd_error(request: Request, exc: Exception) -> Response:
    status, title = next(((s, t) for kind, s, t in HTTP_STATUS if isinstance(exc, kind)), (500, N_("Failed")))
    # The message itself comes from the supervisor and stays as it wrote it (English).
    return await page(
        request,
        "error.html",
        active="",
        status_code=status,
        title=gettext(title),
        message=str(exc),
        back=None,
    )


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    title = gettext("Not found") if exc.status_code == 404 else gettext("Request refused")
    message = gettext("There is no page here.") if exc.status_code == 404 else str(exc.detail)
    return await page(
        request,
        "error.html",
        active="",
        status_code=exc.status_code,
        title=title,
        message=message,
        back=None,
        with_banners=False,
    )


def create_app(ui: UI, settings: SecuritySettings) -> Starlette:
    routes = [
        *overview.routes,
        *live.routes,
        *runs.routes,
        *jobs.routes,
        *launchpad.routes,
        *deployment.routes,
        *instigators.routes,
        *auth.routes,
        *language.routes,
        Mount("/static", app=StaticFiles(directory=str(STATIC)), name="static"),
    ]
    app = Starlette(
        routes=routes,
        # The language first, so even a refusal of the security middleware could be translated.
        middleware=[Middleware(LocaleMiddleware), Middleware(SecurityMiddleware, settings=settings)],
        exception_handlers={DagdError: dagd_error, HTTPException: http_error},
    )
    app.state.ui = ui
    return app
