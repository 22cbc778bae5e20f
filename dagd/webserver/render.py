"""Pages from templates: the Jinja environment (autoescape everywhere) and what every page shows.

Every page gets the navigation, the CSRF token for its forms, the refresh interval, the language
switch, and the instance banner: a warning when the ``run_queue`` daemon is unhealthy, the queue is
paused, or the supervisor cannot be reached.

Templates speak through Jinja's i18n extension (``{{ _("...") }}``, ``{% trans %}``) bound to
:mod:`dagd.webserver.i18n`, so a page is rendered in the language of its request.
"""

from __future__ import annotations

import json
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
from dagd.webserver import display, i18n
from dagd.webserver.gateway import Gateway
from dagd.webserver.i18n import N_, gettext

TEMPLATES = pathlib.Path(__file__).parent / "templates"

NAV = (
    ("overview", "/", N_("Overview")),
    ("runs", "/runs", N_("Runs")),
    ("jobs", "/jobs", N_("Jobs")),
    ("launchpad", "/launchpad", N_("Launchpad")),
    ("schedules", "/schedules", N_("Schedules")),
    ("sensors", "/sensors", N_("Sensors")),
    ("daemons", "/deployment/daemons", N_("Deployment")),
)
# How templates are read for messages (scripts/i18n and the catalog test use the same options).
I18N_EXTENSIONS = ["jinja2.ext.i18n"]


def make_environment() -> jinja2.Environment:
    # autoescape=True for every template, whatever its extension: user strings are always text.
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=I18N_EXTENSIONS,
    )
    # Whitespace inside {% trans %} is collapsed, as the extractor is told too (scripts/i18n).
    env.policies["ext.i18n.trimmed"] = True
    # newstyle: variables are escaped, and a translation missing a placeholder fails loudly.
    env.install_gettext_callables(  # type: ignore[attr-defined]
        gettext=i18n.gettext, ngettext=i18n.ngettext, newstyle=True
    )
    env.filters.update(
        clock=display.clock,
        clock_ms=display.clock_ms,
        duration=display.duration,
        status_class=display.status_class,
        num=i18n.number,
        pretty_json=lambda value: json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False),
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
            return [Banner("error", gettext("Cannot reach the supervisor: %(error)s") % {"error": exc})]
        except DagdError as exc:
            return [Banner("error", gettext("The supervisor did not answer: %(error)s") % {"error": exc})]
    out = []
    if not queue["queue_daemon_healthy"]:
        out.append(
            Banner(
                "error",
                gettext("The run_queue daemon is not healthy: queued runs are not being launched."),
                "/deployment/daemons",
            )
        )
    if queue["paused"]:
        out.append(
            Banner("warning", gettext("The run queue is paused: queued runs wait until it is resumed."), "/")
        )
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
    locale = i18n.current()
    html = ui.env.get_template(template).render(
        request_path=request.url.path,
        request_target=_target(request),
        lang=locale,
        languages=i18n.LANGUAGES,
        nav=[(key, href, gettext(label)) for key, href, label in NAV],
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


def _target(request: Request) -> str:
    """This page's path and query, for forms that come back here (without a one-time notice)."""
    url = request.url.remove_query_params("done")
    return url.path + (f"?{url.query}" if url.query else "")


# After a POST the browser is redirected with ``?done=<code>``; only these fixed texts are shown,
# so a crafted link cannot put words of its own on the page.
NOTICES = {
    "launched": N_("Run launched."),
    "terminated": N_("Termination requested."),
    "restarted": N_("Restart requested: the daemon is being replaced."),
    "started": N_("Started."),
    "stopped": N_("Stopped."),
    "paused": N_("The run queue is paused."),
    "resumed": N_("The run queue is running again."),
}


def notice_of(request: Request) -> str | None:
    text = NOTICES.get(request.query_params.get("done", ""))
    return None if text is None else gettext(text)


def redirect(url: str) -> RedirectResponse:
    """After a POST: 303, so reloading the next page never re-submits the form."""
    return RedirectResponse(url, status_code=303)
