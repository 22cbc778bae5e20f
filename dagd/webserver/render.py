"""Pages from templates: the Jinja environment (autoescape everywhere) and what every page shows.

Every page gets the navigation, the CSRF token for its forms, the refresh interval, and the
instance banner: a warning when the ``run_queue`` daemon is unhealthy, the queue is paused, or the
supervisor cannot be reached.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse

from dagd.client.client import SupervisorUnreachable
from dagd.errors import DagdError
from dagd.timefmt import utcnow
from dagd.webserver import display
from dagd.webserver.gateway import Gateway

TEMPLATES = pathlib.Path(__file__).parent / "templates"

NAV = (
    ("overview", "/", "Overview"),
    ("runs", "/runs", "Runs"),
    ("launchpad", "/launchpad", "Launchpad"),
    ("schedules", "/schedules", "Schedules"),
    ("sensors", "/sensors", "Sensors"),
    ("daemons", "/deployment/daemons", "Deployment"),
)


def make_environment() -> jinja2.Environment:
    # autoescape=True for every template, whatever its extension: user strings are always text.
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        clock=display.clock,
        duration=display.duration,
        status_class=display.status_class,
        q=lambda value: quote(str(value), safe=""),
    )
    return env


@dataclass(frozen=True)
class Banner:
    level: str  # "error" or "warning"
    message: str
    link: str | None = None


@dataclass
class UI:
    """What the handlers share: the way to the supervisor, templates, and settings."""

    gateway: Gateway
    env: jinja2.Environment = field(default_factory=make_environment)
    refresh_seconds: float = 2.0
    access_token: str | None = None


def ui_of(request: Request) -> UI:
    ui: UI = request.app.state.ui
    return ui


async def banners(ui: UI, queue: dict[str, Any] | None = None) -> list[Banner]:
    """The instance-wide warnings shown on top of every page (``queue``: a queue status already read)."""
    if queue is None:
        try:
            queue = await ui.gateway.call(lambda c: c.queue_status())
        except SupervisorUnreachable as exc:
            return [Banner("error", f"Cannot reach the supervisor: {exc}")]
        except DagdError as exc:
            return [Banner("error", f"The supervisor did not answer: {exc}")]
    out = []
    if not queue["queue_daemon_healthy"]:
        out.append(
            Banner(
                "error",
                "The run_queue daemon is not healthy: queued runs are not being launched.",
                "/deployment/daemons",
            )
        )
    if queue["paused"]:
        out.append(Banner("warning", "The run queue is paused: queued runs wait until it is resumed.", "/"))
    return out


async def page(
    request: Request,
    template: str,
    *,
    active: str,
    status_code: int = 200,
    with_banners: bool = True,
    queue: dict[str, Any] | None = None,
    **context: Any,
) -> HTMLResponse:
    """Render ``template`` with what every page needs; ``with_banners=False`` for the sign-in page.

    A page that has read the queue status anyway passes it as ``queue`` (the banner needs it too).
    """
    ui = ui_of(request)
    now: datetime = utcnow()
    context.setdefault("notice", notice_of(request))
    html = ui.env.get_template(template).render(
        request_path=request.url.path,
        nav=NAV,
        active=active,
        csrf_token=request.state.csrf_token,
        refresh_ms=int(ui.refresh_seconds * 1000),
        signed_in=ui.access_token is not None,
        banners=await banners(ui, queue) if with_banners else [],
        queue=queue,
        now=now,
        age=lambda value: display.age(value, now),
        between=lambda start, end: display.between(start, end, now),
        **context,
    )
    return HTMLResponse(html, status_code=status_code)


# After a POST the browser is redirected with ``?done=<code>``; only these fixed texts are shown,
# so a crafted link cannot put words of its own on the page.
NOTICES = {
    "launched": "Run launched.",
    "terminated": "Termination requested.",
    "restarted": "Restart requested: the daemon is being replaced.",
    "started": "Started.",
    "stopped": "Stopped.",
    "paused": "The run queue is paused.",
    "resumed": "The run queue is running again.",
}


def notice_of(request: Request) -> str | None:
    return NOTICES.get(request.query_params.get("done", ""))


def redirect(url: str) -> RedirectResponse:
    """After a POST: 303, so reloading the next page never re-submits the form."""
    return RedirectResponse(url, status_code=303)
