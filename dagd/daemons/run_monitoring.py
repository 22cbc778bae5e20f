"""The ``run_monitoring`` daemon: no run stays stuck, no worker is lost track of.

Each pass (every ``run_monitoring.poll_interval_seconds``, at the next known deadline, and at once
when the run queue reports a worker exit) reads the runs in progress with their current attempts
and the database's clock in one read, asks the launcher about each claimed attempt's worker, and
applies the pure :func:`dagd.runs.monitoring.check_run`. Every change is a compare-and-set over
the attempt and the run together, so a run that finishes at the same moment is never overwritten,
and a resume or a launch is fenced by the supervisor lease's epoch.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from dagd.daemons.base import Daemon
from dagd.errors import StorageUnavailable
from dagd.runs.attempts import Attempt, AttemptState, WorkerHealth, this_process_id
from dagd.runs.cancel import force_cancel, request_cancel
from dagd.runs.launch import _lease_fence
from dagd.runs.model import Run, RunStatus
from dagd.runs.monitoring import (
    Action,
    Reason,
    Verdict,
    check_run,
    max_runtime,
    next_deadline,
    worker_heartbeat_timeout,
)
from dagd.runs.retries import submit_retries
from dagd.timefmt import utcnow

if TYPE_CHECKING:
    from dagd.instance.instance import Instance

log = logging.getLogger("dagd.daemon.run_monitoring")

# A worker that was alive a moment ago gets this long to write its final status itself.
FINISH_GRACE_SECONDS = 1.0
WATCHED = (RunStatus.STARTING, RunStatus.NOT_STARTED, RunStatus.STARTED, RunStatus.CANCELING)


class RunMonitoringDaemon(Daemon):
    name = "run_monitoring"

    def __init__(self, instance: Instance) -> None:
        super().__init__(instance)
        self.config = instance.config.run_monitoring
        self._warned: set[str] = set()
        self._suspect: dict[tuple[str, int], float] = {}  # (run, attempt) -> when first seen dead
        self.handled = 0
        self._next_deadline: datetime | None = None
        self._clock_offset = 0.0  # database clock - this host's, as of the last pass
        # Failures ended since then are looked at for retries (database clock). At start, the last
        # day: retries are idempotent, so a failure seen twice gets one retry.
        self._retries_since: datetime | None = None
        self._retried: set[str] = set()

    @property
    def interval_seconds(self) -> float:
        # Wake for the next known deadline (a max runtime, a timeout, a silence), not just every poll.
        if self._next_deadline is None:
            return self.config.poll_interval_seconds
        until = (self._next_deadline - utcnow()).total_seconds() - self._clock_offset
        return max(0.05, min(self.config.poll_interval_seconds, until + 0.05))

    def _judge_silence(self) -> bool:
        ok_since = self.storage_ok_since
        return ok_since is not None and time.monotonic() - ok_since >= worker_heartbeat_timeout(self.config)

    def run_iteration(self) -> None:
        if not self.config.enabled:
            self.info = {"enabled": False}
            return
        try:
            now, watched = self.instance.storage.attempts.in_progress(WATCHED)
        except StorageUnavailable:
            self.storage_ok_since = None
            raise
        if self.storage_ok_since is None:
            self.storage_ok_since = time.monotonic()
        self._clock_offset = (now - utcnow()).total_seconds()
        judge_silence = self._judge_silence()
        launcher = self.instance.launcher
        soonest: datetime | None = None
        self._warned.intersection_update(run.run_id for run, _ in watched)  # finished runs: forgotten
        live = set()
        for run, attempt in watched:
            health = WorkerHealth.UNKNOWN
            if attempt is not None and attempt.state == AttemptState.CLAIMED:
                key = (run.run_id, attempt.attempt)
                live.add(key)
                health = launcher.check_health(run, attempt)
                if health == WorkerHealth.DEAD and run.status == RunStatus.STARTED:
                    # The worker may have just written its final status: look again after a grace.
                    first = self._suspect.setdefault(key, time.monotonic())
                    if time.monotonic() - first < FINISH_GRACE_SECONDS:
                        self.wake_later(FINISH_GRACE_SECONDS)
                        continue
            _, warning = max_runtime(run, self.config.max_runtime_seconds)
            if warning and run.run_id not in self._warned:
                self._warned.add(run.run_id)
                log.warning(warning)
            deadline = next_deadline(run, attempt, now, self.config)
            if deadline is not None and (soonest is None or deadline < soonest):
                soonest = deadline
            verdict = check_run(run, attempt, now, self.config, health, judge_silence=judge_silence)
            if verdict is not None:
                self._apply(run, attempt, verdict)
        for key in set(self._suspect) - live:
            del self._suspect[key]
        self._next_deadline = soonest
        self._retry_failures(now)
        self.info = {"watched": len(watched), "handled": self.handled, "judging_silence": judge_silence}

    def _retry_failures(self, now: datetime) -> None:
        """Run retries (:mod:`dagd.runs.retries`) for runs that failed since the last look."""
        if not self.instance.config.run_retries.enabled:
            return
        since = self._retries_since or now - timedelta(days=1)
        _, failed = self.instance.storage.runs.failed_since(since - timedelta(seconds=5))
        fresh = [run for run in failed if run.run_id not in self._retried]
        self._retried = {run.run_id for run in failed}  # seen again in the next pass's overlap: skipped
        for retry in submit_retries(self.instance, fresh):
            log.info(
                "run %s: retry %s of run %s",
                retry.run_id,
                retry.tags.get("dagd/retry_number"),
                retry.tags.get("dagd/parent_run_id"),
            )
        if failed and len(failed) >= 500:
            self._retries_since = failed[-1].ended_at
            self.wake_event.set()
        else:
            self._retries_since = now

    def wake_later(self, seconds: float) -> None:
        timer = threading.Timer(seconds, self.wake_event.set)
        timer.daemon = True
        timer.start()

    def _apply(self, run: Run, attempt: Attempt | None, verdict: Verdict) -> None:
        self.handled += 1
        log.warning("run %s: %s", run.run_id, verdict.message)
        attempts = self.instance.storage.attempts
        silent_for = worker_heartbeat_timeout(self.config) if verdict.reason == Reason.WORKER_LOST else None
        if verdict.action == Action.FAIL:
            if attempt is None:
                self.instance.storage.runs.transition(
                    run.run_id, RunStatus.FAILURE, expected=(run.status,), error=verdict.message
                )
                return
            ending = AttemptState.LOST if run.status == RunStatus.STARTED else AttemptState.ABANDONED
            if attempts.end_with_run(
                run.run_id, attempt.attempt, ending=ending,
                only=(AttemptState.CLAIMED, AttemptState.DISPATCHED), reason=verdict.message,
                run_to=RunStatus.FAILURE, run_from=(run.status,), error=verdict.message, silent_for=silent_for,
            ):  # fmt: skip
                if run.status != RunStatus.STARTED:
                    self._kill(run, attempt)  # a worker that never reported in
                else:
                    self._stop_leftovers(run, attempt)
        elif verdict.action == Action.KILL_CANCELED:
            force_cancel(self.instance, run, verdict.message)
        elif verdict.action == Action.TERMINATE:
            request_cancel(self.instance, run.run_id, verdict.message)
        elif verdict.action == Action.RESUME:
            assert attempt is not None
            self._resume(run, attempt, verdict, silent_for)

    def _stop_leftovers(self, run: Run, attempt: Attempt) -> None:
        """A dead worker's job may have left processes; a lost (silent) one fences itself."""
        if self.instance.launcher.check_health(run, attempt) == WorkerHealth.DEAD:
            self._kill(run, attempt)

    def _kill(self, run: Run, attempt: Attempt) -> None:
        try:
            self.instance.launcher.terminate(run, attempt, force=True)
        except Exception as exc:
            log.warning("run %s: could not stop attempt %d: %s", run.run_id, attempt.attempt, exc)

    def _resume(self, run: Run, attempt: Attempt, verdict: Verdict, silent_for: float | None) -> None:
        moved = self.instance.storage.attempts.next_attempt(
            run.run_id,
            attempt.attempt,
            ending=AttemptState.LOST,
            only=(AttemptState.CLAIMED,),
            reason=verdict.message,
            from_status=RunStatus.STARTED,
            message=verdict.message,
            epoch=self.instance.fence_epoch,
            fence=_lease_fence(self.instance),
            dispatcher=this_process_id(),
            silent_for=silent_for,
            resume=True,
        )
        if moved is None:
            return
        self._stop_leftovers(run, attempt)
        resumed, new = moved
        try:
            handle = self.instance.launcher.resume(resumed, new)
            if handle.pid is not None:
                self.instance.storage.attempts.record_launches(
                    [(run.run_id, new.attempt, handle.pid, handle.started_at, handle.host)]
                )
        except Exception as exc:
            self.instance.storage.attempts.end_with_run(
                run.run_id, new.attempt, ending=AttemptState.ABANDONED, only=(AttemptState.DISPATCHED,),
                reason=f"resume failed: {exc}", run_to=RunStatus.FAILURE, run_from=(RunStatus.STARTING,),
                error=f"resume failed: {exc}",
            )  # fmt: skip

    def close(self) -> None:
        self.instance.close()
