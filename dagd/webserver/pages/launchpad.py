"""Launchpad: pick a job, set tags, a priority (overriding the code's) and run config; launch.

The submission carries the browser request's HTTP headers as gRPC metadata, so a custom run
coordinator's ``prepare_submission`` hook can attribute the run (SPEC §4).

A double-clicked or re-posted form launches one run: the idempotency key is the form's random id
plus a digest of what it asks for, so only an identical resubmission is folded into the first.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dagd.errors import InvalidArgument, NotFound
from dagd.webserver.forms import LaunchForm, parse_form, parse_launch
from dagd.webserver.gateway import submission_metadata
from dagd.webserver.render import page, redirect, ui_of


def idempotency_key(form: LaunchForm) -> str:
    if not form.idempotency_key:
        return ""
    digest = hashlib.sha256(
        json.dumps(
            [form.job_name, sorted(form.tags.items()), form.priority, form.run_config_json], default=str
        ).encode()
    ).hexdigest()[:16]
    return f"ui:{form.idempotency_key[:64]}:{digest}"


async def _render(
    request: Request, values: dict[str, str], error: str | None = None, status_code: int = 200
) -> Response:
    info = await ui_of(request).gateway.call(lambda c: c.instance_info())
    locations: list[dict[str, Any]] = info["code_locations"]
    return await page(
        request,
        "launchpad.html",
        active="launchpad",
        status_code=status_code,
        locations=locations,
        values=values,
        error=error,
    )


async def launchpad(request: Request) -> Response:
    values = {
        "job": request.query_params.get("job", ""),
        "tags": "",
        "priority": "",
        "run_config": "",
        "launch_id": uuid.uuid4().hex,
    }
    return await _render(request, values)


async def launch(request: Request) -> Response:
    form = parse_form(await request.body())
    values = {key: form.get(key, "") for key in ("job", "tags", "priority", "run_config", "launch_id")}
    metadata = submission_metadata(request.headers.items())
    try:
        launch_form = parse_launch(form)
        run = await ui_of(request).gateway.call(
            lambda c: c.submit(
                launch_form.job_name,
                tags=launch_form.tags,
                priority=launch_form.priority,
                run_config_json=launch_form.run_config_json,
                idempotency_key=idempotency_key(launch_form),
                metadata=metadata,
            )
        )
    except (InvalidArgument, NotFound) as exc:
        return await _render(request, values, error=str(exc), status_code=400)
    return redirect(f"/runs/{quote(run['run_id'], safe='')}?done=launched")


routes = [
    Route("/launchpad", launchpad, methods=["GET"], name="launchpad"),
    Route("/launchpad", launch, methods=["POST"], name="launch"),
]
