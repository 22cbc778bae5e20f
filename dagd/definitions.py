"""The user-facing definitions API: ``@job``, ``@schedule``, ``@sensor``, ``RunRequest``,
``SkipReason`` and ``Definitions`` (SPEC §7).

Definitions are plain data plus the user's function; nothing here touches storage or processes.
Validation that can be done at definition time (names, tags, priority, a schedule's cron string
and timezone) happens here, so a broken definition fails when its module loads, naming the
definition: the code location does not load, which shows at start, in ``dagctl instance info`` and
on the UI, as Dagster refuses a bad ``cron_schedule`` when the definition is made.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dagd.errors import DefinitionError
from dagd.runs.model import check_max_runtime, parse_priority

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-.]*$")


def _check_name(kind: str, name: str) -> str:
    if not _NAME.match(name):
        raise DefinitionError(f"{kind} name {name!r} is not a valid identifier")
    return name


def _check_tags(owner: str, tags: Mapping[str, Any] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (tags or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise DefinitionError(f"{owner}: tag {key!r} must map a string to a string")
        out[key] = value
    try:
        parse_priority(out)
        check_max_runtime(out)
    except ValueError as exc:
        raise DefinitionError(f"{owner}: {exc}") from None
    return out


@dataclass(frozen=True)
class JobDefinition:
    name: str
    fn: Callable[..., Any]
    tags: dict[str, str] = field(default_factory=dict)
    description: str | None = None
    # Safe to run again from the start if its worker dies (run monitoring may resume it).
    resumable: bool = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


def job(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    tags: Mapping[str, str] | None = None,
    description: str | None = None,
    resumable: bool = False,
) -> Any:
    """Declare a job: ``@job`` or ``@job(tags={"dagd/priority": "3"})``. The function takes ``context``.

    ``resumable=True``: if the run's worker dies, run monitoring may start the job again in a new
    worker (up to ``run_monitoring.max_resume_run_attempts`` times).
    """

    def wrap(f: Callable[..., Any]) -> JobDefinition:
        job_name = _check_name("job", name or f.__name__)
        return JobDefinition(
            name=job_name,
            fn=f,
            tags=_check_tags(f"job {job_name}", tags),
            description=description or f.__doc__,
            resumable=resumable,
        )

    return wrap(fn) if fn is not None else wrap


@dataclass(frozen=True)
class RunRequest:
    run_key: str | None = None
    run_config: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    job_name: str | None = None


@dataclass(frozen=True)
class SkipReason:
    skip_message: str = ""


def _job_name(owner: str, target: JobDefinition | str | None) -> str | None:
    if target is None or isinstance(target, str):
        return target
    if isinstance(target, JobDefinition):
        return target.name
    raise DefinitionError(f"{owner}: job must be a @job or a job name, got {type(target).__name__}")


@dataclass(frozen=True)
class ScheduleDefinition:
    name: str
    cron_schedule: str
    job_name: str
    fn: Callable[..., Any] | None
    execution_timezone: str = "UTC"
    tags: dict[str, str] = field(default_factory=dict)
    default_status: str = "STOPPED"
    run_config: dict[str, Any] = field(default_factory=dict)


def schedule(
    *,
    cron_schedule: str,
    job: JobDefinition | str,
    name: str | None = None,
    execution_timezone: str = "UTC",
    tags: Mapping[str, str] | None = None,
    default_status: str = "STOPPED",
    run_config: Mapping[str, Any] | None = None,
) -> Callable[[Callable[..., Any]], ScheduleDefinition]:
    """Declare a cron schedule. The function may return None, RunRequest(s) or a SkipReason."""

    def wrap(f: Callable[..., Any]) -> ScheduleDefinition:
        sched_name = _check_name("schedule", name or f.__name__)
        owner = f"schedule {sched_name}"
        if default_status not in ("RUNNING", "STOPPED"):
            raise DefinitionError(f"{owner}: default_status must be RUNNING or STOPPED")
        # Here, not at the top: the croniter import is paid only by code that defines schedules.
        from dagd.scheduling.ticks import validate_cron, validate_timezone

        try:
            validate_cron(cron_schedule)
            validate_timezone(execution_timezone)
        except ValueError as exc:
            raise DefinitionError(f"{owner}: {exc}") from None
        return ScheduleDefinition(
            name=sched_name,
            cron_schedule=cron_schedule,
            job_name=_job_name(owner, job) or "",
            fn=f,
            execution_timezone=execution_timezone,
            tags=_check_tags(owner, tags),
            default_status=default_status,
            run_config=dict(run_config or {}),
        )

    return wrap


@dataclass(frozen=True)
class SensorDefinition:
    name: str
    fn: Callable[..., Any]
    job_name: str | None
    minimum_interval_seconds: float = 30
    default_status: str = "STOPPED"


def sensor(
    *,
    job: JobDefinition | str | None = None,
    name: str | None = None,
    minimum_interval_seconds: float = 30,
    default_status: str = "STOPPED",
) -> Callable[[Callable[..., Any]], SensorDefinition]:
    """Declare a sensor evaluated at most every ``minimum_interval_seconds``."""

    def wrap(f: Callable[..., Any]) -> SensorDefinition:
        sensor_name = _check_name("sensor", name or f.__name__)
        owner = f"sensor {sensor_name}"
        if default_status not in ("RUNNING", "STOPPED"):
            raise DefinitionError(f"{owner}: default_status must be RUNNING or STOPPED")
        return SensorDefinition(
            name=sensor_name,
            fn=f,
            job_name=_job_name(owner, job),
            minimum_interval_seconds=minimum_interval_seconds,
            default_status=default_status,
        )

    return wrap


@dataclass
class Definitions:
    jobs: Sequence[JobDefinition] = ()
    schedules: Sequence[ScheduleDefinition] = ()
    sensors: Sequence[SensorDefinition] = ()

    def __post_init__(self) -> None:
        self.jobs = list(self.jobs)
        self.schedules = list(self.schedules)
        self.sensors = list(self.sensors)
        for kind, items in (("job", self.jobs), ("schedule", self.schedules), ("sensor", self.sensors)):
            seen: set[str] = set()
            for item in items:
                if item.name in seen:
                    raise DefinitionError(f"duplicate {kind} name {item.name!r}")
                seen.add(item.name)

    def job_named(self, name: str) -> JobDefinition | None:
        return next((j for j in self.jobs if j.name == name), None)
