"""How times, durations and statuses read on the pages (pure; also the templates' filters)."""

from __future__ import annotations

from datetime import datetime, timezone

from dagd.runs import model
from dagd.webserver.i18n import N_, datetime_text, gettext, units


def _names(group: frozenset[model.RunStatus]) -> tuple[str, ...]:
    return tuple(status.value for status in model.RunStatus if status in group)


# The run model's groups (dagd/runs/model.py decides them), as the API's status names in lifecycle
# order: a tab lists exactly the statuses its count counts.
QUEUED_STATUSES = _names(model.QUEUED_STATUSES)
IN_PROGRESS_STATUSES = _names(model.IN_PROGRESS_STATUSES)
FINISHED_STATUSES = _names(model.FINISHED_STATUSES)
# The Runs page's tabs: which statuses each shows.
TABS: dict[str, tuple[str, ...]] = {
    "queued": QUEUED_STATUSES,
    "in_progress": IN_PROGRESS_STATUSES,
    "finished": FINISHED_STATUSES,
}
TAB_TITLES = {"queued": N_("Queued"), "in_progress": N_("In progress"), "finished": N_("Finished")}


def parse_time(value: str | None) -> datetime | None:
    """An RFC 3339 string from the API (``...Z``) as an aware UTC datetime; None when unset or bad."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)


def duration(seconds: float | None) -> str:
    """``850ms``, ``42s``, ``3m 07s``, ``2h 05m``, ``3d 4h``: short, and exact enough to compare.

    In Japanese: ``850ミリ秒``, ``42秒``, ``3分07秒``, ``2時間05分``, ``3日4時間``.
    """
    if seconds is None:
        return "-"
    u = units()
    if seconds < 0:
        seconds = 0
    if seconds < 1:
        return f"{int(seconds * 1000)}{u.ms}"
    if seconds < 60:
        return f"{seconds:.0f}{u.s}" if seconds >= 10 else f"{seconds:.1f}{u.s}"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}{u.m}{u.sep}{secs:02d}{u.s}"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}{u.h}{u.sep}{minutes:02d}{u.m}"
    days, hours = divmod(hours, 24)
    return f"{days}{u.d}{u.sep}{hours}{u.h}"


def age(value: str | None, now: datetime) -> str:
    """``12s ago`` for a past RFC 3339 time; ``in 3m 00s`` for a future one; ``-`` when unset."""
    when = parse_time(value)
    if when is None:
        return "-"
    delta = (now - when).total_seconds()
    if delta >= 0:
        return gettext("%(duration)s ago") % {"duration": duration(delta)}
    return gettext("in %(duration)s") % {"duration": duration(-delta)}


def between(start: str | None, end: str | None, now: datetime) -> str:
    """How long something took (or has taken so far, when ``end`` is unset)."""
    began = parse_time(start)
    if began is None:
        return "-"
    finished = parse_time(end) or now
    return duration((finished - began).total_seconds())


def clock(value: str | None) -> str:
    """``2026-05-01 12:00:03Z``: the API's UTC time, shortened for tables (``2026/05/01 12:00:03 UTC`` in
    Japanese)."""
    when = parse_time(value)
    return "-" if when is None else datetime_text(when)


def clock_ms(value: str | None) -> str:
    """``2026-05-01 12:00:03.123Z``: a log line's time, to the millisecond (the same in every language,
    as ``static/app.js`` writes the lines it appends)."""
    when = parse_time(value)
    return "-" if when is None else when.strftime("%Y-%m-%d %H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def status_class(status: str | None) -> str:
    """The CSS class of a status badge (a fixed set, so a status can never inject a class)."""
    known = {*_names(frozenset(model.RunStatus)), "RUNNING", "STOPPED", "SKIPPED"}
    return f"st-{status.lower()}" if status in known else "st-other"
