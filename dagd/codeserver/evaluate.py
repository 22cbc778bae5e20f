"""Turning loaded definitions into plain data, and calling schedule and sensor functions.

Runs inside the code server only. A user function may return or yield ``RunRequest``s, a
``SkipReason`` or nothing; what comes out is an :class:`Evaluation` with plain data, or the error.
"""

from __future__ import annotations

import inspect
import json
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from dagd.codeserver.protocol import (
    Evaluation,
    JobInfo,
    LocationSnapshot,
    RunRequestData,
    ScheduleInfo,
    SensorInfo,
)
from dagd.definitions import Definitions, RunRequest, ScheduleDefinition, SensorDefinition, SkipReason
from dagd.scheduling.ticks import validate_cron, validate_timezone


def snapshot_of(
    name: str, generation: int, defs: Definitions | None, load_error: str | None
) -> LocationSnapshot:
    if defs is None:
        return LocationSnapshot(name=name, generation=generation, load_error=load_error)
    jobs = {j.name for j in defs.jobs}
    schedules = []
    for s in defs.schedules:
        error = None
        try:
            validate_cron(s.cron_schedule)
            validate_timezone(s.execution_timezone)
            if s.job_name not in jobs:
                raise ValueError(f"job {s.job_name!r} does not exist in this code location")
        except ValueError as exc:
            error = f"schedule {s.name}: {exc}"
        schedules.append(
            ScheduleInfo(
                name=s.name,
                cron_schedule=s.cron_schedule,
                job_name=s.job_name,
                execution_timezone=s.execution_timezone,
                tags=dict(s.tags),
                default_status=s.default_status,
                run_config=_plain(s.run_config),
                error=error,
            )
        )
    sensors = []
    for sn in defs.sensors:
        error = None
        if not isinstance(sn.minimum_interval_seconds, (int, float)) or sn.minimum_interval_seconds <= 0:
            error = f"sensor {sn.name}: minimum_interval_seconds must be positive, got {sn.minimum_interval_seconds!r}"
        elif sn.job_name is not None and sn.job_name not in jobs:
            error = f"sensor {sn.name}: job {sn.job_name!r} does not exist in this code location"
        sensors.append(
            SensorInfo(
                name=sn.name,
                job_name=sn.job_name,
                minimum_interval_seconds=float(sn.minimum_interval_seconds)
                if isinstance(sn.minimum_interval_seconds, (int, float))
                else 0.0,
                default_status=sn.default_status,
                error=error,
            )
        )
    return LocationSnapshot(
        name=name,
        generation=generation,
        jobs=[JobInfo(j.name, dict(j.tags), j.resumable, _description(j.description)) for j in defs.jobs],
        schedules=schedules,
        sensors=sensors,
        load_error=load_error,
    )


def _description(text: object) -> str | None:
    """A job's description as shown to people: a docstring's indentation removed, None when empty."""
    if not isinstance(text, str) or not text.strip():
        return None
    return inspect.cleandoc(text)


def _plain(value: Any) -> Any:
    """JSON round trip: what cannot cross the wire fails here, naming the problem."""
    return json.loads(json.dumps(value))


@dataclass
class ScheduleContext:
    """What a schedule function receives."""

    scheduled_execution_time: datetime
    schedule_name: str


class SensorContext:
    """What a sensor function receives: ``cursor``, ``update_cursor()``, ``last_tick_at``."""

    def __init__(self, sensor_name: str, cursor: str | None, last_tick_at: str | None) -> None:
        self.sensor_name = sensor_name
        self.cursor = cursor
        self.last_tick_at = last_tick_at
        self.cursor_updated = False

    def update_cursor(self, cursor: str | None) -> None:
        if cursor is not None and not isinstance(cursor, str):
            raise TypeError(f"cursor must be a string or None, got {type(cursor).__name__}")
        self.cursor = cursor
        self.cursor_updated = True


def _call(fn: Any, context: Any) -> Any:
    params = inspect.signature(fn).parameters
    result = fn(context) if params else fn()
    if inspect.isgenerator(result):
        return list(result)
    return result


def _collect(result: Any, default_job: str | None, owner: str) -> tuple[list[RunRequestData], str | None]:
    items: Iterable[Any]
    if result is None:
        return [], None
    if isinstance(result, (RunRequest, SkipReason)):
        items = [result]
    elif isinstance(result, (list, tuple)):
        items = result
    else:
        raise TypeError(
            f"{owner} returned {type(result).__name__}; expected RunRequest(s), SkipReason or None"
        )
    requests, skip = [], None
    for item in items:
        if isinstance(item, SkipReason):
            skip = item.skip_message or "skipped"
        elif isinstance(item, RunRequest):
            job = item.job_name or default_job
            if not job:
                raise ValueError(f"{owner}: a RunRequest needs job_name (the definition names no job)")
            tags = {str(k): str(v) for k, v in (item.tags or {}).items()}
            requests.append(RunRequestData(job, item.run_key, tags, _plain(item.run_config or {})))
        elif item is not None:
            raise TypeError(f"{owner} produced {type(item).__name__}; expected RunRequest or SkipReason")
    return requests, skip


def evaluate_schedule(schedule: ScheduleDefinition, scheduled_time: datetime) -> Evaluation:
    owner = f"schedule {schedule.name}"
    local = scheduled_time.astimezone(ZoneInfo(schedule.execution_timezone))
    try:
        result = _call(schedule.fn, ScheduleContext(local, schedule.name)) if schedule.fn else None
        if result is None:
            # No return value: one run with the schedule's defaults.
            return Evaluation(
                run_requests=[RunRequestData(schedule.job_name, None, {}, _plain(schedule.run_config))]
            )
        requests, skip = _collect(result, schedule.job_name, owner)
    except Exception as exc:
        return Evaluation(error=_describe(exc))
    if not requests and skip is None:
        skip = "the schedule function returned no run requests"
    return Evaluation(run_requests=requests, skip_reason=skip)


def evaluate_sensor(sensor: SensorDefinition, cursor: str | None, last_tick_at: str | None) -> Evaluation:
    owner = f"sensor {sensor.name}"
    context = SensorContext(sensor.name, cursor, last_tick_at)
    try:
        requests, skip = _collect(_call(sensor.fn, context), sensor.job_name, owner)
    except Exception as exc:
        # The cursor is not advanced on failure.
        return Evaluation(error=_describe(exc))
    return Evaluation(
        run_requests=requests, skip_reason=skip, cursor=context.cursor, cursor_updated=context.cursor_updated
    )


def _describe(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    user = [f for f in frames if "/dagd/" not in f.filename.replace("\\", "/")]
    where = f" ({user[-1].filename.rsplit('/', 1)[-1]}, line {user[-1].lineno})" if user else ""
    return f"{type(exc).__name__}: {exc}{where}"
