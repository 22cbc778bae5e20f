"""Launchpad: pick a job, set tags, a priority (overriding the code's) and run config; launch.

``/launchpad?job=NAME`` starts from the job's tags as its code sets them (dagd jobs carry no default
run config: blank means ``{}``); ``/launchpad?run=RUN_ID`` ("Launch again") from that run's job,
run config and tags, less the tags that only say where the run came from (a schedule, a sensor).

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


# Tags that record a run's origin, not what to run: a relaunch from the launchpad is neither.
ORIGIN_TAGS = frozenset({"dagd/schedule", "dagd/scheduled_time", "dagd/sensor"})


def tags_text(tags: dict[str, str]) -> str:
    """Tags as the form's textarea holds them: one ``key=value`` per line, sorted."""
    return "\n".join(f"{key}={value}" for key, value in sorted(tags.items()))


def job_tags(locations: list[dict[str, Any]]) -> dict[str, str]:
    """Each job's code tags as form text, for the job picker (``data-tags`` of its option)."""
    return {
        detail["name"]: tags_text(detail.get("tags") or {})
        for loc in locations
        for detail in loc.get("job_details", [])
    }


async def _render(
    request: Request,
    values: dict[str, str],
    error: str | None = None,
    status_code: int = 200,
    info: dict[str, Any] | None = None,
    source: str | None = None,
) -> Response:
    if info is None:
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
        job_tags=job_tags(locations),
        source=source,
    )


async def launchpad(request: Request) -> Response:
    gateway = ui_of(request).gateway
    info = await gateway.call(lambda c: c.instance_info())
    values = {
        "job": request.query_params.get("job", ""),
        "tags": "",
        "priority": "",
        "run_config": "",
        "launch_id": uuid.uuid4().hex,
    }
    source = None
    run_id = request.query_params.get("run", "")
    if run_id:
        run, _ = await gateway.call(lambda c: c.get_run(run_id))
        values["job"] = run["job_name"]
        values["tags"] = tags_text({k: v for k, v in run["tags"].items() if k not in ORIGIN_TAGS})
        values["run_config"] = (
            json.dumps(run["run_config"], indent=2, sort_keys=True) if run["run_config"] else ""
        )
        source = run["run_id"]
    elif values["job"]:
        values["tags"] = job_tags(info["code_locations"]).get(values["job"], "")
    return await _render(request, values, info=info, source=source)


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
