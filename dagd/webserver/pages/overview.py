"""Overview: the queue at a glance (use of its limits, pause/resume) and the two pictures.

The pictures are drawn from the most recent runs plus every unfinished one, so a run that has
been queued for hours still counts in the last hour.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dagd.timefmt import utcnow
from dagd.webserver import charts
from dagd.webserver.display import IN_PROGRESS_STATUSES, QUEUED_STATUSES
from dagd.webserver.render import page, redirect, ui_of

RECENT_RUNS = 500
GANTT_RUNS = 30


def merge_runs(
    recent: Sequence[dict[str, Any]], unfinished: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Both lists as one, each run once (the unfinished list's copy is the fresher)."""
    by_id = {run["run_id"]: run for run in recent}
    by_id.update((run["run_id"], run) for run in unfinished)
    return list(by_id.values())


async def overview(request: Request) -> Response:
    gateway = ui_of(request).gateway
    queue = await gateway.call(lambda c: c.queue_status())
    recent, _ = await gateway.call(lambda c: c.list_runs(limit=RECENT_RUNS))
    unfinished, _ = await gateway.call(
        lambda c: c.list_runs(statuses=[*QUEUED_STATUSES, *IN_PROGRESS_STATUSES], limit=1000)
    )
    now = utcnow()
    spans = charts.spans(merge_runs(recent, unfinished))
    newest = sorted(spans, key=lambda s: s.created, reverse=True)[:GANTT_RUNS]
    return await page(
        request,
        "overview.html",
        active="overview",
        live_url="/live",
        queue=queue,
        queue_chart=charts.queue_chart(charts.queue_series(spans, now)),
        gantt=charts.gantt_chart(newest, now),
        gantt_count=len(newest),
    )


async def pause(request: Request) -> Response:
    await ui_of(request).gateway.call(lambda c: c.set_queue_paused(True))
    return redirect("/?done=paused")


async def resume(request: Request) -> Response:
    await ui_of(request).gateway.call(lambda c: c.set_queue_paused(False))
    return redirect("/?done=resumed")


routes = [
    Route("/", overview, name="overview"),
    Route("/queue/pause", pause, methods=["POST"]),
    Route("/queue/resume", resume, methods=["POST"]),
]
