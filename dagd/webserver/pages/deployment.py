"""Deployment: the daemons (health, heartbeat, restarts, a Restart button), the worker hosts of
the Celery launcher (health, queues, slots in use), and the configuration.

The configuration page shows what the supervisor reports with secrets masked twice: once by the
supervisor, once more here (:mod:`dagd.webserver.masking`), because custom sections are free-form.
"""

from __future__ import annotations

from typing import Any

import yaml
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dagd.webserver.masking import mask_secrets, mask_value
from dagd.webserver.render import page, redirect, ui_of


async def daemons(request: Request) -> Response:
    status = await ui_of(request).gateway.call(lambda c: c.daemon_status())
    items: list[dict[str, Any]] = status["daemons"]
    return await page(
        request,
        "daemons.html",
        active="daemons",
        live_url="/live?watch=daemons",
        daemons=items,
        draining=status["draining"],
        healthy_count=sum(1 for d in items if d["healthy"]),
    )


async def workers(request: Request) -> Response:
    items: list[dict[str, Any]] = await ui_of(request).gateway.call(lambda c: c.list_workers())
    return await page(
        request,
        "workers.html",
        active="workers",
        workers=items,
        healthy_count=sum(1 for w in items if w["healthy"]),
        in_use=sum(w["in_use"] for w in items if w["healthy"]),
        slots=sum(w["slots"] for w in items if w["healthy"]),
    )


async def restart(request: Request) -> Response:
    name = request.path_params["name"]
    await ui_of(request).gateway.call(lambda c: c.restart_daemon(name))
    return redirect("/deployment/daemons?done=restarted")


def config_sections(config: dict[str, Any]) -> list[tuple[str, str]]:
    """The masked configuration as (section, YAML text) pairs, in the file's order."""
    masked = mask_secrets(config)
    return [
        (name, yaml.safe_dump(value, sort_keys=False, default_flow_style=False).strip())
        for name, value in masked.items()
    ]


async def configuration(request: Request) -> Response:
    gateway = ui_of(request).gateway
    info = await gateway.call(lambda c: c.instance_info())
    queue = await gateway.call(lambda c: c.queue_status())
    config: dict[str, Any] = info["config"]
    coordinator = config.get("run_coordinator", {})
    launcher = config.get("run_launcher", {})
    return await page(
        request,
        "configuration.html",
        active="configuration",
        info=info,
        storage=mask_value(info["storage"]),
        coordinator=mask_secrets(coordinator),
        launcher=mask_secrets(launcher),
        queue=queue,
        sections=config_sections(config),
    )


async def deployment(request: Request) -> Response:
    return redirect("/deployment/daemons")


routes = [
    Route("/deployment", deployment),
    Route("/deployment/daemons", daemons, name="daemons"),
    Route("/deployment/daemons/{name}/restart", restart, methods=["POST"], name="restart_daemon"),
    Route("/deployment/workers", workers, name="workers"),
    Route("/deployment/configuration", configuration, name="configuration"),
]
