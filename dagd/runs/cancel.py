"""Canceling runs, through the launcher only.

- A run not launched yet (QUEUED, NOT_STARTED) is CANCELED at once.
- A run whose attempt no worker has claimed yet is CANCELED at once and its attempt ABANDONED, in
  one transaction: a worker that comes later finds its token dead and does nothing.
- A run with a worker goes CANCELING, and the launcher is asked to stop that attempt. The worker
  (which also sees CANCELING in its next heartbeat, wherever it runs) stops its job (SIGTERM,
  then SIGKILL after the grace) and writes CANCELED itself. Run monitoring finishes the cancel if
  the worker is gone or does not within ``cancel_timeout_seconds``.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from dagd.runs.attempts import Attempt, AttemptState
from dagd.runs.model import IN_PROGRESS_STATUSES, LAUNCHED_STATUSES, Run, RunStatus

if TYPE_CHECKING:
    from dagd.instance.instance import Instance

log = logging.getLogger("dagd.cancel")

TERMINATE_GRACE_SECONDS = 5.0


def request_cancel(instance: Instance, run_id: str, message: str = "terminate requested") -> tuple[Run, bool]:
    """Cancel a run (see the module's docstring); (the run now, whether this call changed it)."""
    runs = instance.storage.runs
    attempts = instance.storage.attempts
    for _ in range(5):  # a concurrent status change can beat us; re-read and retry
        run = runs.require(run_id)
        if run.status.is_finished:
            return run, False
        if run.status in (RunStatus.QUEUED, RunStatus.NOT_STARTED):
            done = runs.transition(run_id, RunStatus.CANCELED, expected=(run.status,), message="terminated")
            if done is not None:
                return done, True
            continue
        attempt = attempts.get(run_id, run.attempt) if run.attempt else None
        if run.status == RunStatus.STARTING and (attempt is None or attempt.state == AttemptState.DISPATCHED):
            if attempt is not None and attempts.end_with_run(
                run_id, attempt.attempt, ending=AttemptState.ABANDONED, only=(AttemptState.DISPATCHED,),
                reason="canceled before a worker claimed it", run_to=RunStatus.CANCELED,
                run_from=(RunStatus.STARTING,), error=None,
            ):  # fmt: skip
                return runs.require(run_id), True
            if attempt is None and runs.transition(
                run_id, RunStatus.CANCELED, expected=(RunStatus.STARTING,), message="terminated"
            ):
                return runs.require(run_id), True
            continue
        changed = False
        if run.status != RunStatus.CANCELING:
            moved = runs.transition(
                run_id, RunStatus.CANCELING, expected=sorted(LAUNCHED_STATUSES), message=message
            )
            if moved is None:
                continue
            run, changed = moved, True
        if attempt is not None:
            _ask_launcher(instance, run, attempt)
        return run, changed
    return runs.require(run_id), False


def _ask_launcher(instance: Instance, run: Run, attempt: Attempt) -> None:
    try:
        instance.launcher.terminate(run, attempt)
    except Exception as exc:  # the worker still sees CANCELING in its heartbeat
        log.warning("run %s: the launcher could not signal attempt %d: %s", run.run_id, attempt.attempt, exc)


def force_cancel(instance: Instance, run: Run, reason: str) -> bool:
    """Make sure nothing of the run's attempt is left (launcher, ``force``), then CANCELED."""
    attempts = instance.storage.attempts
    attempt = attempts.get(run.run_id, run.attempt) if run.attempt else None
    if attempt is not None:
        try:
            instance.launcher.terminate(run, attempt, force=True)
        except Exception as exc:
            log.warning(
                "run %s: the launcher could not kill attempt %d: %s", run.run_id, attempt.attempt, exc
            )
        return attempts.end_with_run(
            run.run_id, attempt.attempt, ending=AttemptState.ABANDONED,
            only=(AttemptState.CLAIMED, AttemptState.DISPATCHED), reason=reason, run_to=RunStatus.CANCELED,
            run_from=(RunStatus.CANCELING,), error=None,
        )  # fmt: skip
    return (
        instance.storage.runs.transition(
            run.run_id, RunStatus.CANCELED, expected=(RunStatus.CANCELING,), message=reason
        )
        is not None
    )


def cancel_runs_in_progress(instance: Instance, message: str, grace: float = TERMINATE_GRACE_SECONDS) -> int:
    """Cancel every run that has (or is about to get) a worker and wait until the workers are gone.

    ``dagctl dev`` calls this after its supervisor stopped: a local session leaves no process
    behind. (``dagctl daemon run`` does not: there, runs outlive a supervisor restart.)
    """
    runs = instance.storage.runs
    pending = [run.run_id for run in runs.with_status(IN_PROGRESS_STATUSES)]
    total = len(pending)
    for run_id in pending:
        request_cancel(instance, run_id, message)
    deadline = time.monotonic() + grace + 1.0  # the workers' own grace, and a little to write
    while pending and time.monotonic() < deadline:
        pending = [r for r in pending if not runs.require(r).status.is_finished]
        if pending:
            time.sleep(0.05)
    for run_id in pending:
        run = runs.require(run_id)
        if run.status == RunStatus.CANCELING:
            force_cancel(instance, run, f"{message}: killed after {grace:g}s")
    return total
