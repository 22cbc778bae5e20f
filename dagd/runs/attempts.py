"""Attempts: every launch of a run, and how a worker proves it owns one.

An attempt is born ``DISPATCHED`` in the same transaction that moves its run to ``STARTING`` (or
back to it, for a resume), with a random dispatch token. The worker that receives it claims it
with one compare-and-set on (run, attempt, token, ``DISPATCHED``): a second delivery of the same
attempt, or a stale one, matches nothing and changes nothing. From then on the worker heartbeats
it on the database's clock, and every write it makes (status, logs) is fenced by it: once run
monitoring has declared the attempt ``LOST`` (silent past ``worker_heartbeat_timeout_seconds``, or
its worker died) or the run moved on to another attempt, the old worker's writes match nothing.

::

    DISPATCHED -> CLAIMED     a worker claimed it (the run goes STARTING -> STARTED)
    DISPATCHED -> ABANDONED   superseded before any claim (its dispatcher died; canceled)
    CLAIMED    -> DONE        the worker wrote the run's end status
    CLAIMED    -> LOST        silent past the timeout, or its worker is gone
    CLAIMED    -> ABANDONED   killed after the cancel timeout

A worker also fences itself (see :func:`fence_deadlines`): if it cannot heartbeat for longer
than the timeout minus a margin, by its own monotonic clock, it stops its job before monitoring
may call it lost, so two attempts never run at once.
"""

from __future__ import annotations

import enum
import os
import socket
from dataclasses import dataclass
from datetime import datetime


class AttemptState(str, enum.Enum):
    DISPATCHED = "DISPATCHED"
    CLAIMED = "CLAIMED"
    DONE = "DONE"
    LOST = "LOST"
    ABANDONED = "ABANDONED"


class WorkerHealth(str, enum.Enum):
    """A launcher's word on an attempt's worker. UNKNOWN never fails a run."""

    ALIVE = "ALIVE"
    DEAD = "DEAD"
    UNKNOWN = "UNKNOWN"


@dataclass(frozen=True)
class Attempt:
    run_id: str
    attempt: int
    state: AttemptState
    dispatch_token: str
    dispatched_at: datetime
    epoch: int | None = None
    dispatcher: str | None = None
    queue: str | None = None
    worker: str | None = None
    host: str | None = None
    pid: int | None = None
    pid_started_at: float | None = None
    claimed_at: datetime | None = None
    heartbeat_at: datetime | None = None
    ended_at: datetime | None = None
    end_reason: str | None = None

    def to_json(self) -> dict:
        from dagd.timefmt import rfc3339

        return {
            "attempt": self.attempt,
            "state": self.state.value,
            "host": self.host,
            "pid": self.pid,
            "worker": self.worker,
            "queue": self.queue,
            "dispatched_at": rfc3339(self.dispatched_at),
            "claimed_at": rfc3339(self.claimed_at),
            "heartbeat_at": rfc3339(self.heartbeat_at),
            "ended_at": rfc3339(self.ended_at),
            "end_reason": self.end_reason,
        }


class ClaimOutcome(str, enum.Enum):
    CLAIMED = "CLAIMED"  # this worker owns the attempt: run the job
    CANCELED = "CANCELED"  # the run was canceled before the worker started: it is now CANCELED
    REFUSED = "REFUSED"  # a duplicate or stale delivery: do nothing


@dataclass(frozen=True)
class Claim:
    outcome: ClaimOutcome
    reason: str = ""


def this_process_id() -> str:
    """``host:pid:start time``: who dispatched an attempt, so a dead dispatcher can be recognised."""
    from dagd.processes import create_time

    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{create_time(pid):.2f}"


def dispatcher_alive(dispatcher: str | None) -> bool | None:
    """Whether the process that dispatched an attempt still lives (None: it is on another host)."""
    if not dispatcher:
        return False
    from dagd.processes import process_matches

    host, _, rest = dispatcher.partition(":")
    pid, _, started = rest.partition(":")
    if host != socket.gethostname():
        return None
    try:
        return process_matches(int(pid), float(started))
    except ValueError:
        return False


# A worker's heartbeat period, as a share of the timeout: several beats fit in every timeout.
HEARTBEAT_SHARE = 0.25
MAX_HEARTBEAT_SECONDS = 2.0


def heartbeat_interval(timeout: float) -> float:
    return max(0.05, min(MAX_HEARTBEAT_SECONDS, timeout * HEARTBEAT_SHARE))


def fence_deadlines(timeout: float) -> tuple[float, float]:
    """(freeze_after, kill_after): seconds without a successful heartbeat, measured from the
    start of the last one that succeeded, after which a worker suspends its job, and after which
    the job kills itself. Both are well inside ``timeout``, the silence after which monitoring may
    declare the attempt lost: the heartbeat's database stamp is later than the moment measured
    from, so the job is gone before anyone may start another attempt.
    """
    margin = max(0.5, min(2.0, timeout * 0.2))
    kill_after = max(0.2, timeout - margin)
    freeze_after = max(0.1, kill_after - margin / 2)
    return freeze_after, kill_after
