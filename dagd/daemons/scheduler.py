"""The ``scheduler`` daemon: one tick per due time of every running schedule, never lost or doubled.

Each pass: finish any tick a crash left STARTED (from its saved run requests), then for each
running schedule plan the due ticks since the last one (:func:`plan_catch_up`: only the latest
``scheduler.max_catchup_runs`` run after downtime, the others are recorded SKIPPED), create each
tick (unique per schedule and time, fenced by the lease epoch), evaluate the schedule function in
its code server, save the run requests on the tick, then submit them with idempotency keys.
Schedules are independent, so their due ticks are worked on by a small thread pool (each
schedule's own ticks in order): a thousand schedules on one cron are not a thousand round trips
in a row, and one slow schedule function does not hold up the others.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import datetime
from typing import TYPE_CHECKING

from dagd.codeserver.protocol import ScheduleInfo
from dagd.daemons.base import Daemon
from dagd.daemons.user_code import LoadedLocation, load_locations, planned_request, submit_planned
from dagd.errors import DagdError
from dagd.scheduling.ticks import next_tick, plan_catch_up
from dagd.storage.instigators import RUNNING, TICK_FAILURE, TICK_SKIPPED, TICK_STARTED, TICK_SUCCESS, Tick
from dagd.timefmt import rfc3339, utcnow

if TYPE_CHECKING:
    from dagd.instance.instance import Instance

log = logging.getLogger("dagd.daemon.scheduler")

KIND = "schedule"
MAX_SKIPPED_RECORDED = 100
IDLE_SECONDS = 5.0
TICK_WORKERS = 8  # schedules worked on at once; storage and code-server round trips overlap


class SchedulerDaemon(Daemon):
    name = "scheduler"
    _next_due: datetime | None = None

    def __init__(self, instance: Instance) -> None:
        super().__init__(instance)
        self.pool = ThreadPoolExecutor(max_workers=TICK_WORKERS, thread_name_prefix="schedule")

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
        for tick in store.unfinished_ticks(KIND):
            found = by_schedule.get(tick.name)
            if found is not None:
                self._complete(found[0], found[1], tick)
        now = utcnow()
        states = store.states(KIND)
        last = store.last_scheduled_times()
        next_due: datetime | None = None
        running = 0
        due: list[tuple[LoadedLocation, ScheduleInfo, list[datetime]]] = []
        for name, (location, schedule) in by_schedule.items():
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
            self._record_skipped(name, plan.skipped, plan.skipped_count)
            if plan.to_run:
                due.append((location, schedule, plan.to_run))
            upcoming = next_tick(schedule.cron_schedule, schedule.execution_timezone, now)
            next_due = upcoming if next_due is None else min(next_due, upcoming)
        # Every schedule's work ends before the pass does (no tick is worked on by two passes).
        futures = [self.pool.submit(self._run_due, *work) for work in due]
        wait(futures)
        for future in futures:
            future.result()  # the first failure (or injected crash) ends the pass, as before
        self._next_due = next_due
        self.info = {"schedules_running": running, "next_tick_at": rfc3339(next_due), "errors": errors[:5]}
        if errors:
            raise DagdError("; ".join(errors))

    def _run_due(self, location: LoadedLocation, schedule: ScheduleInfo, times: list[datetime]) -> None:
        store = self.instance.storage.instigators
        for when in times:
            created = store.create_tick(
                KIND, schedule.name, scheduled_time=when, epoch=self.instance.fence_epoch
            )
            if created is not None:  # None: another pass (or scheduler) already has this tick
                self._complete(location, schedule, created)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _record_skipped(self, name: str, skipped: list[datetime], count: int) -> None:
        shown = skipped[-MAX_SKIPPED_RECORDED:]
        for index, when in enumerate(shown):
            reason = "missed while the scheduler was not running (catch-up runs only the latest)"
            if index == 0 and count > len(shown):
                reason += f"; {count - len(shown)} older missed tick(s) not listed"
            self.instance.storage.instigators.create_tick(
                KIND,
                name,
                scheduled_time=when,
                status=TICK_SKIPPED,
                skip_reason=reason,
                epoch=self.instance.fence_epoch,
            )
        if count:
            log.warning("schedule %s: %d missed tick(s) skipped", name, count)

    def _complete(self, location: LoadedLocation, schedule: ScheduleInfo, tick: Tick) -> None:
        """Evaluate (unless the requests are already saved), save, submit, finish. Idempotent."""
        store = self.instance.storage.instigators
        assert tick.status == TICK_STARTED and tick.scheduled_time is not None
        name = tick.name
        planned = tick.planned
        if planned is None:
            timeout = self.instance.config.scheduler.evaluation_timeout_seconds
            self.phase = f"evaluating schedule {name}"
            try:
                evaluation = location.client.evaluate_schedule(
                    name, rfc3339(tick.scheduled_time) or "", timeout
                )
            except DagdError as exc:
                store.finish_tick(tick.id, TICK_FAILURE, error=str(exc))
                return
            if evaluation.error:
                store.finish_tick(tick.id, TICK_FAILURE, error=evaluation.error)
                log.error("schedule %s tick %s failed: %s", name, tick.scheduled_time, evaluation.error)
                return
            if not evaluation.run_requests:
                store.finish_tick(
                    tick.id, TICK_SKIPPED, skip_reason=evaluation.skip_reason or "no run requests"
                )
                return
            stamp = rfc3339(tick.scheduled_time) or ""
            system_tags = {
                "dagd/schedule": name,
                "dagd/scheduled_time": stamp,
                **schedule.tags,
            }
            planned = [
                planned_request(r, f"schedule:{name}:{stamp}:{r.run_key or i}", system_tags)
                for i, r in enumerate(evaluation.run_requests)
            ]
            store.plan_tick(tick.id, planned, None, False)
        self.phase = f"submitting runs of schedule {name}"
        try:
            run_ids = submit_planned(self.instance, location, location.published.target.to_json(), planned)
        except DagdError as exc:
            store.finish_tick(tick.id, TICK_FAILURE, error=str(exc))
            return
        store.finish_tick(tick.id, TICK_SUCCESS, run_ids=run_ids)
        self.request_wake("run_queue")
        log.info("schedule %s tick %s: %d run(s)", name, tick.scheduled_time, len(run_ids))


__all__ = ["SchedulerDaemon"]
