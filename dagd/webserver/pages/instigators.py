"""Schedules and sensors: state, next tick, recent ticks, and start/stop toggles."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dagd.errors import NotFound
from dagd.webserver.forms import parse_form
from dagd.webserver.render import page, redirect, ui_of
from dagd.webserver.security import safe_next

KINDS = {"schedules": "schedule", "sensors": "sensor"}
RECENT_TICKS = 25


def _kind(request: Request) -> tuple[str, str]:
    plural = request.url.path.strip("/").split("/")[0]
    return plural, KINDS[plural]


async def instigator_list(request: Request) -> Response:
    plural, kind = _kind(request)
    items = await ui_of(request).gateway.call(lambda c: c.list_instigators(kind))
    return await page(request, "instigators.html", active=plural, plural=plural, kind=kind, items=items)


async def instigator_detail(request: Request) -> Response:
    plural, kind = _kind(request)
    name = request.path_params["name"]
    gateway = ui_of(request).gateway
    items = await gateway.call(lambda c: c.list_instigators(kind))
    found = [i for i in items if i["name"] == name]
    if not found:
        raise NotFound(f"no {kind} named {name!r}")
    ticks = await gateway.call(lambda c: c.list_ticks(kind, name, RECENT_TICKS))
    preview: dict[str, Any] | None = None
    if kind == "schedule" and not found[0]["definition_error"]:
        preview = await gateway.call(lambda c: c.preview_schedule(name, 5))
    return await page(
        request,
        "instigator.html",
        active=plural,
        plural=plural,
        kind=kind,
        item=found[0],
        ticks=ticks,
        preview=preview,
    )


async def set_running(request: Request) -> Response:
    plural, kind = _kind(request)
    name = request.path_params["name"]
    action = request.path_params["action"]
    if action not in ("start", "stop"):
        raise NotFound(f"no action {action[:20]!r} for a {kind} (start or stop)")
    running = action == "start"
    form = parse_form(await request.body())
    await ui_of(request).gateway.call(lambda c: c.set_instigator_running(kind, name, running))
    back = safe_next(form.get("next"), f"/{plural}")
    separator = "&" if "?" in back else "?"
    return redirect(f"{back}{separator}done={'started' if running else 'stopped'}")


routes = [
    route
    for plural in KINDS
    for route in (
        Route(f"/{plural}", instigator_list, name=plural),
        Route(f"/{plural}/{{name}}", instigator_detail, name=f"{plural}_detail"),
        Route(f"/{plural}/{{name}}/{{action}}", set_running, methods=["POST"]),
    )
]
