"""The ``scheduler`` daemon: one tick per due time of every running schedule, never lost or doubled.

Each pass, in batches (one code-server request per location, a few transactions per chunk of
answers, whatever the number of schedules):

1. plan the due ticks of every running schedule since its last one (:func:`plan_catch_up`: only
   the latest ``scheduler.max_catchup_runs`` run after downtime, the others are recorded SKIPPED);
2. create them in one transaction (unique per schedule and time, fenced by the lease epoch), plus
   any tick a crash left STARTED;
3. evaluate every schedule function at once in its code server; as the answers stream back, save
   each chunk's run requests on their ticks, submit the runs in one transaction with idempotency
   keys, and end the ticks.

A crash between any two of these steps is resumed from the saved tick: nothing lost, nothing
doubled. A slow schedule function holds up only its own tick (its answer simply comes last).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from datetime import datetime

from dagd.codeserver.protocol import Evaluation, ScheduleInfo
from dagd.daemons.base import Daemon
from dagd.daemons.user_code import (
    LoadedLocation,
    evaluate_in_chunks,
    load_locations,
    planned_request,
    submit_ticks,
)
from dagd.errors import DagdError
from dagd.scheduling.ticks import next_tick, plan_catch_up
from dagd.storage.instigators import (
    RUNNING,
    TICK_FAILURE,
    TICK_SKIPPED,
    TICK_STARTED,
    NewTick,
    PlannedRun,
    Tick,
    TickEnd,
)
from dagd.timefmt import rfc3339, utcnow

log = logging.getLogger("dagd.daemon.scheduler")

KIND = "schedule"
MAX_SKIPPED_RECORDED = 100
IDLE_SECONDS = 5.0
SKIPPED_REASON = "missed while the scheduler was not running (catch-up runs only the latest)"


@dataclasses.dataclass(frozen=True)
class Work:
    """A STARTED schedule tick to complete, with the schedule and code location it belongs to."""

    location: LoadedLocation
    schedule: ScheduleInfo
    tick: Tick


class SchedulerDaemon(Daemon):
    name = "scheduler"
    _next_due: datetime | None = None

    @property
    def interval_seconds(self) -> float:
        # Sleep until the next due tick, at most IDLE_SECONDS: starting a schedule or reloading
        # code wakes us through the supervisor, so a long sleep misses nothing.
        if self._next_due is None:
            return IDLE_SECONDS
        return max(0.05, min(IDLE_SECONDS, (self._next_due - utcnow()).total_seconds()))

    def run_iteration(self) -> None:
        instance = self.instance
        store = instance.storage.instigators
        errors: list[str] = []
        locations = load_locations(instance, errors)
        by_schedule = {s.name: (loc, s) for loc in locations for s in loc.snapshot.schedules}
        work: list[Work] = []
        for tick in store.unfinished_ticks(KIND):
            found = by_schedule.get(tick.name)
            if found is not None:
                work.append(Work(found[0], found[1], tick))
        now = utcnow()
        states = store.states(KIND)
        last = store.last_scheduled_times()
        next_due: datetime | None = None
        running = 0
        news: list[NewTick] = []
        for name, (_location, schedule) in by_schedule.items():
            if schedule.error:
                continue
            state = states.get(name) or store.ensure(KIND, name, schedule.default_status)
            if state.status != RUNNING:
                continue
            running += 1
            plan = plan_catch_up(
                schedule.cron_schedule,
                schedule.execution_timezone,
                last.get(name),
                now,
                instance.config.scheduler.max_catchup_runs,
                start=state.status_changed_at,
            )
            news += self._skipped_ticks(name, plan.skipped, plan.skipped_count)
            news += [NewTick(KIND, name, scheduled_time=when) for when in plan.to_run]
            upcoming = next_tick(schedule.cron_schedule, schedule.execution_timezone, now)
            next_due = upcoming if next_due is None else min(next_due, upcoming)
        # None: another pass (or scheduler) already has that tick.
        for created in store.create_ticks(news, epoch=instance.fence_epoch):
            if created is not None and created.status == TICK_STARTED:
                location, schedule = by_schedule[created.name]
                work.append(Work(location, schedule, created))
        self._complete(work)
        self._next_due = next_due
        self.info = {"schedules_running": running, "next_tick_at": rfc3339(next_due), "errors": errors[:5]}
        if errors:
            raise DagdError("; ".join(errors))

    def _skipped_ticks(self, name: str, skipped: list[datetime], count: int) -> list[NewTick]:
        shown = skipped[-MAX_SKIPPED_RECORDED:]
        if count:
            log.warning("schedule %s: %d missed tick(s) skipped", name, count)
        return [
            NewTick(
                KIND,
                name,
                scheduled_time=when,
                status=TICK_SKIPPED,
                skip_reason=SKIPPED_REASON
                + (
                    f"; {count - len(shown)} older missed tick(s) not listed"
                    if index == 0 and count > len(shown)
                    else ""
                ),
            )
            for index, when in enumerate(shown)
        ]

    def _complete(self, work: list[Work]) -> None:
        """Evaluate (unless the requests are already saved), save, submit, finish. Idempotent."""
        self._submit([(item.location, item.tick) for item in work if item.tick.planned is not None])
        by_location: dict[str, list[Work]] = {}
        for item in work:
            if item.tick.planned is None:
                by_location.setdefault(item.location.published.name, []).append(item)
        timeout = self.instance.config.scheduler.evaluation_timeout_seconds
        for items in by_location.values():
            self.phase = f"evaluating {len(items)} schedule tick(s)"
            requests = [
                {
                    "kind": KIND,
                    "name": item.schedule.name,
                    "scheduled_time": rfc3339(item.tick.scheduled_time),
                }
                for item in items
            ]
            evaluate_in_chunks(
                items[0].location,
                requests,
                timeout,
                functools.partial(self._store_answers, items),
                announce_wait=self.announce_wait,  # in the loop's thread: a slow schedule is no hang
            )

    def _store_answers(self, items: list[Work], answers: list[tuple[int, Evaluation]]) -> None:
        """One chunk of evaluations: requests saved on their ticks, then runs submitted, ticks ended."""
        store = self.instance.storage.instigators
        plans: list[tuple[int, list[PlannedRun]]] = []
        ends: list[TickEnd] = []
        planned: list[tuple[LoadedLocation, Tick]] = []
        for index, evaluation in answers:
            location, schedule, tick = items[index].location, items[index].schedule, items[index].tick
            assert tick.scheduled_time is not None
            if evaluation.error:
                log.error("schedule %s tick %s failed: %s", tick.name, tick.scheduled_time, evaluation.error)
                ends.append(TickEnd(tick.id, TICK_FAILURE, error=evaluation.error))
                continue
            if not evaluation.run_requests:
                reason = evaluation.skip_reason or "no run requests"
                ends.append(TickEnd(tick.id, TICK_SKIPPED, skip_reason=reason))
                continue
            stamp = rfc3339(tick.scheduled_time) or ""
            system_tags = {"dagd/schedule": tick.name, "dagd/scheduled_time": stamp, **schedule.tags}
            requests = [
                planned_request(r, f"schedule:{tick.name}:{stamp}:{r.run_key or i}", system_tags)
                for i, r in enumerate(evaluation.run_requests)
            ]
            plans.append((tick.id, requests))
            planned.append((location, _with_plan(tick, requests)))
        store.plan_ticks(plans)  # saved before anything is submitted
        store.finish_ticks(ends)
        self._submit(planned)

    def _submit(self, planned: list[tuple[LoadedLocation, Tick]]) -> None:
        if not planned:
            return
        self.phase = f"submitting the runs of {len(planned)} schedule tick(s)"
        ends = submit_ticks(self.instance, [(loc, tick) for loc, tick in planned])
        self.instance.storage.instigators.finish_ticks(ends)
        self.request_wake("run_queue")
        ticks = {tick.id: tick for _, tick in planned}
        for end in ends:
            tick = ticks[end.tick_id]
            if end.error:
                log.error("schedule %s tick %s failed: %s", tick.name, tick.scheduled_time, end.error)
            else:
                log.info("schedule %s tick %s: %d run(s)", tick.name, tick.scheduled_time, len(end.run_ids))


def _with_plan(tick: Tick, planned: list[PlannedRun]) -> Tick:
    return dataclasses.replace(tick, planned=planned)


__all__ = ["SchedulerDaemon"]
