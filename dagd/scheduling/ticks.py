"""Schedule ticks: the instants a cron schedule in a timezone fires at, and the catch-up plan.

Pure functions of their inputs: no clock reads, no I/O. The scheduler daemon and
``dagctl schedules preview`` pass ``now``/``after`` explicitly. Datetimes passed in must be
timezone-aware (any zone); datetimes returned are UTC.

How ticks are found: the cron is matched against *local wall-clock time* in the schedule's zone.
croniter only ever sees naive local dates (to pick the days its day fields match); this module maps
each matching wall time to the UTC instants it fires at (``_instants``/``_to_utc``, where the DST
rules live):

- a wall time that does not exist (spring-forward gap) fires at the end of the gap, the first
  valid instant after it: 02:30 in a 02:00->03:00 gap fires at 03:00. Several cron times in one gap
  (and a cron time at the gap's end) collapse into that one tick;
- a wall time that exists twice (fall-back overlap) fires in both passes if the cron's hour field
  matches every hour (``0 * * * *``, ``@hourly``, ``*/15 * * * *``): an hourly job keeps running
  hourly through the repeated hour, as cron's wildcard jobs and Dagster's hourly schedules do. Any
  other cron (fixed hours: ``30 1 * * *``, ``0 */2 * * *``) fires once, at the later instant
  (fold=1), as Dagster does.

On a steady day that mapping is a fixed shift, so ticks come out in order. A transition day's
instants are computed and sorted as a whole (``_transition_day_ticks``); no day's instants
interleave with another day's, so collapsed duplicates are adjacent and every function returns
strictly increasing UTC instants.
docs/schedules.md walks through examples.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from itertools import islice, takewhile
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

UTC = timezone.utc

#: Upper bound for ``max_catchup_runs``: runs a catch-up may launch at once.
MAX_CATCHUP_RUNS = 1_000
#: At most this many skipped ticks are listed in a plan (the most recent); the rest are counted.
SKIPPED_LIST_LIMIT = 1_000
#: Upper bound for ``preview(count=...)``.
MAX_PREVIEW_COUNT = 1_000

_ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_FIELDS = (
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31"),
    ("month", "1-12 or jan-dec"),
    ("day-of-week", "0-7 or sun-sat"),
)
_FIELD_NAMES = "minute hour day-of-month month day-of-week"
# Split like croniter does: only ASCII whitespace separates fields.
_WORD = re.compile(r"\S+", re.ASCII)
# croniter's Jenkins-style H (hashed) and R (random) values: not reproducible without a seed.
_HASHED = re.compile(r"^[hr](\(|/|$)", re.IGNORECASE)
# "a-a" or "a-a/step" in one comma-separated item.
_EQUAL_RANGE = re.compile(r"^(\w+)-\1(?:/\d+)?$", re.IGNORECASE)
_MINUTE = timedelta(minutes=1)
_MICROSECOND = timedelta(microseconds=1)


# --- validation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Cron:
    day_expr: str  # "0 0 <dom> <month> <dow>": croniter walks the local dates that match
    every_day: bool  # the day fields match every date (skip croniter: it is slow per call)
    minutes: tuple[int, ...]  # sorted minutes after local midnight (hour * 60 + minute) that match
    every_hour: bool  # the hour field matches all 24 hours: repeated wall times fire in both passes


def validate_cron(expr: str) -> None:
    """Raise ``ValueError`` with a one-line reason unless ``expr`` is a usable 5-field cron.

    Accepted: 5 fields (minute hour day-of-month month day-of-week, croniter syntax including
    names, ranges, steps, ``L``, ``W`` and ``#``) and the aliases @hourly, @daily, @midnight,
    @weekly, @monthly, @yearly and @annually. Refused: 6/7-field crons (seconds, years), hashed or
    random (``H``/``R``) values, and crons whose day fields match no date at all (``0 0 30 2 *``).
    """
    _parse(expr)


def validate_timezone(name: str) -> ZoneInfo:
    """The IANA zone called ``name``, or ``ValueError("unknown timezone 'Mars/Base'")``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"unknown timezone {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # OSError: a directory ("America") or an over-long name.
        raise ValueError(f"unknown timezone {name!r}") from None


def _parse(expr: str) -> _Cron:
    if not isinstance(expr, str):
        raise ValueError(f"cron schedule must be a string, got {type(expr).__name__}")
    return _parse_text(expr)


@lru_cache(maxsize=256)
def _parse_text(expr: str) -> _Cron:
    text = expr.strip()
    if text.startswith("@"):
        if text.lower() not in _ALIASES:
            raise ValueError(f"cron schedule {expr!r}: unknown alias; use one of {', '.join(_ALIASES)}")
        text = _ALIASES[text.lower()]
    fields = _WORD.findall(text)
    if len(fields) in (6, 7):
        raise ValueError(
            f"cron schedule {expr!r}: {len(fields)} fields given, but seconds and years are not "
            f"supported; use 5 fields ({_FIELD_NAMES})"
        )
    if len(fields) != 5:
        raise ValueError(f"cron schedule {expr!r}: expected 5 fields ({_FIELD_NAMES}), got {len(fields)}")
    for index, field in enumerate(fields):
        _check_field(expr, index, field)
    fields = [_single_value_ranges(field) for field in fields]
    try:
        expanded, _ = croniter.expand(" ".join(fields))
    except CroniterError as exc:  # a combination no single field shows
        raise ValueError(f"cron schedule {expr!r}: {_croniter_reason(exc)}") from None
    minutes = range(60) if expanded[0] == ["*"] else [int(m) for m in expanded[0]]
    hours = range(24) if expanded[1] == ["*"] else [int(h) for h in expanded[1]]
    cron = _Cron(
        day_expr=f"0 0 {fields[2]} {fields[3]} {fields[4]}",
        every_day=all(field == ["*"] for field in expanded[2:]),
        minutes=tuple(sorted({h * 60 + m for h in hours for m in minutes})),
        every_hour=len(hours) == 24,
    )
    try:
        croniter(cron.day_expr, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterBadDateError:
        raise ValueError(f"cron schedule {expr!r}: never fires (its day fields match no date)") from None
    return cron


def _check_field(expr: str, index: int, field: str) -> None:
    """Validate one field alone so the error can name it."""
    name, allowed = _FIELDS[index]
    if any(_HASHED.match(item) for item in field.split(",")):
        raise ValueError(f"cron schedule {expr!r}: hashed/random values (H, R) are not supported in {name}")
    probe = ["*"] * 5
    probe[index] = field
    try:
        croniter.expand(" ".join(probe))
    except CroniterError as exc:
        message = str(exc)
        if "out of range" in message or "out of bands" in message or "negative" in message:
            reason = f"{name} must be {allowed}"
        elif "step" in message:
            reason = f"invalid {name} field {field!r}: a step must be a whole number >= 1"
        else:
            reason = f"invalid {name} field {field!r}"
            detail = _croniter_reason(exc)
            if detail != "not acceptable":
                reason += f" ({detail})"
        raise ValueError(f"cron schedule {expr!r}: {reason}") from None


def _single_value_ranges(field: str) -> str:
    """Rewrite "3-3" (and "3-3/2") as "3", as cron does; croniter reads it as the whole cycle."""
    return ",".join(_EQUAL_RANGE.sub(r"\1", item) for item in field.split(","))


def _croniter_reason(exc: Exception) -> str:
    """croniter's message minus its "[expr] is not acceptable" framing and any traceback."""
    message = str(exc).strip()
    if "\n" in message or not message:
        return "not acceptable"
    message = re.sub(r"^\[[^\]]*\]\s*", "", message)
    message = re.sub(r"^is not acceptable[,.]?\s*", "", message)
    message = message.split("  Cron:")[0].strip().rstrip(".")
    return message[:1].lower() + message[1:] if message else "not acceptable"


def _aware_utc(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
    return value.astimezone(UTC)


# --- wall time <-> instants (the DST rules) -----------------------------------------------------


def _wall(instant: datetime, zone: ZoneInfo) -> datetime:
    """The naive local wall time at ``instant``."""
    return instant.astimezone(zone).replace(tzinfo=None, fold=0)


def _to_utc(wall: datetime, zone: ZoneInfo) -> datetime:
    """The instant a naive local wall time fires at when it fires once: the later of two passes."""
    return _instants(wall, zone)[-1]


def _instants(wall: datetime, zone: ZoneInfo) -> tuple[datetime, ...]:
    """Every instant a naive local wall time happens at, increasing; a gap's wall time, its end.

    One instant, or two in a fall-back overlap (the first and the second pass).
    """
    early = wall.replace(tzinfo=zone, fold=0)
    late = wall.replace(tzinfo=zone, fold=1)
    if early.utcoffset() == late.utcoffset():
        return (early.astimezone(UTC),)
    candidates = sorted(c.astimezone(UTC) for c in (early, late))
    real = tuple(c for c in candidates if _wall(c, zone) == wall)
    if real:
        return real  # fall-back overlap: the wall time happens twice
    # Spring-forward gap: the wall time never happens; fire when the gap ends.
    return (_transition(candidates[0], candidates[1], zone),)


def _transition(before: datetime, after: datetime, zone: ZoneInfo) -> datetime:
    """The first instant in (before, after] whose UTC offset differs from ``before``'s."""
    offset = before.astimezone(zone).utcoffset()
    low, high = int(before.timestamp()), int(after.timestamp())
    while high - low > 1:  # zone offsets and transitions are whole seconds
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == offset:
            low = middle
        else:
            high = middle
    return datetime.fromtimestamp(high, UTC)


@lru_cache(maxsize=4096)
def _steady_offset(zone: ZoneInfo, day: date) -> timedelta | None:
    """The zone's offset on ``day`` if nothing happens around it, else None (a transition day).

    Steady means every wall time from 23:00 the day before to 00:00 the day after exists exactly
    once, at one offset; then the day's wall times map onto a 24-hour stretch of instants that no
    other day's wall time (not even a gap's collapsed tick) maps into. Checked hourly: zones do not
    change offset and back within one hour.
    """
    midnight = datetime.combine(day, time())
    offsets = set()
    for hour in range(-1, 25):
        wall = midnight + timedelta(hours=hour)
        offset = wall.replace(tzinfo=zone, fold=0).utcoffset()
        if offset is None or offset != wall.replace(tzinfo=zone, fold=1).utcoffset():
            return None
        offsets.add(offset)
    return offsets.pop() if len(offsets) == 1 else None


# --- walking ticks ------------------------------------------------------------------------------


def _day_ticks(
    cron: _Cron,
    zone: ZoneInfo,
    day: date,
    low: datetime | None = None,
    high: datetime | None = None,
    descending: bool = False,
) -> Iterator[datetime]:
    """The instants of ``day``'s cron wall times in order (gap ticks may repeat), built lazily.

    On a steady day only those in (low, high] are produced; callers filter the others.
    """
    offset = _steady_offset(zone, day)
    if offset is None:
        ticks = _transition_day_ticks(cron, zone, day)
        return reversed(ticks) if descending else iter(ticks)
    base = (datetime.combine(day, time()) - offset).replace(tzinfo=UTC)
    minutes = cron.minutes[_between(cron, base, low, high)]
    return (base + timedelta(minutes=m) for m in (reversed(minutes) if descending else minutes))


def _between(cron: _Cron, base: datetime, low: datetime | None, high: datetime | None) -> slice:
    """The cron minutes m with low < base + m <= high (either bound optional)."""
    start = 0 if low is None else bisect_right(cron.minutes, (low - base) // _MINUTE)
    stop = len(cron.minutes) if high is None else bisect_right(cron.minutes, (high - base) // _MINUTE)
    return slice(start, max(start, stop))


@lru_cache(maxsize=64)
def _transition_day_ticks(cron: _Cron, zone: ZoneInfo, day: date) -> tuple[datetime, ...]:
    """A transition day's ticks, increasing, distinct (gap times collapse into one tick).

    An every-hour cron fires a repeated wall time in both passes, so its instants are not in wall
    time order (01:15 EDT comes before 01:00 EST): sorted here, once per day.
    """
    midnight = datetime.combine(day, time())
    walls = (midnight + timedelta(minutes=m) for m in cron.minutes)
    if cron.every_hour:
        return tuple(sorted({instant for wall in walls for instant in _instants(wall, zone)}))
    return tuple(sorted({_to_utc(wall, zone) for wall in walls}))


def _days(cron: _Cron, first: date, backward: bool = False) -> Iterator[date]:
    """Local dates the cron's day fields match, from ``first`` (inclusive) on or, backward, down."""
    step = timedelta(days=-1 if backward else 1)
    if cron.every_day:
        day = first
        while date.min < day < date.max:
            yield day
            day += step
        return
    start = datetime.combine(first - step, time())
    walker = croniter(cron.day_expr, start)
    while True:
        try:
            found = walker.get_prev(datetime) if backward else walker.get_next(datetime)
        except (CroniterBadDateError, OverflowError):  # no match within 50 years, or year 1/9999
            return
        yield found.date()


def _first_day(zone: ZoneInfo, after: datetime) -> date:
    """A local date such that no wall time before it fires after ``after``."""
    day = _wall(after, zone).date()
    # The wall time of `after` may be the first of two (fall-back), whose tick is later still.
    while _to_utc(datetime.combine(day, time()), zone) > after:
        day -= timedelta(days=1)
    return day


def _last_day(zone: ZoneInfo, until: datetime) -> date:
    """A local date such that no wall time after it fires at or before ``until``."""
    day = _wall(until, zone).date()
    # The next midnight may happen twice; its first pass fires for every-hour crons.
    while _instants(datetime.combine(day + timedelta(days=1), time()), zone)[0] <= until:
        day += timedelta(days=1)
    return day


def _forward(cron: _Cron, zone: ZoneInfo, after: datetime) -> Iterator[datetime]:
    """Ticks strictly after ``after``, increasing, without end."""
    last = after
    for day in _days(cron, _first_day(zone, after)):
        for tick in _day_ticks(cron, zone, day, low=after):
            if tick > last:
                yield tick
                last = tick


def _backward(cron: _Cron, zone: ZoneInfo, until: datetime) -> Iterator[datetime]:
    """Ticks at or before ``until``, decreasing, without end."""
    last = until + _MICROSECOND
    for day in _days(cron, _last_day(zone, until), backward=True):
        for tick in _day_ticks(cron, zone, day, high=until, descending=True):
            if tick < last:
                yield tick
                last = tick


def _count(cron: _Cron, zone: ZoneInfo, low: datetime, high: datetime) -> int:
    """How many ticks fall in (low, high]: a bisect per steady day, not one step per tick."""
    if high <= low:
        return 0
    last_day = _last_day(zone, high)
    total = 0
    transition_ticks: set[datetime] = set()  # a set: gap ticks collapse
    for day in _days(cron, _first_day(zone, low)):
        if day > last_day:
            break
        offset = _steady_offset(zone, day)
        if offset is None:
            transition_ticks.update(t for t in _day_ticks(cron, zone, day) if low < t <= high)
            continue
        window = _between(cron, (datetime.combine(day, time()) - offset).replace(tzinfo=UTC), low, high)
        total += window.stop - window.start
    return total + len(transition_ticks)


# --- public API ---------------------------------------------------------------------------------


def next_tick(cron: str, tz: str, after: datetime) -> datetime:
    """The first tick strictly after ``after`` (UTC)."""
    ticks = preview(cron, tz, after, 1)
    if not ticks:
        raise ValueError(f"cron schedule {cron!r} has no tick after {after.isoformat()}")
    return ticks[0]


def ticks_between(
    cron: str, tz: str, start_exclusive: datetime, end_inclusive: datetime, limit: int | None = None
) -> list[datetime]:
    """Ticks in (start_exclusive, end_inclusive], increasing, the first ``limit`` if given.

    Unbounded without ``limit``: a minutely schedule over a year is 525,600 ticks.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    parsed, zone = _parse(cron), validate_timezone(tz)
    start = _aware_utc(start_exclusive, "start_exclusive")
    end = _aware_utc(end_inclusive, "end_inclusive")
    ticks = takewhile(lambda tick: tick <= end, _forward(parsed, zone, start))
    return list(ticks if limit is None else islice(ticks, limit))


def preview(cron: str, tz: str, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` ticks strictly after ``after`` (``dagctl schedules preview``)."""
    if not 0 <= count <= MAX_PREVIEW_COUNT:
        raise ValueError(f"count must be between 0 and {MAX_PREVIEW_COUNT}, got {count}")
    parsed, zone = _parse(cron), validate_timezone(tz)
    return list(islice(_forward(parsed, zone, _aware_utc(after, "after")), count))


@dataclass(frozen=True)
class CatchUpPlan:
    """What the scheduler does with the ticks that came due since it last looked.

    ``to_run``: the latest due ticks, oldest first, at most ``max_catchup_runs``.
    ``skipped``: the most recent of the other due ticks, oldest first, at most SKIPPED_LIST_LIMIT.
    ``skipped_count``: all skipped ticks, exact; more than ``len(skipped)`` after a long outage.
    """

    to_run: list[datetime]
    skipped: list[datetime]
    skipped_count: int

    @property
    def skipped_truncated(self) -> bool:
        return self.skipped_count > len(self.skipped)


def plan_catch_up(
    cron: str,
    tz: str,
    last_tick: datetime | None,
    now: datetime,
    max_catchup_runs: int = 1,
    start: datetime | None = None,
) -> CatchUpPlan:
    """Split the ticks due in (last_tick, now] into the ones to run and the ones to skip.

    ``last_tick`` is the latest tick already handled; ``start`` is when the schedule was (last)
    started. Ticks are due after the later of the two, so a schedule never fires for a time before
    it was started, and with neither the plan is empty (a new schedule waits for its next tick).
    Only the latest ``max_catchup_runs`` due ticks run (default 1: after downtime, only the latest
    missed tick runs); the older ones are skipped. Work is bounded: at most
    ``max_catchup_runs + SKIPPED_LIST_LIMIT`` ticks are listed, the rest are counted a day at a time.
    """
    if (
        isinstance(max_catchup_runs, bool)
        or not isinstance(max_catchup_runs, int)
        or not 1 <= max_catchup_runs <= MAX_CATCHUP_RUNS
    ):
        raise ValueError(
            f"max_catchup_runs must be between 1 and {MAX_CATCHUP_RUNS}, got {max_catchup_runs!r}"
        )
    parsed, zone = _parse(cron), validate_timezone(tz)
    now = _aware_utc(now, "now")
    floors = [
        _aware_utc(t, label) for t, label in ((last_tick, "last_tick"), (start, "start")) if t is not None
    ]
    floor = max(floors, default=now)
    wanted = max_catchup_runs + SKIPPED_LIST_LIMIT
    due = list(islice(takewhile(lambda tick: tick > floor, _backward(parsed, zone, now)), wanted))
    due.reverse()
    to_run, skipped = due[-max_catchup_runs:], due[:-max_catchup_runs]
    skipped_count = len(skipped)
    if len(due) == wanted:  # more may be due before the listed ones: count, don't list
        skipped_count += _count(parsed, zone, floor, due[0] - _MICROSECOND)
    return CatchUpPlan(to_run=to_run, skipped=skipped, skipped_count=skipped_count)
