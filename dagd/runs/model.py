"""The run record and its status lifecycle.

The legal moves between statuses are listed in one table, :data:`TRANSITIONS`. Storage applies a
change as a compare-and-set (``UPDATE ... WHERE status = <from>``), which is what makes a claim
atomic across processes and hosts.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass, field
from datetime import datetime


class RunStatus(str, enum.Enum):
    QUEUED = "QUEUED"
    NOT_STARTED = "NOT_STARTED"
    STARTING = "STARTING"
    STARTED = "STARTED"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    CANCELING = "CANCELING"
    CANCELED = "CANCELED"

    @property
    def is_finished(self) -> bool:
        return self in FINISHED_STATUSES


# The status groups, defined here only: the run queue, the queue status, `dagctl`, and the web UI's
# Runs tabs and their counts all read these (a tab and its count once disagreed on NOT_STARTED).
QUEUED_STATUSES = frozenset({RunStatus.QUEUED})
FINISHED_STATUSES = frozenset({RunStatus.SUCCESS, RunStatus.FAILURE, RunStatus.CANCELED})
# What counts against concurrency limits and as "in progress" (Dagster's definition, kept on
# purpose). NOT_STARTED is in no group but "all", as in Dagster's UI: a run being launched at once
# by the default coordinator, where no limits apply.
IN_PROGRESS_STATUSES = frozenset({RunStatus.STARTING, RunStatus.STARTED, RunStatus.CANCELING})
# Launched and not being canceled: what a cancel moves to CANCELING (the rest of IN_PROGRESS).
LAUNCHED_STATUSES = frozenset({RunStatus.STARTING, RunStatus.STARTED})

_S = RunStatus
# from -> allowed targets. Anything not listed is a bug in the caller and fails loudly.
TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    # QUEUED -> NOT_STARTED: dequeued by the run queue; QUEUED -> CANCELED: canceled before launch.
    _S.QUEUED: frozenset({_S.NOT_STARTED, _S.STARTING, _S.CANCELED, _S.FAILURE}),
    # NOT_STARTED -> STARTING: handed to the launcher.
    _S.NOT_STARTED: frozenset({_S.STARTING, _S.FAILURE, _S.CANCELED, _S.QUEUED}),
    # STARTING -> STARTED: the worker reported in.
    # STARTING -> QUEUED: the launch failed and the queue may retry it (max_launch_retries).
    _S.STARTING: frozenset({_S.STARTED, _S.FAILURE, _S.CANCELING, _S.CANCELED, _S.SUCCESS, _S.QUEUED}),
    # STARTED -> STARTING: the worker died and run monitoring gives the run a new one (resume).
    _S.STARTED: frozenset({_S.SUCCESS, _S.FAILURE, _S.CANCELING, _S.STARTING}),
    # CANCELING -> SUCCESS/FAILURE: the job finished before the signal took effect.
    _S.CANCELING: frozenset({_S.CANCELED, _S.FAILURE, _S.SUCCESS}),
    _S.SUCCESS: frozenset(),
    _S.FAILURE: frozenset(),
    _S.CANCELED: frozenset(),
}


PRIORITY_TAG = "dagd/priority"
MAX_RUNTIME_TAG = "dagd/max_runtime"
BACKFILL_TAG = "dagd/backfill"
# Set from @job(resumable=True) at submission: run monitoring may give the run a new worker.
RESUMABLE_TAG = "dagd/resumable"
# Run retries (Dagster's run_retries): a retry is a new run linked to its parent and root.
MAX_RETRIES_TAG = "dagd/max_retries"
PARENT_RUN_TAG = "dagd/parent_run_id"
ROOT_RUN_TAG = "dagd/root_run_id"
RETRY_NUMBER_TAG = "dagd/retry_number"


# The Celery launcher routes a run to this queue (docs/cluster.md). A name RabbitMQ and Redis both
# take as is, and Celery needs no escaping for: letters, digits and _ . : - (at most 200).
QUEUE_TAG = "dagd/queue"
QUEUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$")


def describe_queue_name(name: str) -> str:
    """The rule, for an error message naming ``name``."""
    shown = name if len(name) <= 40 else name[:40] + "..."
    return f"must be a queue name of letters, digits and _ . : - (at most 200), got {shown!r}"


def check_queue_tag(tags: dict[str, str]) -> str | None:
    """The run's ``dagd/queue`` (None: not set); raises ValueError naming a bad value."""
    raw = tags.get(QUEUE_TAG)
    if raw is None:
        return None
    if not QUEUE_NAME.match(str(raw)):
        raise ValueError(f"tag {QUEUE_TAG} {describe_queue_name(str(raw))}")
    return str(raw)


def check_max_retries(tags: dict[str, str]) -> int | None:
    """The run's ``dagd/max_retries`` (None: not set); raises ValueError naming a bad value."""
    raw = tags.get(MAX_RETRIES_TAG)
    if raw is None:
        return None
    try:
        value = int(str(raw).strip())
    except ValueError:
        value = -1
    if not 0 <= value <= 100:
        raise ValueError(f"tag {MAX_RETRIES_TAG} must be an integer from 0 to 100, got {str(raw)[:40]!r}")
    return value


# The priority column is a 32-bit integer on PostgreSQL.
MIN_PRIORITY, MAX_PRIORITY = -(2**31), 2**31 - 1


def check_max_runtime(tags: dict[str, str]) -> float | None:
    """The run's ``dagd/max_runtime`` in seconds (None: not set); raises ValueError naming a bad value."""
    raw = tags.get(MAX_RUNTIME_TAG)
    if raw is None:
        return None
    try:
        value = float(str(raw).strip())
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:  # nan and inf parse as floats too
        raise ValueError(f"tag {MAX_RUNTIME_TAG} must be a number of seconds > 0, got {str(raw)[:40]!r}")
    return value


def parse_priority(tags: dict[str, str]) -> int:
    """The run's priority from its tags; raises ValueError naming the bad value."""
    raw = tags.get(PRIORITY_TAG)
    if raw is None:
        return 0
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise ValueError(f"tag {PRIORITY_TAG} must be an integer, got {str(raw)[:40]!r}") from None
    if not MIN_PRIORITY <= value <= MAX_PRIORITY:
        raise ValueError(
            f"tag {PRIORITY_TAG} must be between {MIN_PRIORITY} and {MAX_PRIORITY}, got {str(raw)[:40]!r}"
        )
    return value


@dataclass(frozen=True)
class Run:
    run_id: str
    job_name: str
    status: RunStatus
    tags: dict[str, str]
    run_config: dict
    priority: int
    created_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    updated_at: datetime | None = None
    seq: int = 0
    worker_pid: int | None = None
    worker_started_at: float | None = None
    worker_heartbeat_at: datetime | None = None
    error: str | None = None
    code_location: str | None = None
    # The current attempt (1 for the first launch, 0 before any) and the host it runs on.
    attempt: int = 0
    host: str | None = None
    launch_failures: int = 0
    resumes: int = 0
    launch_not_before: datetime | None = None  # held after a failed launch until then

    def to_json(self) -> dict:
        from dagd.timefmt import rfc3339

        return {
            "run_id": self.run_id,
            "job_name": self.job_name,
            "status": self.status.value,
            "tags": dict(self.tags),
            "priority": self.priority,
            "run_config": self.run_config,
            "created_at": rfc3339(self.created_at),
            "started_at": rfc3339(self.started_at),
            "ended_at": rfc3339(self.ended_at),
            "error": self.error,
            "worker_pid": self.worker_pid,
            "attempt": self.attempt,
            "host": self.host,
        }


@dataclass(frozen=True)
class RunEvent:
    run_id: str
    at: datetime
    kind: str  # "status" or "info"
    status: RunStatus | None
    message: str


@dataclass(frozen=True)
class LogLine:
    seq: int
    run_id: str
    at: datetime
    stream: str  # "log", "stdout", "stderr"
    level: str
    message: str


@dataclass
class RunFilter:
    statuses: list[RunStatus] = field(default_factory=list)
    job_name: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    limit: int = 100
    before_seq: int | None = None  # pagination cursor: runs older than this sequence number
