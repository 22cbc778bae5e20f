"""The pictures: queued and in-progress runs over the last hour, and a Gantt timeline of recent runs.

Both are server-rendered inline SVG, built here from run records (the API's run dicts) and ``now``,
so they are pure and testable without a browser. Every piece of text that comes from a run (job
names, run ids) is escaped; colours come from CSS classes in ``static/app.css``, never from data.

A run is *waiting* from submission until its worker started (queued, or being launched), and *in
progress* from then until it ended (or now). The queue chart counts, for each minute, the runs that
were waiting or in progress at any time during it; its legend says so and gives each line's peak,
never a "now" value (the tiles above it say what is queued and in progress now, and a run that
ended a few seconds ago still counts in the last minute).

Text is in the request's language (:mod:`dagd.webserver.i18n`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from markupsafe import Markup, escape

from dagd.webserver.display import duration, parse_time, status_class
from dagd.webserver.i18n import gettext, units


@dataclass(frozen=True)
class Span:
    """When one run waited and ran."""

    run_id: str
    job_name: str
    status: str
    created: datetime
    started: datetime | None
    ended: datetime | None

    def waiting(self, now: datetime) -> tuple[datetime, datetime]:
        return self.created, self.started or self.ended or now

    def running(self, now: datetime) -> tuple[datetime, datetime] | None:
        if self.started is None:
            return None
        return self.started, self.ended or now


def spans(runs: Iterable[Mapping[str, Any]]) -> list[Span]:
    """Runs as spans; a run without a creation time (never, from the API) is left out."""
    out = []
    for run in runs:
        created = parse_time(run.get("created_at"))
        if created is None:
            continue
        out.append(
            Span(
                run_id=str(run["run_id"]),
                job_name=str(run.get("job_name", "")),
                status=str(run.get("status", "")),
                created=created,
                started=parse_time(run.get("started_at")),
                ended=parse_time(run.get("ended_at")),
            )
        )
    return out


@dataclass(frozen=True)
class Bucket:
    start: datetime
    queued: int
    in_progress: int


def _overlaps(interval: tuple[datetime, datetime], start: datetime, end: datetime) -> bool:
    a, b = interval
    b = max(b, a + timedelta(microseconds=1))  # an instant still counts in the bucket it falls in
    return a < end and b > start


def queue_series(
    items: Sequence[Span], now: datetime, *, window: timedelta = timedelta(hours=1), buckets: int = 60
) -> list[Bucket]:
    """For each of ``buckets`` slices of the last ``window``: how many runs waited, and ran, in it."""
    step = window / buckets
    origin = now - window
    out = []
    for index in range(buckets):
        start = origin + step * index
        end = start + step
        queued = sum(1 for s in items if _overlaps(s.waiting(now), start, end))
        running = sum(1 for s in items if (r := s.running(now)) is not None and _overlaps(r, start, end))
        out.append(Bucket(start=start, queued=queued, in_progress=running))
    return out


def nice_ceiling(value: int) -> int:
    """The axis maximum: ``value`` rounded up to 1, 2 or 5 times a power of ten (at least 1)."""
    if value <= 1:
        return 1
    magnitude = 10 ** math.floor(math.log10(value))
    for factor in (1, 2, 5, 10):
        if factor * magnitude >= value:
            return factor * magnitude
    return 10 * magnitude  # unreachable: factor 10 always fits


def _f(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _step_path(values: Sequence[int], x0: float, step: float, y: Any) -> str:
    points = []
    for index, value in enumerate(values):
        x = x0 + index * step
        points.append(f"{_f(x)},{_f(y(value))} {_f(x + step)},{_f(y(value))}")
    return "M" + " L".join(points)


def queue_chart(series: Sequence[Bucket], *, width: int = 720, height: int = 200) -> Markup:
    """Two step lines (queued, in progress) over the last hour, with a labelled y axis and a legend."""
    left, right, top, bottom = 36, 10, 24, 22
    plot_w, plot_h = width - left - right, height - top - bottom
    peak_queued = max([b.queued for b in series] + [0])
    peak_running = max([b.in_progress for b in series] + [0])
    peak = max(peak_queued, peak_running)
    ymax = nice_ceiling(peak)

    def y(value: int) -> float:
        return top + plot_h - (value / ymax) * plot_h

    step = plot_w / max(len(series), 1)
    label = gettext("Queued and in-progress runs, last hour; peak %(peak)s") % {"peak": peak}
    title = gettext("Queued and in-progress runs over the last hour (peak %(peak)s)") % {"peak": peak}
    parts = [
        f'<svg class="chart queue-chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{escape(label)}">',
        f"<title>{escape(title)}</title>",
    ]
    for tick in sorted({0, ymax // 2, ymax}):
        ty = y(tick)
        parts.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{_f(ty)}" y2="{_f(ty)}"/>')
        parts.append(f'<text class="axis" x="{left - 6}" y="{_f(ty + 4)}" text-anchor="end">{tick}</text>')
    minute = units().m
    labels = [f"-60{minute}", f"-45{minute}", f"-30{minute}", f"-15{minute}", gettext("now")]
    for index, label in enumerate(labels):
        tx = left + plot_w * index / (len(labels) - 1)
        parts.append(
            f'<text class="axis" x="{_f(tx)}" y="{height - 6}" text-anchor="middle">{escape(label)}</text>'
        )
    if series:
        parts.append(
            f'<path class="line queued" d="{_step_path([b.queued for b in series], left, step, y)}"/>'
        )
        running = [b.in_progress for b in series]
        parts.append(f'<path class="line in-progress" d="{_step_path(running, left, step, y)}"/>')
    waiting = gettext("waiting during the minute (peak %(peak)s)") % {"peak": peak_queued}
    running_text = gettext("in progress during the minute (peak %(peak)s)") % {"peak": peak_running}
    parts.append(
        f'<g class="legend"><rect class="swatch queued" x="{left}" y="6" width="10" height="10"/>'
        f'<text x="{left + 14}" y="15" data-legend="queued">{escape(waiting)}</text>'
        f'<rect class="swatch in-progress" x="{left + 290}" y="6" width="10" height="10"/>'
        f'<text x="{left + 304}" y="15" data-legend="in-progress">{escape(running_text)}</text></g>'
    )
    parts.append("</svg>")
    return Markup("".join(parts))


def _clock(when: datetime) -> str:
    return when.strftime("%H:%M:%S")


def gantt_chart(
    items: Sequence[Span], now: datetime, *, width: int = 960, row_height: int = 18, link: str = "/runs/"
) -> Markup:
    """One row per run, oldest at the top: a light bar while waiting, a coloured bar while running.

    Each row links to the run's page and carries a tooltip (job, run id, status, durations).
    """
    label_w, right, top, axis_h = 230, 10, 6, 20
    rows = sorted(items, key=lambda s: (s.created, s.run_id))
    if not rows:
        empty = escape(gettext("No runs yet."))
        return Markup(
            f'<svg class="chart gantt" viewBox="0 0 {width} 40" width="100%" role="img" '
            f'aria-label="{empty}"><text class="axis" x="10" y="24">{empty}</text></svg>'
        )
    start = min(s.created for s in rows)
    end = max([now, *(s.ended for s in rows if s.ended)])
    if (end - start).total_seconds() < 60:
        start = end - timedelta(seconds=60)
    span_s = (end - start).total_seconds()
    plot_w = width - label_w - right
    height = top + len(rows) * row_height + axis_h

    def x(when: datetime) -> float:
        return label_w + plot_w * (when - start).total_seconds() / span_s

    parts = [
        f'<svg class="chart gantt" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{escape(gettext("Timeline of the %(count)s most recent runs") % {"count": len(rows)})}">'
    ]
    for index in range(5):
        when = start + (end - start) * index / 4
        tx = x(when)
        parts.append(f'<line class="grid" x1="{_f(tx)}" x2="{_f(tx)}" y1="{top}" y2="{height - axis_h}"/>')
        anchor = "start" if index == 0 else "end" if index == 4 else "middle"
        parts.append(
            f'<text class="axis" x="{_f(tx)}" y="{height - 6}" text-anchor="{anchor}">{_clock(when)}</text>'
        )
    for index, span in enumerate(rows):
        ry = top + index * row_height
        wait_a, wait_b = span.waiting(now)
        running = span.running(now)
        facts = {
            "job": span.job_name,
            "run": span.run_id,
            "status": span.status,
            "waited": duration((wait_b - wait_a).total_seconds()),
        }
        if running:
            facts["ran"] = duration((running[1] - running[0]).total_seconds())
            tip = gettext("%(job)s %(run)s: %(status)s; waited %(waited)s, ran %(ran)s") % facts
        else:
            tip = gettext("%(job)s %(run)s: %(status)s; waited %(waited)s") % facts
        label = f"{span.job_name} {span.run_id[:8]}"
        if len(label) > 34:
            label = label[:33] + "…"
        parts.append(f'<a href="{escape(link + quote(span.run_id, safe=""))}"><g class="row">')
        parts.append(f"<title>{escape(tip)}</title>")
        parts.append(f'<text class="label" x="4" y="{ry + row_height - 5}">{escape(label)}</text>')
        wx, ww = x(wait_a), max(x(wait_b) - x(wait_a), 1.5)
        parts.append(
            f'<rect class="bar wait" x="{_f(wx)}" y="{ry + 3}" width="{_f(ww)}" height="{row_height - 6}"/>'
        )
        if running:
            bx, bw = x(running[0]), max(x(running[1]) - x(running[0]), 2.0)
            parts.append(
                f'<rect class="bar {status_class(span.status)}" x="{_f(bx)}" y="{ry + 2}" '
                f'width="{_f(bw)}" height="{row_height - 4}"/>'
            )
        parts.append("</g></a>")
    parts.append("</svg>")
    return Markup("".join(parts))
