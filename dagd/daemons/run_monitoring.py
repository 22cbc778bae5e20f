"""The ``run_monitoring`` daemon: no run stays stuck, no worker is lost track of.

Each pass (every ``run_monitoring.poll_interval_seconds``, and at once when the run queue reports a
worker exit):

- STARTING / NOT_STARTED past ``start_timeout_seconds``: FAILURE (START_TIMEOUT); its worker, if
  any, is killed.
- CANCELING past ``cancel_timeout_seconds``: the worker's process group is killed; CANCELED.
- STARTED whose worker is gone (pid *and* process start time, so a reused pid is not mistaken for
  it): FAILURE (WORKER_DIED), or for ``@job(resumable=True)`` while attempts remain, a new worker.
- STARTED past its ``dagd/max_runtime`` tag (or ``max_runtime_seconds``): terminated, with why.

The decisions are the pure :func:`check_run`; the daemon applies them with compare-and-set
transitions, so a run that finishes at the same moment is never overwritten.
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from dagd.daemons.base import Daemon
from dagd.run_launcher import signal_group
from dagd.runs.cancel import finish_cancel, kill_worker_group
from dagd.runs.model import RESUMABLE_TAG, Run, RunStatus, check_max_runtime
from dagd.timefmt import utcnow

if TYPE_CHECKING:
    from dagd.instance.config import RunMonitoringConfig
    from dagd.instance.instance import Instance

log = logging.getLogger("dagd.daemon.run_monitoring")

START_TIMEOUT, CANCEL_TIMEOUT, WORKER_DIED, MAX_RUNTIME = (
    "START_TIMEOUT",
    "CANCEL_TIMEOUT",
    "WORKER_DIED",
    "MAX_RUNTIME",
)
# A worker that was alive a moment ago gets this long to write its final status itself.
FINISH_GRACE_SECONDS = 1.0


@dataclass(frozen=True)
class Verdict:
    action: str  # "fail", "cancel_kill", "terminate", "resume", "check_again"
    reason: str
    message: str


def max_runtime(run: Run, default: float) -> tuple[float | None, str | None]:
    """The run's limit in seconds (None: none) and a warning for an invalid tag."""
    try:  # refused at submission since 2026-11; runs stored before may still carry a bad value
        value = check_max_runtime(run.tags)
    except ValueError as exc:
        return (default or None), f"run {run.run_id}: ignoring it: {exc}"
    return (value if value is not None else default or None), None


def next_deadline(run: Run, config: RunMonitoringConfig) -> datetime | None:
    """When this run's status next needs a look even if nothing happens (a timeout or max runtime)."""
    since = run.updated_at or run.created_at
    if run.status in (RunStatus.STARTING, RunStatus.NOT_STARTED):
        # Look again soon: once its worker reports in, a max runtime may start counting.
        return min(since + timedelta(seconds=config.start_timeout_seconds), utcnow() + timedelta(seconds=1))
    if run.status == RunStatus.CANCELING:
        return since + timedelta(seconds=config.cancel_timeout_seconds)
    limit, _ = max_runtime(run, config.max_runtime_seconds)
    if run.status == RunStatus.STARTED and limit is not None and run.started_at is not None:
        try:
            return run.started_at + timedelta(seconds=limit)
        except OverflowError:  # past the year 9999: no deadline worth waking for
            return None
    return None


def check_run(
    run: Run, now: datetime, config: RunMonitoringConfig, worker_alive: bool | None, resume_attempts: int
) -> Verdict | None:
    """What to do about one in-progress run, or None. ``worker_alive`` is None when unknown."""
    since = run.updated_at or run.created_at
    age = (now - since).total_seconds()
    if run.status in (RunStatus.STARTING, RunStatus.NOT_STARTED):
        if age > config.start_timeout_seconds:
            return Verdict(
                "fail",
                START_TIMEOUT,
                f"START_TIMEOUT: no worker started within {config.start_timeout_seconds:g}s",
            )
        return None
    if run.status == RunStatus.CANCELING:
        if age > config.cancel_timeout_seconds:
            return Verdict(
                "cancel_kill",
                CANCEL_TIMEOUT,
                f"still running {config.cancel_timeout_seconds:g}s after cancel: killed",
            )
        return None
    if run.status != RunStatus.STARTED:
        return None
    if worker_alive is False:
        if run.tags.get(RESUMABLE_TAG) == "true" and resume_attempts < config.max_resume_run_attempts:
            return Verdict("resume", WORKER_DIED, f"worker died; resuming (attempt {resume_attempts + 1})")
        return Verdict("fail", WORKER_DIED, f"WORKER_DIED: the run's worker (pid {run.worker_pid}) is gone")
    limit, _ = max_runtime(run, config.max_runtime_seconds)
    if limit is not None and run.started_at is not None:
        runtime = (now - run.started_at).total_seconds()
        if runtime > limit:
            return Verdict(
                "terminate", MAX_RUNTIME, f"MAX_RUNTIME: ran {runtime:.1f}s, over its limit of {limit:g}s"
            )
    return None


class RunMonitoringDaemon(Daemon):
    name = "run_monitoring"

    def __init__(self, instance: Instance) -> None:
        super().__init__(instance)
        self.config = instance.config.run_monitoring
        self._warned: set[str] = set()
        self._suspect: dict[str, datetime] = {}  # run id -> when its worker was first seen gone
        self.handled = 0
        self._next_deadline: datetime | None = None

    @property
    def interval_seconds(self) -> float:
        # Wake for the next known deadline (a max runtime, a timeout), not just every poll.
        if self._next_deadline is None:
            return self.config.poll_interval_seconds
        until = (self._next_deadline - utcnow()).total_seconds()
        return max(0.05, min(self.config.poll_interval_seconds, until + 0.05))

    def run_iteration(self) -> None:
        if not self.config.enabled:
            self.info = {"enabled": False}
            return
        runs = self.instance.storage.runs
        launcher = self.instance.launcher
        watched = runs.with_status(
            [RunStatus.STARTING, RunStatus.NOT_STARTED, RunStatus.STARTED, RunStatus.CANCELING]
        )
        now = utcnow()
        soonest: datetime | None = None
        self._warned.intersection_update(run.run_id for run in watched)  # finished runs: forgotten
        for run in watched:
            alive: bool | None = None
            if run.status == RunStatus.STARTED and run.worker_pid:
                alive = launcher.is_alive(run)
                if not alive:
                    # The worker may have just written its final status: confirm on a fresh read.
                    first = self._suspect.setdefault(run.run_id, now)
                    if (now - first).total_seconds() < FINISH_GRACE_SECONDS:
                        self.wake_later(FINISH_GRACE_SECONDS)
                        continue
                    fresh = runs.get(run.run_id)
                    if (
                        fresh is None
                        or fresh.status != RunStatus.STARTED
                        or fresh.worker_pid != run.worker_pid
                    ):
                        self._suspect.pop(run.run_id, None)
                        continue
                else:
                    self._suspect.pop(run.run_id, None)
            _, warning = max_runtime(run, self.config.max_runtime_seconds)
            if warning and run.run_id not in self._warned:
                self._warned.add(run.run_id)
                log.warning(warning)
            deadline = next_deadline(run, self.config)
            if deadline is not None and (soonest is None or deadline < soonest):
                soonest = deadline
            attempts = self._resume_attempts(run) if alive is False else 0
            verdict = check_run(run, now, self.config, alive, attempts)
            if verdict is not None:
                self._apply(run, verdict)
        self._next_deadline = soonest
        self.info = {"watched": len(watched), "handled": self.handled}

    def wake_later(self, seconds: float) -> None:
        threading.Timer(seconds, self.wake_event.set).start()

    def _resume_attempts(self, run: Run) -> int:
        return sum(
            1
            for e in self.instance.storage.runs.events(run.run_id)
            if e.message.startswith("worker died; resuming")
        )

    def _apply(self, run: Run, verdict: Verdict) -> None:
        runs = self.instance.storage.runs
        self.handled += 1
        log.warning("run %s: %s", run.run_id, verdict.message)
        if verdict.action == "fail":
            if run.worker_pid and self.instance.launcher.is_alive(run):
                signal_group(run.worker_pid, signal.SIGKILL)
            runs.transition(run.run_id, RunStatus.FAILURE, expected=(run.status,), error=verdict.message)
        elif verdict.action == "cancel_kill":
            kill_worker_group(run)
            runs.transition(
                run.run_id, RunStatus.CANCELED, expected=(RunStatus.CANCELING,), message=verdict.message
            )
        elif verdict.action == "terminate":
            if runs.transition(
                run.run_id, RunStatus.CANCELING, expected=(RunStatus.STARTED,), message=verdict.message
            ):
                threading.Thread(target=finish_cancel, args=(self.instance, run.run_id), daemon=True).start()
        elif verdict.action == "resume":
            self._suspect.pop(run.run_id, None)
            resumed = runs.transition(
                run.run_id, RunStatus.STARTING, expected=(RunStatus.STARTED,), message=verdict.message
            )
            if resumed is not None:
                try:
                    handle = self.instance.launcher.launch(resumed)
                except Exception as exc:
                    runs.transition(
                        run.run_id,
                        RunStatus.FAILURE,
                        expected=(RunStatus.STARTING,),
                        error=f"resume failed: {exc}",
                    )
                    return
                runs.record_worker(run.run_id, handle.pid, handle.started_at)

    def close(self) -> None:
        self.instance.close()
