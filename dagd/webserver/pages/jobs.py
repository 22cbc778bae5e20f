"""Jobs: every job of every code location with its description, tags, the schedules and sensors
that target it, its latest runs, and a Launch button (to the launchpad, pre-filled).

What a Dagster user looks for first; everything here is read from the API (instance info, the
instigator lists, one run listing per job).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dagd.webserver.render import page, ui_of

LATEST_RUNS = 5


@dataclass
class JobView:
    name: str
    location: str
    description: str | None
    tags: dict[str, str]
    schedules: list[dict[str, Any]] = field(default_factory=list)
    sensors: list[dict[str, Any]] = field(default_factory=list)
    runs: Sequence[dict[str, Any]] = field(default_factory=list)


def job_views(
    info: dict[str, Any], schedules: list[dict[str, Any]], sensors: list[dict[str, Any]]
) -> list[JobView]:
    """The jobs of ``info`` (instance info) in location order, each with the instigators aimed at it."""
    views = []
    for loc in info["code_locations"]:
        details = {d["name"]: d for d in loc.get("job_details", [])}
        for name in loc["jobs"]:
            detail = details.get(name, {})
            views.append(
                JobView(
                    name=name,
                    location=loc["name"],
                    description=detail.get("description"),
                    tags=dict(detail.get("tags") or {}),
                    schedules=[
                        s for s in schedules if s["job_name"] == name and s["code_location"] == loc["name"]
                    ],
                    sensors=[
                        s for s in sensors if s["job_name"] == name and s["code_location"] == loc["name"]
                    ],
                )
            )
    return views


async def jobs(request: Request) -> Response:
    gateway = ui_of(request).gateway
    info = await gateway.call(lambda c: c.instance_info())
    schedules = await gateway.call(lambda c: c.list_instigators("schedule"))
    sensors = await gateway.call(lambda c: c.list_instigators("sensor"))
    views = job_views(info, schedules, sensors)
    names = [v.name for v in views]
    latest = await gateway.call(
        lambda c: {name: c.list_runs(job_name=name, limit=LATEST_RUNS)[0] for name in names}
    )
    for view in views:
        view.runs = latest.get(view.name, [])
    return await page(request, "jobs.html", active="jobs", jobs=views, locations=info["code_locations"])


routes = [Route("/jobs", jobs, name="jobs")]
