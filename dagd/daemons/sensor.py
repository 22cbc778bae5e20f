"""The ``sensor`` daemon: every running sensor evaluated at most every ``minimum_interval_seconds``.

Each pass collects the sensors that are due (and not still being evaluated) and hands each code
location's batch to a thread (``sensors.max_concurrent_evaluations`` batches at once): one read of
their cursors, one code-server request that evaluates them all (each with its own timeout, the
answers streaming back as they finish), and the answers stored a chunk at a time:

1. one transaction creates every tick of the chunk: FAILURE (with the error; the cursor does not
   move), SKIPPED (the cursor moves if the sensor moved it), or STARTED with its run requests and
   new cursor saved *before* anything is submitted;
2. one transaction submits the runs of the STARTED ticks with idempotency keys (run keys are
   deduplicated per sensor forever, and within one tick);
3. one transaction ends those ticks and moves their cursors.

A crash between these steps is resumed from the saved ticks. A slow or hung sensor holds up only
its own answer: the others in its batch are stored as they arrive, and it is not due again until
its evaluation ends (at the latest, at its timeout).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from collections.abc import Collection, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dagd.codeserver.protocol import Evaluation, RunRequestData, SensorInfo
from dagd.daemons.base import Daemon
from dagd.daemons.user_code import (
    LoadedLocation,
    evaluate_in_chunks,
    load_locations,
    planned_request,
    submit_ticks,
)
from dagd.errors import DagdError
from dagd.storage.instigators import (
    RUNNING,
    TICK_FAILURE,
    TICK_SKIPPED,
    TICK_STARTED,
    InstigatorState,
    NewTick,
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
        # One future per sensor being evaluated: done once its tick is stored (or it failed).
        self.in_flight: dict[str, Future[None]] = {}
        self.last_started: dict[str, float] = {}  # monotonic start of each sensor's latest evaluation
        # Wall-clock start of each sensor's latest evaluation, for the next one's context.last_tick_at.
        self.last_tick_at: dict[str, str] = {}
        self.evaluations = 0
        self._locations: list[LoadedLocation] = []
        self._locations_at = 0.0
        self._errors: list[str] = []
        self._resumed = False
        # Sensors whose evaluation failed on storage after their tick may have been created: their
        # STARTED tick is resumed before they are evaluated again (from a cursor that has not moved).
        self._needs_resume: set[str] = set()
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
        self._refresh_locations()
        sensors = {s.name: (loc, s) for loc in self._locations for s in loc.snapshot.sensors}
        self._resume_unfinished(sensors)
        with self._lock:
            waiting = set(self._needs_resume)  # failed since the step above: resumed next pass
        now = time.monotonic()
        states = self._current_states([sensor for _, sensor in sensors.values()], now)
        plan = sensors_due(
            [sensor for _, sensor in sensors.values()],
            running={name for name, state in states.items() if state.status == RUNNING},
            busy=self._busy() | waiting,
            last_started=self.last_started,
            now=now,
            horizon=SNAPSHOT_SECONDS,
        )
        self._start(sensors, plan.due, now)
        self._next_due = plan.next_due
        self.info = {
            "sensors_running": plan.running,
            "evaluations": self.evaluations,
            "errors": self._errors[:5],
        }
        if self._errors:
            raise DagdError("; ".join(self._errors))

    def _busy(self) -> set[str]:
        """The sensors being evaluated: never two evaluations of one sensor at once."""
        return {name for name, future in self.in_flight.items() if not future.done()}

    def _resume_unfinished(self, sensors: dict[str, tuple[LoadedLocation, SensorInfo]]) -> None:
        """At start: the ticks a crash left. Later: those a storage error in an evaluation left.
        Never a tick whose evaluation is still in flight (its own thread is finishing it)."""
        with self._lock:
            pending = set(self._needs_resume)
        if not self._resumed:
            self._seed_last_ticks()
        if self._resumed and not pending:
            return
        busy = self._busy()
        resumed = [
            (sensors[t.name][0], t)
            for t in self.instance.storage.instigators.unfinished_ticks(KIND)
            if t.name in sensors and t.name not in busy
        ]
        self._submit(resumed)
        self._resumed = True
        with self._lock:
            self._needs_resume -= pending

    def _current_states(self, sensors: list[SensorInfo], now: float) -> dict[str, InstigatorState]:
        """Each sensor's stored state, read at most once a second (start/stop from the CLI takes
        effect within a second; no storage read every pass); a sensor seen for the first time gets
        its default status stored. A sensor that failed to load has no state here."""
        store = self.instance.storage.instigators
        if now - self._states_at >= SNAPSHOT_SECONDS:
            self._states, self._states_at = store.states(KIND), now
        for sensor in sensors:
            if not sensor.error and sensor.name not in self._states:
                self._states[sensor.name] = store.ensure(KIND, sensor.name, sensor.default_status)
        return self._states

    def _start(
        self, sensors: dict[str, tuple[LoadedLocation, SensorInfo]], due: list[str], now: float
    ) -> None:
        """Evaluate the due sensors: one batch per code location, each on a pool thread."""
        batches: dict[str, tuple[LoadedLocation, list[SensorInfo]]] = {}
        for name in due:
            location, sensor = sensors[name]
            self.last_started[name] = now
            batches.setdefault(location.published.name, (location, []))[1].append(sensor)
        for location, batch in batches.values():
            futures: dict[str, Future[None]] = {s.name: Future() for s in batch}
            self.in_flight.update(futures)
            self.pool.submit(self._evaluate_batch, location, batch, futures)

    def _seed_last_ticks(self) -> None:
        """A new daemon (after a restart, a crash loop) carries on each sensor's rhythm from its
        latest stored tick: ``minimum_interval_seconds`` holds across restarts, and
        ``context.last_tick_at`` is that tick's start, not unknown."""
        wall, mono = utcnow(), time.monotonic()
        for name, started in self.instance.storage.instigators.last_tick_starts(KIND).items():
            self.last_started.setdefault(name, mono - max(0.0, (wall - started).total_seconds()))
            self.last_tick_at.setdefault(name, rfc3339(started) or "")

    def _evaluate_batch(
        self, location: LoadedLocation, batch: list[SensorInfo], futures: dict[str, Future[None]]
    ) -> None:
        try:
            # Read fresh: the state cache may predate our own last tick or a `sensors cursor --set`.
            cursors = self.instance.storage.instigators.cursors(KIND, [s.name for s in batch])
            now = rfc3339(utcnow()) or ""
            requests = [
                {
                    "kind": KIND,
                    "name": s.name,
                    "cursor": cursors.get(s.name),
                    "last_tick_at": self.last_tick_at.get(s.name),  # the previous evaluation's start
                }
                for s in batch
            ]
            for sensor in batch:
                self.last_tick_at[sensor.name] = now
            timeout = self.instance.config.sensors.evaluation_timeout_seconds
            store = functools.partial(self._store_answers, location, batch, cursors, futures)
            evaluate_in_chunks(location, requests, timeout, store)
        except BaseException as exc:  # every sensor of the batch not yet stored learns of it
            for future in futures.values():
                if not future.done():
                    future.set_exception(exc)
            self._mark_for_resume(
                [name for name, future in futures.items() if future.exception() is not None]
            )
            if not isinstance(exc, Exception):
                raise
        finally:
            # The loop skipped these sensors while they were in flight: let it plan their next
            # evaluation now rather than at its next scheduled look.
            self.wake_event.set()

    def _store_answers(
        self,
        location: LoadedLocation,
        batch: list[SensorInfo],
        cursors: dict[str, str | None],
        futures: dict[str, Future[None]],
        answers: list[tuple[int, Evaluation]],
    ) -> None:
        with self._lock:
            self.evaluations += len(answers)
        try:
            self._record(location, [(batch[i], cursors.get(batch[i].name), ev) for i, ev in answers])
        except BaseException as exc:
            for index, _ in answers:
                futures[batch[index].name].set_exception(exc)
            self._mark_for_resume([batch[index].name for index, _ in answers])
            raise
        for index, _ in answers:
            futures[batch[index].name].set_result(None)

    def _mark_for_resume(self, names: list[str]) -> None:
        """Their tick may be stored STARTED with its requests and new cursor: the loop resumes it
        before evaluating these sensors again, so no run is asked for twice, no cursor goes back."""
        with self._lock:
            self._needs_resume.update(names)

    def _record(
        self, location: LoadedLocation, answers: list[tuple[SensorInfo, str | None, Evaluation]]
    ) -> None:
        """Ticks for one chunk of answers (one transaction), then the runs of those that asked for any."""
        store = self.instance.storage.instigators
        news: list[NewTick] = []
        wanted: dict[str, list[tuple[str, RunRequestData]]] = {}  # sensor -> [(idempotency key, request)]
        outcome: dict[str, tuple[str | None, bool]] = {}
        for sensor, cursor, evaluation in answers:
            name = sensor.name
            if evaluation.error:
                # The cursor does not move, and the error is stored with the tick in one write.
                news.append(NewTick(KIND, name, status=TICK_FAILURE, error=evaluation.error))
                log.error("sensor %s tick failed: %s", name, evaluation.error)
                continue
            new_cursor = evaluation.cursor if evaluation.cursor_updated else cursor
            outcome[name] = (new_cursor, evaluation.cursor_updated)
            if not evaluation.run_requests:
                news.append(_skipped(name, evaluation.skip_reason, new_cursor, evaluation.cursor_updated))
                continue
            # Run keys: one run per key per sensor, forever (and within this tick).
            seen: set[str] = set()
            unkeyed = uuid.uuid4().hex[:12]  # saved with the tick: a resumed tick reuses the keys
            keyed = wanted[name] = []
            for i, request in enumerate(evaluation.run_requests):
                if request.run_key is not None:
                    if request.run_key in seen:
                        continue
                    seen.add(request.run_key)
                    keyed.append((f"sensor:{name}:{request.run_key}", request))
                else:
                    keyed.append((f"sensor:{name}:{unkeyed}:{i}", request))
        all_keys = [key for items in wanted.values() for key, _ in items]
        existing = self.instance.storage.runs.by_idempotency_keys(all_keys) if all_keys else {}
        for name, items in wanted.items():
            new_cursor, updated = outcome[name]
            fresh = [(key, r) for key, r in items if key not in existing]
            if not fresh:
                reason = f"every run key was requested before ({len(items)} duplicate(s))"
                news.append(_skipped(name, reason, new_cursor, updated))
                continue
            tags = {"dagd/sensor": name}
            planned = [planned_request(r, key, tags) for key, r in fresh]
            news.append(NewTick(KIND, name, planned=planned, new_cursor=new_cursor, cursor_updated=updated))
        created = store.create_ticks(news, epoch=self.instance.fence_epoch)
        self._submit([(location, t) for t in created if t is not None and t.status == TICK_STARTED])

    def _submit(self, started: list[tuple[LoadedLocation, Tick]]) -> None:
        store = self.instance.storage.instigators
        if not started:
            return
        ready = [(loc, t) for loc, t in started if t.planned is not None]
        # Crashed before the requests were saved: nothing was submitted; the next tick re-evaluates.
        interrupted = [t for _, t in started if t.planned is None]
        for tick in interrupted:
            store.finish_tick(tick.id, TICK_FAILURE, error="interrupted before its run requests were saved")
        ends = submit_ticks(self.instance, [(loc, t) for loc, t in ready])
        store.finish_ticks(ends)
        self.request_wake("run_queue")
        names = {t.id: t.name for _, t in ready}
        for end in ends:
            if end.error:
                log.error("sensor %s tick failed: %s", names[end.tick_id], end.error)
            else:
                log.info("sensor %s: %d run(s)", names[end.tick_id], len(end.run_ids))

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


@dataclass(frozen=True)
class DuePlan:
    due: list[str]  # the sensors to evaluate now, in the order given
    running: int  # sensors whose state is RUNNING (and that loaded)
    next_due: float  # when the next one not due now will be, at the latest ``now + horizon``


def sensors_due(
    sensors: Iterable[SensorInfo],
    *,
    running: Collection[str],
    busy: Collection[str],
    last_started: Mapping[str, float],
    now: float,
    horizon: float,
) -> DuePlan:
    """Which sensors to evaluate now (pure: times are one process's monotonic clock).

    A sensor is due when it loaded, its state is RUNNING, it is not ``busy`` (being evaluated, or
    waiting for its unfinished tick to be resumed), and its last evaluation started at least
    ``minimum_interval_seconds`` ago (or never).
    """
    due: list[str] = []
    count = 0
    next_due = now + horizon
    for sensor in sensors:
        if sensor.error or sensor.name not in running:
            continue
        count += 1
        if sensor.name in busy:
            continue
        last = last_started.get(sensor.name)
        if last is not None and now - last < sensor.minimum_interval_seconds:
            next_due = min(next_due, last + sensor.minimum_interval_seconds)
            continue
        due.append(sensor.name)
    return DuePlan(due, count, next_due)


def _skipped(name: str, reason: str | None, cursor: str | None, cursor_updated: bool) -> NewTick:
    """A tick that asks for no new run: SKIPPED, and the cursor moves if the sensor moved it."""
    return NewTick(
        KIND,
        name,
        status=TICK_SKIPPED,
        skip_reason=reason,
        new_cursor=cursor,
        cursor_updated=cursor_updated,
        move_cursor=cursor_updated,
    )
