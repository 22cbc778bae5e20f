"""The ``sensor`` daemon: every running sensor evaluated at most every ``minimum_interval_seconds``.

Evaluations run on a thread pool (``sensors.max_concurrent_evaluations``) and each calls its code
server with a timeout, so a slow or hung sensor fails its own tick and never delays the others.
For each evaluation, one transaction saves the tick with its run requests and the new cursor
*before* anything is submitted; then the runs are submitted with idempotency keys (run keys are
deduplicated per sensor forever, and within one tick), and a second transaction ends the tick and
moves the cursor. A crash in between is resumed from the saved tick. A failing sensor's cursor
does not move.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from dagd.codeserver.protocol import SensorInfo
from dagd.daemons.base import Daemon
from dagd.daemons.user_code import LoadedLocation, load_locations, planned_request, submit_planned
from dagd.errors import DagdError
from dagd.storage.instigators import (
    RUNNING,
    TICK_FAILURE,
    TICK_SKIPPED,
    TICK_STARTED,
    TICK_SUCCESS,
    InstigatorState,
    Tick,
)
from dagd.timefmt import rfc3339, utcnow

if TYPE_CHECKING:
    from dagd.instance.instance import Instance

log = logging.getLogger("dagd.daemon.sensor")

KIND = "sensor"
LOOP_SECONDS = 0.1
SNAPSHOT_SECONDS = 1.0


class SensorDaemon(Daemon):
    name = "sensor"

    def __init__(self, instance: Instance) -> None:
        super().__init__(instance)
        config = instance.config.sensors
        self.pool = ThreadPoolExecutor(
            max_workers=config.max_concurrent_evaluations, thread_name_prefix="sensor"
        )
        self.in_flight: dict[str, Future[None]] = {}
        self.last_started: dict[str, float] = {}  # monotonic start of each sensor's latest evaluation
        self.evaluations = 0
        self._locations: list[LoadedLocation] = []
        self._locations_at = 0.0
        self._errors: list[str] = []
        self._resumed = False
        self._states: dict[str, InstigatorState] = {}
        self._states_at = -SNAPSHOT_SECONDS
        self._next_due = 0.0
        self._lock = threading.Lock()

    @property
    def interval_seconds(self) -> float:
        # Sleep until the next sensor is due (bounded), not a fixed short tick: idle costs ~nothing.
        return min(max(self._next_due - time.monotonic(), LOOP_SECONDS), SNAPSHOT_SECONDS)

    def _refresh_locations(self) -> None:
        if time.monotonic() - self._locations_at < SNAPSHOT_SECONDS:
            return
        errors: list[str] = []
        self._locations = load_locations(self.instance, errors)
        self._errors = errors
        self._locations_at = time.monotonic()

    def run_iteration(self) -> None:
        store = self.instance.storage.instigators
        self._refresh_locations()
        sensors = {s.name: (loc, s) for loc in self._locations for s in loc.snapshot.sensors}
        if not self._resumed:
            for tick in store.unfinished_ticks(KIND):
                found = sensors.get(tick.name)
                if found is not None:
                    self._finish_planned(found[0], tick)
            self._resumed = True
        now = time.monotonic()
        if now - self._states_at >= SNAPSHOT_SECONDS:
            # Start/stop from the CLI takes effect within a second; no storage read every pass.
            self._states, self._states_at = store.states(KIND), now
        states = self._states
        running = 0
        next_due = now + SNAPSHOT_SECONDS
        for name, (location, sensor) in sensors.items():
            if sensor.error:
                continue
            state = states.get(name)
            if state is None:
                state = self._states[name] = store.ensure(KIND, name, sensor.default_status)
            if state.status != RUNNING:
                continue
            running += 1
            future = self.in_flight.get(name)
            if future is not None and not future.done():
                continue  # still evaluating: never two evaluations of one sensor at once
            last = self.last_started.get(name)
            if last is not None and now - last < sensor.minimum_interval_seconds:
                next_due = min(next_due, last + sensor.minimum_interval_seconds)
                continue
            self.last_started[name] = now
            self.in_flight[name] = self.pool.submit(self._evaluate, location, sensor)
        self._next_due = next_due
        self.info = {"sensors_running": running, "evaluations": self.evaluations, "errors": self._errors[:5]}
        if self._errors:
            raise DagdError("; ".join(self._errors))

    def _evaluate(self, location: LoadedLocation, sensor: SensorInfo) -> None:
        store = self.instance.storage.instigators
        # Read fresh: the state cache may predate our own last tick or a `sensors cursor --set`.
        cursor = store.cursor(KIND, sensor.name)
        epoch = self.instance.fence_epoch
        timeout = self.instance.config.sensors.evaluation_timeout_seconds
        try:
            evaluation = location.client.evaluate_sensor(sensor.name, cursor, rfc3339(utcnow()), timeout)
        except DagdError as exc:
            self._record_failure(sensor.name, str(exc))
            return
        finally:
            with self._lock:
                self.evaluations += 1
        if evaluation.error:
            self._record_failure(sensor.name, evaluation.error)
            return
        new_cursor = evaluation.cursor if evaluation.cursor_updated else cursor
        if not evaluation.run_requests:
            self._record_skip(sensor.name, evaluation.skip_reason, new_cursor, evaluation.cursor_updated)
            return
        # Run keys: one run per key per sensor, forever (and within this tick).
        seen: set[str] = set()
        requests = []
        for request in evaluation.run_requests:
            if request.run_key is not None:
                if request.run_key in seen:
                    continue
                seen.add(request.run_key)
            requests.append(request)
        keyed = {f"sensor:{sensor.name}:{r.run_key}": r for r in requests if r.run_key is not None}
        existing = self.instance.storage.runs.by_idempotency_keys(list(keyed)) if keyed else {}
        if existing:
            requests = [r for r in requests if f"sensor:{sensor.name}:{r.run_key}" not in existing]
        if not requests:
            reason = f"every run key was requested before ({len(existing)} duplicate(s))"
            self._record_skip(sensor.name, reason, new_cursor, evaluation.cursor_updated)
            return
        tick = store.create_tick(KIND, sensor.name, scheduled_time=None, status=TICK_STARTED, epoch=epoch)
        if tick is None:
            return
        tags = {"dagd/sensor": sensor.name}
        planned = [
            planned_request(
                r,
                f"sensor:{sensor.name}:{r.run_key}"
                if r.run_key is not None
                else f"sensor:{sensor.name}:tick{tick.id}:{i}",
                tags,
            )
            for i, r in enumerate(requests)
        ]
        store.plan_tick(tick.id, planned, new_cursor, evaluation.cursor_updated)
        self._finish_planned(location, store.get_tick(tick.id))

    def _record_skip(self, name: str, reason: str | None, cursor: str | None, cursor_updated: bool) -> None:
        """A tick that asks for no new run: recorded SKIPPED, and the cursor moves if the sensor moved it."""
        store = self.instance.storage.instigators
        tick = store.create_tick(
            KIND,
            name,
            scheduled_time=None,
            status=TICK_SKIPPED,
            epoch=self.instance.fence_epoch,
            skip_reason=reason,
            new_cursor=cursor,
            cursor_updated=cursor_updated,
        )
        if tick is not None and cursor_updated:
            store.set_cursor(KIND, name, cursor)

    def _finish_planned(self, location: LoadedLocation, tick: Tick) -> None:
        store = self.instance.storage.instigators
        assert tick.status == TICK_STARTED
        if tick.planned is None:
            # Crashed before the requests were saved: nothing was submitted; the next tick re-evaluates.
            store.finish_tick(tick.id, TICK_FAILURE, error="interrupted before its run requests were saved")
            return
        try:
            run_ids = submit_planned(
                self.instance, location, location.published.target.to_json(), tick.planned
            )
        except DagdError as exc:
            store.finish_tick(tick.id, TICK_FAILURE, error=str(exc))
            return
        cursor = (KIND, tick.name, tick.new_cursor) if tick.cursor_updated else None
        store.finish_tick(tick.id, TICK_SUCCESS, run_ids=run_ids, cursor=cursor)
        self.request_wake("run_queue")
        log.info("sensor %s: %d run(s)", tick.name, len(run_ids))

    def _record_failure(self, name: str, error: str) -> None:
        # One write: a FAILURE tick is never stored (or seen) without its error.
        self.instance.storage.instigators.create_tick(
            KIND, name, scheduled_time=None, status=TICK_FAILURE, epoch=self.instance.fence_epoch, error=error
        )
        log.error("sensor %s tick failed: %s", name, error)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
