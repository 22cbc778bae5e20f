"""Run monitoring's rules: what to do about one run in progress (pure, no I/O).

:func:`check_run` looks at a run, its current attempt, the database's clock and what the launcher
says of the attempt's worker, and returns a :class:`Verdict` or None:

- STARTING / NOT_STARTED past ``start_timeout_seconds`` (since its attempt was dispatched): FAIL.
- CANCELING whose worker is gone, or past ``cancel_timeout_seconds``: KILL_CANCELED.
- STARTED whose worker the launcher reports DEAD (``WORKER_DIED``), or whose attempt has not
  heartbeat for ``worker_heartbeat_timeout_seconds`` by the database's clock (``WORKER_LOST``,
  a killed or frozen worker, or one cut off): RESUME as a new attempt while the job is resumable
  and ``max_resume_run_attempts`` allows, else FAIL with the reason. Silence is judged only when
  ``judge_silence`` (monitoring itself has read storage for longer than the timeout: a database
  outage is nobody's silence).
- STARTED past its ``dagd/max_runtime`` tag (or ``max_runtime_seconds``): TERMINATE.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from dagd.runs.attempts import Attempt, AttemptState, WorkerHealth
from dagd.runs.model import RESUMABLE_TAG, Run, RunStatus, check_max_runtime

if TYPE_CHECKING:
    from dagd.instance.config import RunMonitoringConfig

DEFAULT_WORKER_HEARTBEAT_TIMEOUT = 30.0


class Action(str, enum.Enum):
    FAIL = "fail"
    KILL_CANCELED = "kill_canceled"
    TERMINATE = "terminate"
    RESUME = "resume"


class Reason(str, enum.Enum):
    START_TIMEOUT = "START_TIMEOUT"
    CANCEL_TIMEOUT = "CANCEL_TIMEOUT"
    WORKER_DIED = "WORKER_DIED"
    WORKER_LOST = "WORKER_LOST"
    MAX_RUNTIME = "MAX_RUNTIME"


@dataclass(frozen=True)
class Verdict:
    action: Action
    reason: Reason
    message: str


@dataclass(frozen=True)
class Loss:
    """Why a STARTED run's worker is taken for lost, before it is decided to resume or fail."""

    reason: Reason  # WORKER_DIED or WORKER_LOST
    what: str  # what was seen, for the verdict's message


def worker_heartbeat_timeout(config: RunMonitoringConfig) -> float:
    return float(
        getattr(config, "worker_heartbeat_timeout_seconds", None) or DEFAULT_WORKER_HEARTBEAT_TIMEOUT
    )


def max_runtime(run: Run, default: float) -> tuple[float | None, str | None]:
    """The run's limit in seconds (None: none) and a warning for an invalid tag."""
    try:  # refused at submission since 2026-11; runs stored before may still carry a bad value
        value = check_max_runtime(run.tags)
    except ValueError as exc:
        return (default or None), f"run {run.run_id}: ignoring it: {exc}"
    return (value if value is not None else default or None), None


def _since(run: Run, attempt: Attempt | None) -> datetime:
    if attempt is not None and run.status == RunStatus.STARTING:
        return attempt.dispatched_at
    return run.updated_at or run.created_at


def next_deadline(
    run: Run, attempt: Attempt | None, now: datetime, config: RunMonitoringConfig
) -> datetime | None:
    """When this run next needs a look even if nothing happens (a timeout, a max runtime, silence)."""
    since = _since(run, attempt)
    if run.status in (RunStatus.STARTING, RunStatus.NOT_STARTED):
        # Look again soon: once its worker reports in, a max runtime may start counting.
        return min(since + timedelta(seconds=config.start_timeout_seconds), now + timedelta(seconds=1))
    if run.status == RunStatus.CANCELING:
        return since + timedelta(seconds=config.cancel_timeout_seconds)
    if run.status != RunStatus.STARTED:
        return None
    soonest = None
    if attempt is not None and attempt.heartbeat_at is not None:
        soonest = attempt.heartbeat_at + timedelta(seconds=worker_heartbeat_timeout(config))
    limit, _ = max_runtime(run, config.max_runtime_seconds)
    if limit is not None and run.started_at is not None:
        try:
            ends = run.started_at + timedelta(seconds=limit)
        except OverflowError:  # past the year 9999: no deadline worth waking for
            ends = None
        if ends is not None and (soonest is None or ends < soonest):
            soonest = ends
    return soonest


def check_run(
    run: Run,
    attempt: Attempt | None,
    now: datetime,
    config: RunMonitoringConfig,
    health: WorkerHealth,
    *,
    judge_silence: bool = True,
) -> Verdict | None:
    """What to do about one in-progress run, or None (``now``: the database's clock)."""
    age = (now - _since(run, attempt)).total_seconds()
    if run.status in (RunStatus.STARTING, RunStatus.NOT_STARTED):
        if age > config.start_timeout_seconds:
            return Verdict(
                Action.FAIL,
                Reason.START_TIMEOUT,
                f"START_TIMEOUT: no worker started within {config.start_timeout_seconds:g}s",
            )
        return None
    if run.status == RunStatus.CANCELING:
        if health == WorkerHealth.DEAD:
            return Verdict(Action.KILL_CANCELED, Reason.CANCEL_TIMEOUT, "canceled: the run's worker is gone")
        if age > config.cancel_timeout_seconds:
            return Verdict(
                Action.KILL_CANCELED,
                Reason.CANCEL_TIMEOUT,
                f"still running {config.cancel_timeout_seconds:g}s after cancel: killed",
            )
        return None
    if run.status != RunStatus.STARTED:
        return None
    lost = _lost(run, attempt, now, config, health, judge_silence)
    if lost is not None:
        if run.tags.get(RESUMABLE_TAG) == "true" and run.resumes < config.max_resume_run_attempts:
            return Verdict(
                Action.RESUME,
                lost.reason,
                f"{lost.what}; resuming as attempt {run.attempt + 1} (resume {run.resumes + 1})",
            )
        return Verdict(Action.FAIL, lost.reason, f"{lost.reason.value}: {lost.what}")
    limit, _ = max_runtime(run, config.max_runtime_seconds)
    if limit is not None and run.started_at is not None:
        runtime = (now - run.started_at).total_seconds()
        if runtime > limit:
            return Verdict(
                Action.TERMINATE,
                Reason.MAX_RUNTIME,
                f"MAX_RUNTIME: ran {runtime:.1f}s, over its limit of {limit:g}s",
            )
    return None


def _lost(
    run: Run,
    attempt: Attempt | None,
    now: datetime,
    config: RunMonitoringConfig,
    health: WorkerHealth,
    judge_silence: bool,
) -> Loss | None:
    where = f"attempt {run.attempt}" + (
        f" on {attempt.host} (pid {attempt.pid})" if attempt and attempt.host else ""
    )
    if health == WorkerHealth.DEAD:
        return Loss(Reason.WORKER_DIED, f"the run's worker ({where}) is gone")
    if (
        attempt is None
        or attempt.state != AttemptState.CLAIMED
        or attempt.heartbeat_at is None
        or not judge_silence
    ):
        return None
    timeout = worker_heartbeat_timeout(config)
    silent = (now - attempt.heartbeat_at).total_seconds()
    if silent > timeout:
        return Loss(
            Reason.WORKER_LOST,
            f"the run's worker ({where}) sent no heartbeat for {silent:.1f}s (timeout {timeout:g}s)",
        )
    return None
