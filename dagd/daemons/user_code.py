"""What the scheduler and sensor daemons share: finding code servers, and turning run requests
into runs exactly once.

Every run a schedule or sensor asks for is submitted with an idempotency key derived from what
asked for it (schedule name + scheduled time + run key; sensor name + run key), so a retry after a
crash, or a duplicate run key, returns the run that already exists instead of making another.

Both daemons work in batches: one code-server request evaluates every due schedule or sensor of a
location, and the answers are stored a chunk at a time (a few transactions per chunk, not per
tick). That is what lets a thousand schedules tick within seconds of the minute.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dagd.codeserver.protocol import CodeServerClient, Evaluation, LocationSnapshot, RunRequestData
from dagd.codeserver.registry import PublishedLocation, read_published
from dagd.errors import DagdError, InvalidArgument, StorageUnavailable
from dagd.runs.plugins import Submission
from dagd.runs.requests import build_submission
from dagd.storage.instigators import TICK_FAILURE, TICK_SUCCESS, CursorMove, PlannedRun, Tick, TickEnd

if TYPE_CHECKING:
    from dagd.instance.instance import Instance

log = logging.getLogger("dagd.daemon")

DAEMON_METADATA = {"x-dagd-client": "daemon"}
# Answers of one evaluate_many request are stored at most this many per transaction.
CHUNK_SIZE = 500


@dataclass(frozen=True)
class LoadedLocation:
    published: PublishedLocation
    snapshot: LocationSnapshot

    @property
    def client(self) -> CodeServerClient:
        return CodeServerClient(self.published.socket)


def load_locations(instance: Instance, errors: list[str]) -> list[LoadedLocation]:
    """Every reachable code location's snapshot; unreachable ones are reported in ``errors``."""
    out = []
    for published in read_published(instance.home):
        try:
            snapshot = CodeServerClient(published.socket).snapshot(timeout=5)
        except DagdError as exc:
            errors.append(f"code location {published.name}: {exc}")
            continue
        out.append(LoadedLocation(published, snapshot))
    return out


def planned_request(request: RunRequestData, key: str, tags: dict[str, str]) -> PlannedRun:
    """A run request as saved on a tick before submission."""
    return PlannedRun(
        job_name=request.job_name,
        idempotency_key=key,
        run_key=request.run_key,
        tags={**tags, **request.tags},
        run_config=request.run_config,
    )


# Beyond the evaluation timeout: the code-server client's own slack per answer (5 s) and some
# room for storing a group of answers.
WAIT_SLACK_SECONDS = 10.0


def evaluate_in_chunks(
    location: LoadedLocation,
    items: list[dict[str, Any]],
    timeout: float,
    handle: Callable[[list[tuple[int, Evaluation]]], None],
    announce_wait: Callable[[float], None] | None = None,
) -> None:
    """Evaluate ``items`` in one code-server request; ``handle`` the answers in chunks as they come.

    The code server sends what finished together as one group (see ``evaluate_many``); each group,
    at most ``CHUNK_SIZE`` answers at a time, is handed over at once, so the runs of fast functions
    are stored while a slow one is still running. If the code server goes away, the items it did
    not answer are handed over as failed evaluations with the reason.

    Called from a daemon loop's own thread, pass ``announce_wait`` (``Daemon.announce_wait``): each
    wait for the next group is bounded (``timeout`` plus the client's 5 s of slack), and the
    supervisor must not take a schedule that runs longer than the heartbeat timeout for a hung loop.
    """
    answered: set[int] = set()
    bound = timeout + WAIT_SLACK_SECONDS

    def on_answers(answers: list[tuple[int, Evaluation]]) -> None:
        answered.update(index for index, _ in answers)
        for start in range(0, len(answers), CHUNK_SIZE):
            handle(answers[start : start + CHUNK_SIZE])
        if announce_wait is not None:
            announce_wait(bound)  # the next group may take as long again

    if announce_wait is not None:
        announce_wait(bound)
    try:
        location.client.evaluate_many(items, timeout, on_answers)
    except DagdError as exc:
        missing = [(i, Evaluation(error=str(exc))) for i in range(len(items)) if i not in answered]
        if missing:
            handle(missing)


def submit_ticks(instance: Instance, work: list[tuple[LoadedLocation | None, Tick]]) -> list[TickEnd]:
    """Submit the saved run requests of STARTED ticks; how each tick ends (not yet stored).

    All runs go to the coordinator in one batch (one transaction) with idempotency keys, so a
    resumed tick gets the runs it already has. A tick whose requests cannot be submitted (an
    unknown job, a bad priority, a hook that refuses) fails alone: the batch is retried tick by
    tick to find it.
    """
    ends: list[TickEnd] = []
    batch: list[tuple[Tick, list[Submission]]] = []
    for location, tick in work:
        assert tick.planned is not None
        try:
            batch.append((tick, [_submission(location, item) for item in tick.planned]))
        except DagdError as exc:
            ends.append(TickEnd(tick.id, TICK_FAILURE, error=str(exc)))
    flat = [s for _, subs in batch for s in subs]
    try:
        runs = iter(instance.coordinator.submit_runs(flat, DAEMON_METADATA))
        ends += [_succeeded(tick, [next(runs).run_id for _ in subs]) for tick, subs in batch]
    except StorageUnavailable:
        raise  # not the ticks' fault: they stay STARTED and are resumed
    except DagdError:
        for tick, subs in batch:  # find the tick at fault; the others still get their runs
            try:
                ids = [r.run_id for r in instance.coordinator.submit_runs(subs, DAEMON_METADATA)]
            except StorageUnavailable:
                raise
            except DagdError as exc:
                ends.append(TickEnd(tick.id, TICK_FAILURE, error=str(exc)))
            else:
                ends.append(_succeeded(tick, ids))
    return ends


def _succeeded(tick: Tick, run_ids: list[str]) -> TickEnd:
    cursor = CursorMove(tick.kind, tick.name, tick.new_cursor) if tick.cursor_updated else None
    return TickEnd(tick.id, TICK_SUCCESS, run_ids=run_ids, cursor=cursor)


def _submission(location: LoadedLocation | None, item: PlannedRun) -> Submission:
    job_tags: dict[str, str] = {}
    resumable = False
    target_json = None
    if location is not None:
        job = location.snapshot.job(item.job_name)
        if job is None:
            raise DagdError(f"job {item.job_name!r} does not exist in code location {location.snapshot.name}")
        job_tags, resumable = dict(job.tags), job.resumable
        target_json = location.published.target.to_json()
    try:
        return build_submission(
            job_name=item.job_name,
            job_tags=job_tags,
            request_tags=item.tags,
            resumable=resumable,
            run_config=item.run_config,
            code_location=target_json,
            idempotency_key=item.idempotency_key,
        )
    except InvalidArgument as exc:
        raise DagdError(str(exc)) from None
