"""The invariants, as pure functions of what storage and the processes show.

Each returns a list of human-readable violations (empty: the invariant holds), so the sampler can
apply the same rule live that the final check applies to the whole history.

Concurrency is judged twice: live (one consistent read of the runs in progress) and from history,
replaying every status event in timestamp order. The replay cannot accuse the queue falsely: an
event's time is taken before its transaction commits, and the queue decides on what was committed
before it claims, so a run that freed a slot always has an end time before the start time of the
run that took the slot.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from dagd.scheduling.ticks import ticks_between
from dagd.timefmt import rfc3339
from helpers.chaos.deployment import IN_PROGRESS, Limits, RunRow, StatusEvent, TickRow
from helpers.chaos.load import SUBMISSION_TAG, Ack

MAX_LISTED = 10


def over_limits(in_progress: Mapping[str, Mapping[str, str]], limits: Limits) -> list[str]:
    """Which limits the runs in progress (run_id -> tags) exceed, each with the runs holding it."""
    out = []
    cap = limits.max_concurrent_runs
    if cap >= 0 and len(in_progress) > cap:
        out.append(f"{len(in_progress)} runs in progress > max_concurrent_runs {cap}: {sorted(in_progress)}")
    for rule in limits.rules:
        holders: dict[str | None, list[str]] = {}
        for run_id, tags in in_progress.items():
            if rule.key not in tags or (rule.value is not None and tags[rule.key] != rule.value):
                continue
            holders.setdefault(tags[rule.key] if rule.per_value else None, []).append(run_id)
        for value, ids in holders.items():
            if len(ids) > rule.limit:
                where = f" (value {value!r})" if value is not None else ""
                out.append(f"{len(ids)} runs hold {rule.describe()}{where}: {sorted(ids)}")
    return out


def replay_limits(
    events: Sequence[StatusEvent], tags: Mapping[str, Mapping[str, str]], limits: Limits
) -> list[str]:
    """Replay status events in time order; every instant at which a limit was exceeded."""
    out: list[str] = []
    running: dict[str, Mapping[str, str]] = {}
    previous: set[str] = set()
    ordered = sorted(events, key=lambda e: (e.at, e.id))
    for at, group in itertools.groupby(ordered, key=lambda e: e.at):
        for event in group:
            if event.status in IN_PROGRESS:
                running[event.run_id] = tags.get(event.run_id, {})
            else:
                running.pop(event.run_id, None)
        problems = over_limits(running, limits)
        for problem in problems:
            if problem not in previous:  # an excess that lasts is reported once, when it began
                out.append(f"at {rfc3339(at)}: {problem}")
                if len(out) >= MAX_LISTED:
                    return out
        previous = set(problems)
    return out


def launched_twice(events: Iterable[StatusEvent], markers: Mapping[str, Sequence[int]]) -> list[str]:
    """Runs started by two workers, or executed in two processes.

    Two STARTING events are no longer a double launch: an attempt whose dispatcher died before any
    worker claimed it (a run queue killed between claim and launch) is dispatched again as a new
    attempt, and the old attempt's token is dead (issue #14). What must never happen is a second
    claim (STARTED) or a second process executing the job.
    """
    started = Counter(e.run_id for e in events if e.status == "STARTED")
    out = [f"run {r} has {n} STARTED events" for r, n in started.items() if n > 1]
    out += [f"run {r} executed in {len(p)} processes {sorted(p)}" for r, p in markers.items() if len(p) > 1]
    return out[:MAX_LISTED]


def missing_acks(acks: Sequence[Ack], existing: Mapping[str, Mapping[str, str]]) -> list[str]:
    """Acknowledged submissions that storage does not have (or has as another submission's run)."""
    out = []
    for ack in acks:
        tags = existing.get(ack.run_id)
        if tags is None:
            out.append(f"submission {ack.key} was acknowledged as run {ack.run_id}, which does not exist")
        elif tags.get(SUBMISSION_TAG) != ack.key:
            out.append(f"run {ack.run_id} acknowledged for {ack.key} belongs to {tags.get(SUBMISSION_TAG)}")
    return out[:MAX_LISTED]


def doubled_run_keys(runs: Iterable[RunRow]) -> list[str]:
    keys = Counter((r.tags["dagd/sensor"], r.tags.get("run_key")) for r in runs if "dagd/sensor" in r.tags)
    return [f"sensor {s} run key {k} has {n} runs" for (s, k), n in keys.items() if n > 1][:MAX_LISTED]


def lost_counter_keys(runs: Iterable[RunRow], sensor: str, cursor: str | None) -> list[str]:
    """The counter sensor's cursor c promises one run for each key n1..n<c>."""
    have = {r.tags.get("run_key") for r in runs if r.tags.get("dagd/sensor") == sensor}
    lost = [f"n{k}" for k in range(1, int(cursor or 0) + 1) if f"n{k}" not in have]
    return (
        [f"sensor {sensor} cursor is {cursor} but run keys {lost[:MAX_LISTED]} have no run"] if lost else []
    )


def schedule_ticks(
    schedules: Mapping[str, tuple[str, str]],
    started: Mapping[str, datetime],
    ticks: Sequence[TickRow],
    runs: Sequence[RunRow],
    until: datetime,
) -> list[str]:
    """Every due time since the schedule started, up to ``until``: one tick, SUCCESS, exactly its run.

    The deployment's catch-up (``max_catchup_runs: 5``) covers any downtime the faults cause, so a
    SKIPPED tick inside the window is a lost tick, not a policy.
    """
    out: list[str] = []
    for name, (cron, tz) in schedules.items():
        if name not in started:
            out.append(f"schedule {name} never started")
            continue
        due = ticks_between(cron, tz, started[name], until)
        by_time: dict[datetime | None, list[TickRow]] = {}
        for tick in ticks:
            if tick.name == name:
                by_time.setdefault(tick.scheduled_time, []).append(tick)
        by_stamp: dict[str | None, list[str]] = {}
        for run in runs:
            if run.tags.get("dagd/schedule") == name:
                by_stamp.setdefault(run.tags.get("dagd/scheduled_time"), []).append(run.run_id)
        for when in due:
            found = by_time.get(when, [])
            stamp = rfc3339(when)
            scheduled = sorted(by_stamp.get(stamp, []))
            if len(found) != 1:
                out.append(f"schedule {name} at {stamp}: {len(found)} ticks (expected 1)")
                continue
            tick = found[0]
            if tick.status != "SUCCESS":
                out.append(f"schedule {name} at {stamp}: tick {tick.status} ({tick.error}), its run lost")
            elif scheduled != sorted(tick.run_ids) or len(scheduled) != 1:
                out.append(
                    f"schedule {name} at {stamp}: tick names runs {tick.run_ids}, storage has {scheduled}"
                )
        for tick_time in by_time:
            if tick_time is not None and tick_time <= until and tick_time not in due:
                out.append(
                    f"schedule {name}: tick at {rfc3339(tick_time)}, which is not a due time since it started"
                )
        for stamp, ids in by_stamp.items():
            if len(ids) > 1:
                out.append(f"schedule {name} at {stamp}: {len(ids)} runs {sorted(ids)}")
    return out[:MAX_LISTED]


def launches_after_deposed(
    launches: Iterable[tuple[str, int | None, datetime]], epoch_seen: Mapping[int, datetime]
) -> list[str]:
    """Launches that landed under an epoch already superseded: one leader acts at a time.

    ``launches``: (what, lease epoch it was written under, when: by the database's clock, or taken
    before the write); ``epoch_seen``: each lease epoch the referee saw, with the database's time it
    first saw it (never earlier than the epoch really began). Something written under epoch E after
    a later epoch was seen came from a deposed leader past its term: the fence (the epoch checked in
    the launching statement) failed.
    """
    out = []
    for what, epoch, at in launches:
        if epoch is None:
            continue
        later = [(seen, e) for e, seen in epoch_seen.items() if e > epoch and seen < at]
        if later:
            seen, e = min(later)
            out.append(
                f"{what} written under epoch {epoch} at {rfc3339(at)}, "
                f"after epoch {e} was in force (seen at {rfc3339(seen)})"
            )
            if len(out) >= MAX_LISTED:
                break
    return out
