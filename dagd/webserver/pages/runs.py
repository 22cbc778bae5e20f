"""Runs: the list (tabs, filters, paging), one run (timeline, why queued, logs), terminate."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dagd.errors import InvalidArgument
from dagd.webserver.display import FINISHED_STATUSES, TAB_TITLES, TABS
from dagd.webserver.forms import parse_tag_filter
from dagd.webserver.i18n import gettext
from dagd.webserver.render import page, redirect, ui_of

PAGE_SIZE = 50
REFRESH_HEADER = "x-dagd-refresh"  # sent by static/app.js when it refreshes a page in place
ALL_STATUSES = tuple(s for statuses in TABS.values() for s in statuses)


async def runs_list(request: Request) -> Response:
    gateway = ui_of(request).gateway
    query = request.query_params
    tab = query.get("tab", "all")
    if tab not in TABS and tab != "all":
        tab = "all"
    allowed = TABS.get(tab, ALL_STATUSES)
    status = query.get("status", "")
    if status and status not in allowed:
        shown = TAB_TITLES.get(tab, "All")
        raise InvalidArgument(f"status {status[:40]!r} is not one of the {shown} tab's: {', '.join(allowed)}")
    job = query.get("job", "").strip()
    tag_text = query.get("tag", "").strip()
    tags = parse_tag_filter([tag_text])
    before = query.get("before", "")
    statuses = [status] if status else ([] if tab == "all" else list(allowed))
    runs, next_token = await gateway.call(
        lambda c: c.list_runs(statuses=statuses, job_name=job, tags=tags, limit=PAGE_SIZE, page_token=before)
    )
    queue = await gateway.call(lambda c: c.queue_status())
    return await page(
        request,
        "runs.html",
        active="runs",
        live_url="/live",
        tab=tab,
        tabs=[("all", gettext("All")), *((key, gettext(title)) for key, title in TAB_TITLES.items())],
        queue=queue,
        counts={"queued": queue["queued"], "in_progress": queue["in_progress"]},
        statuses=allowed,
        status=status,
        job=job,
        tag=tag_text,
        runs=runs,
        next_token=next_token,
        paged=bool(before),
        jobs=await _job_names(request),
    )


async def _job_names(request: Request) -> list[str]:
    info = await ui_of(request).gateway.call(lambda c: c.instance_info())
    return sorted({job for loc in info["code_locations"] for job in loc["jobs"]})


async def run_detail(request: Request) -> Response:
    gateway = ui_of(request).gateway
    run_id = request.path_params["run_id"]
    run, events = await gateway.call(lambda c: c.get_run(run_id))
    why: dict[str, Any] | None = None
    if run["status"] == "QUEUED":
        why = await gateway.call(lambda c: c.explain_run(run_id))
    lines: Sequence[Mapping[str, Any]] = []
    last_seq = 0
    # A refresh replaces only the live parts; the log there is already following by itself.
    if not request.headers.get(REFRESH_HEADER):
        lines, last_seq, _ = await gateway.call(lambda c: c.read_logs(run_id, after_seq=0, limit=1000))
    return await page(
        request,
        "run.html",
        active="runs",
        live_url=f"/live?run={quote(run_id, safe='')}",
        run=run,
        events=events,
        why=why,
        log_lines=lines,
        last_seq=last_seq,
        finished=run["status"] in FINISHED_STATUSES,
        log_filter=request.query_params.get("q", ""),
    )


async def run_logs(request: Request) -> Response:
    """New log lines after ``?after=SEQ`` as JSON, for the run page's live log."""
    run_id = request.path_params["run_id"]
    try:
        after = max(int(request.query_params.get("after", "0")), 0)
    except ValueError:
        raise InvalidArgument("after must be an integer") from None
    lines, last_seq, status = await ui_of(request).gateway.call(
        lambda c: c.read_logs(run_id, after_seq=after, limit=1000)
    )
    return JSONResponse(
        {
            "lines": lines,
            "last_seq": last_seq,
            "status": status,
            "finished": status in FINISHED_STATUSES,
            "more": len(lines) == 1000,
        }
    )


async def terminate(request: Request) -> Response:
    run_id = request.path_params["run_id"]
    await ui_of(request).gateway.call(lambda c: c.terminate(run_id))
    return redirect(f"/runs/{quote(run_id, safe='')}?done=terminated")


routes = [
    Route("/runs", runs_list, name="runs"),
    Route("/runs/{run_id}", run_detail, name="run"),
    Route("/runs/{run_id}/logs", run_logs, name="run_logs"),
    Route("/runs/{run_id}/terminate", terminate, methods=["POST"], name="terminate"),
]
