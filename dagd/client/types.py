"""Typed results of :class:`dagd.client.client.Client`: dataclasses that are also dicts.

Each result is a dataclass (``run.status``, ``run.tags``, typed for an editor and mypy) and, for
the callers written when the client returned plain dicts, the same values as a ``dict`` in the
JSON shape of SPEC §6 (``run["status"]``, ``json.dumps(run)``). The two views are kept in step:
setting an attribute sets the key and the other way round. ``to_json()`` is the JSON text.

Times are RFC 3339 UTC strings (``"2026-01-02T03:04:05.678Z"``) or None, as on the command line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, TypeVar

R = TypeVar("R", bound="Record")


class Record(dict[str, Any]):
    """A dataclass whose fields are also its dict items (see the module docstring)."""

    __dataclass_fields__: ClassVar[dict[str, Any]]

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name in type(self).__dataclass_fields__:
            dict.__setitem__(self, name, value)

    def __setitem__(self, key: str, value: Any) -> None:
        if key in type(self).__dataclass_fields__:
            object.__setattr__(self, key, value)
        dict.__setitem__(self, key, value)

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self, indent=indent)

    @classmethod
    def from_mapping(cls: type[R], data: dict[str, Any]) -> R:
        """From the dict shape (e.g. ``dagctl … --json`` output): unknown keys are ignored."""
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in names})


def _as(cls: type[R], value: Any) -> R:
    return value if isinstance(value, cls) else cls.from_mapping(value)


# eq=False everywhere: equality is the dict's, so a result still equals the plain dict it was.


@dataclass(eq=False, repr=True)
class RunAttempt(Record):
    """One launch of a run (dispatched, claimed by a worker, then DONE, LOST or ABANDONED)."""

    attempt: int
    state: str
    host: str | None = None
    pid: int | None = None
    worker: str | None = None
    queue: str | None = None
    dispatched_at: str | None = None
    claimed_at: str | None = None
    heartbeat_at: str | None = None
    ended_at: str | None = None
    end_reason: str | None = None


@dataclass(eq=False, repr=True)
class Run(Record):
    """A run, in the JSON shape of SPEC §6 plus a few fields."""

    run_id: str
    job_name: str
    status: str  # QUEUED, NOT_STARTED, STARTING, STARTED, SUCCESS, FAILURE, CANCELING, CANCELED
    tags: dict[str, str] = field(default_factory=dict)
    priority: int = 0
    created_at: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    run_config: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    worker_pid: int | None = None
    attempt: int = 0
    host: str | None = None
    # Only from Client.get_run: every launch of the run, oldest first.
    attempts: list[RunAttempt] | None = None

    FINISHED: ClassVar[frozenset[str]] = frozenset({"SUCCESS", "FAILURE", "CANCELED"})

    def __post_init__(self) -> None:
        if self.attempts is None:
            dict.pop(self, "attempts", None)  # not part of a run's JSON unless get_run filled it
        else:
            self.attempts = [_as(RunAttempt, a) for a in self.attempts]

    @property
    def finished(self) -> bool:
        return self.status in self.FINISHED


@dataclass(eq=False, repr=True)
class RunEvent(Record):
    at: str
    kind: str
    status: str | None
    message: str


@dataclass(eq=False, repr=True)
class LogLine(Record):
    seq: int
    at: str
    stream: str
    level: str
    message: str


@dataclass(eq=False, repr=True)
class Daemon(Record):
    """One daemon, in the JSON shape of ``dagctl daemons status --json``."""

    name: str
    healthy: bool
    pid: int | None = None
    last_heartbeat_at: str | None = None
    restarts: int = 0
    last_error: str | None = None
    state: str = ""
    detail: str = ""
    incarnation: int = 0
    uptime_seconds: float = 0.0
    iteration: int = 0
    phase: str = ""
    restarts_by_reason: dict[str, int] = field(default_factory=dict)
    last_exit: str | None = None
    last_exit_reason: str | None = None
    last_errors: list[str] = field(default_factory=list)
    degraded: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    heartbeat_age_seconds: float | None = None


@dataclass(eq=False, repr=True)
class DaemonStatus(Record):
    daemons: list[Daemon]
    draining: bool = False
    role: str | None = None  # "leader" or "standby"

    def __post_init__(self) -> None:
        self.daemons = [_as(Daemon, d) for d in self.daemons]

    @property
    def healthy(self) -> bool:
        return all(d.healthy for d in self.daemons)


@dataclass(eq=False, repr=True)
class TagLimitUsage(Record):
    """One tag concurrency limit's use: ``limit`` for people, the rest typed."""

    limit: str
    in_use: int
    capacity: int
    key: str | None = None
    value: str | None = None  # None: any value (or, per unique value, none in use)
    per_unique_value: bool = False


@dataclass(eq=False, repr=True)
class QueueStatus(Record):
    paused: bool
    queued: int
    in_progress: int
    max_concurrent_runs: int  # -1: no limit
    tag_limits: list[TagLimitUsage] = field(default_factory=list)
    queue_daemon_healthy: bool = False
    run_coordinator: str = ""

    def __post_init__(self) -> None:
        self.tag_limits = [_as(TagLimitUsage, t) for t in self.tag_limits]


__all__ = [
    "Daemon",
    "DaemonStatus",
    "LogLine",
    "QueueStatus",
    "Record",
    "Run",
    "RunAttempt",
    "RunEvent",
    "TagLimitUsage",
]
