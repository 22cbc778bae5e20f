"""Claim and launch: runs -> STARTING with a new DISPATCHED attempt each, then their workers.

The claim is one compare-and-set transaction for a batch (see ``RunStore.claim_many``), fenced by
the instance's lease epoch: a run another process canceled or claimed first, or every run if our
lease was taken over, is left out and nothing is launched for it. Each claimed attempt is then
handed to the launcher; a launcher error puts the run back in the queue while launch retries
remain (counted in ``runs.launch_failures``), held for an exponential backoff with jitter
(``runs.launch_not_before``, on the database's clock), or fails it.

Orphaned dispatches (:func:`redispatch_orphans`): an attempt dispatched by a process that died
before its worker claimed it (the run_queue daemon killed between claim and launch) is superseded
by a new attempt within seconds, not after ``start_timeout_seconds``; its token is dead, so a
late worker for it claims nothing.
"""

from __future__ import annotations

import logging
import os
import random
import signal
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dagd.runs.attempts import Attempt, AttemptState, dispatcher_alive, this_process_id
from dagd.runs.model import Run, RunStatus
from dagd.runs.plugins import WorkerHandle

if TYPE_CHECKING:
    from dagd.instance.instance import Instance

log = logging.getLogger("dagd.launch")

# A dispatched attempt whose dispatcher is gone and that no worker claimed for this long (database
# clock) is superseded. Local workers claim within milliseconds of being dispatched.
ORPHAN_AFTER_SECONDS = 2.0
# Test hook, inert unless set: the path of a marker file. The first process to claim runs while
# it does not exist creates it and SIGKILLs itself before starting their workers.
FAULT_KILL_AFTER_CLAIM = "DAGD_FAULT_KILL_AFTER_CLAIM"


@dataclass(frozen=True)
class Launch:
    """One run this process claimed, its attempt, and the worker started for it (None: the
    launcher failed, and the run was failed or, with retries left, put back in the queue)."""

    run: Run
    attempt: Attempt
    handle: WorkerHandle | None
    retry_in: float | None = None  # the launch failed and the run is queued again, held this long


def _lease_fence(instance: Instance) -> tuple[str, int] | None:
    from dagd.storage.leases import SUPERVISOR_LEASE

    epoch = instance.fence_epoch
    return (SUPERVISOR_LEASE, epoch) if epoch is not None else None


def _fault_kill_after_claim() -> None:
    marker = os.environ.get(FAULT_KILL_AFTER_CLAIM)
    if marker and not os.path.exists(marker):
        with open(marker, "w") as handle:
            handle.write(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)


def launch_runs(
    instance: Instance,
    run_ids: Sequence[str],
    *,
    expected: Sequence[RunStatus],
    retries: int = 0,
    backoff: tuple[float, float] = (1.0, 60.0),
    map_fn: Callable[..., Iterable[Launch]] = map,
    queue_of: dict[str, str | None] | None = None,
) -> list[Launch]:
    """Claim ``run_ids`` (-> STARTING, a new attempt each) and start a worker for each claimed.

    Workers are started through ``map_fn`` (e.g. a thread pool's ``map``). Only the returned runs
    were claimed by this call. ``queue_of`` records each run's broker queue on its attempt.
    """
    claimed = instance.storage.runs.claim_many(
        run_ids,
        expected=expected,
        claim_epoch=instance.fence_epoch,
        fence=_lease_fence(instance),
        dispatcher=this_process_id(),
        queue_of=queue_of,
    )
    if claimed:
        _fault_kill_after_claim()

    def start(item: tuple[Run, Attempt]) -> Launch:
        run, attempt = item
        handle, retry_in = _start_worker(instance, run, attempt, expected, retries, backoff)
        return Launch(run, attempt, handle, retry_in)

    launches = list(map_fn(start, claimed))
    record_launches(instance, launches)
    return launches


def record_launches(instance: Instance, launches: Sequence[Launch]) -> None:
    """Where each launched worker runs, so a worker that never claims can still be stopped."""
    instance.storage.attempts.record_launches(
        [
            (x.run.run_id, x.attempt.attempt, x.handle.pid, x.handle.started_at, x.handle.host)
            for x in launches
            if x.handle is not None and x.handle.pid is not None
        ]
    )


def launch_retry_delay(failures: int, initial: float, cap: float, jitter: float) -> float:
    """Seconds before launch retry number ``failures`` (1, 2, ...): ``initial * 2^(failures-1)``,
    at most ``cap``, scaled by ``jitter`` in [0.5, 1] (equal jitter: runs that failed together do
    not all come back at the same moment, and none comes back sooner than half its delay)."""
    base = min(cap, initial * 2 ** max(0, failures - 1))
    return base * min(1.0, max(0.5, jitter))


def _start_worker(
    instance: Instance,
    run: Run,
    attempt: Attempt,
    expected: Sequence[RunStatus],
    retries: int,
    backoff: tuple[float, float] = (1.0, 60.0),
) -> tuple[WorkerHandle | None, float | None]:
    """Start the attempt's worker; on a launcher error, put the run back in the queue after a
    backoff (retries left; returns the delay) or fail it."""
    runs = instance.storage.runs
    try:
        return instance.launcher.launch(run, attempt), None
    except Exception as exc:
        failures = runs.count_launch_failure(run.run_id)
        attempts = instance.storage.attempts
        if RunStatus.QUEUED in expected and failures <= retries:
            delay = launch_retry_delay(failures, *backoff, jitter=random.uniform(0.5, 1.0))
            attempts.end_with_run(
                run.run_id, attempt.attempt, ending=AttemptState.ABANDONED, only=(AttemptState.DISPATCHED,),
                reason=f"launch failed ({exc}); back in the queue, retry {failures} of {retries} in {delay:.1f}s",
                run_to=RunStatus.QUEUED, run_from=(RunStatus.STARTING,), hold_seconds=delay,
            )  # fmt: skip
            return None, delay
        attempts.end_with_run(
            run.run_id, attempt.attempt, ending=AttemptState.ABANDONED, only=(AttemptState.DISPATCHED,),
            reason=f"launch failed: {exc}", run_to=RunStatus.FAILURE, run_from=(RunStatus.STARTING,),
            error=f"launch failed: {exc}",
        )  # fmt: skip
        return None, None


def launch_stored_run(
    instance: Instance, run_id: str, *, expected: Sequence[RunStatus], retries: int = 0
) -> Run:
    """Claim one run and start its worker (see :func:`launch_runs`); returns the run afterwards."""
    launch_runs(instance, [run_id], expected=expected, retries=retries)
    return instance.storage.runs.require(run_id)


def redispatch_orphans(instance: Instance) -> list[Launch]:
    """Supersede dispatched attempts whose dispatcher died before any worker claimed them, and
    launch the new attempts. Attempts whose dispatcher lives on another host are left alone."""
    launches = []
    for old in instance.storage.attempts.dispatched_before(ORPHAN_AFTER_SECONDS):
        if dispatcher_alive(old.dispatcher) is not False:
            continue
        moved = instance.storage.attempts.next_attempt(
            old.run_id,
            old.attempt,
            ending=AttemptState.ABANDONED,
            only=(AttemptState.DISPATCHED,),
            reason="its dispatcher died before a worker claimed it",
            from_status=RunStatus.STARTING,
            message=f"attempt {old.attempt} was orphaned (its dispatcher died): dispatched again",
            epoch=instance.fence_epoch,
            fence=_lease_fence(instance),
            dispatcher=this_process_id(),
        )
        if moved is None:
            continue
        run, attempt = moved
        log.warning(
            "run %s: attempt %d was orphaned; launching attempt %d", run.run_id, old.attempt, attempt.attempt
        )
        handle, _ = _start_worker(instance, run, attempt, (RunStatus.STARTING,), 0)
        launches.append(Launch(run, attempt, handle))
    record_launches(instance, launches)
    return launches


__all__ = ["Launch", "launch_runs", "launch_stored_run", "redispatch_orphans"]
