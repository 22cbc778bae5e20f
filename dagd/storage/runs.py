"""Runs, their tags, status events and logs.

Every status change is a compare-and-set: ``UPDATE runs SET status = :to WHERE run_id = :id AND
status IN (:from...)``. Only the writer whose UPDATE matched a row made the change, so a run is
never claimed twice, even by two processes on two hosts. Each change writes its event in the same
transaction.
"""

from __future__ import annotations

import builtins
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from dagd.errors import InvalidTransition, NotFound
from dagd.runs.model import (
    FINISHED_STATUSES,
    TRANSITIONS,
    LogLine,
    Run,
    RunEvent,
    RunFilter,
    RunStatus,
)
from dagd.storage.driver import DriverInsert, driver_transaction
from dagd.storage.schema import run_events, run_logs, run_tags, runs
from dagd.storage.store import padded
from dagd.timefmt import as_utc, utcnow

if TYPE_CHECKING:
    from dagd.storage.store import Storage


NEW_RUN_COLUMNS = (
    "run_id", "job_name", "status", "priority", "tags", "run_config",
    "code_location", "idempotency_key", "created_at", "updated_at",
)  # fmt: skip


@dataclass(frozen=True)
class NewRun:
    job_name: str
    tags: dict[str, str]
    run_config: dict
    priority: int
    status: RunStatus
    code_location: str | None = None
    idempotency_key: str | None = None
    run_id: str | None = None


def _row_to_run(row: Any) -> Run:
    return Run(
        run_id=row.run_id,
        job_name=row.job_name,
        status=RunStatus(row.status),
        tags=json.loads(row.tags),
        run_config=json.loads(row.run_config),
        priority=row.priority,
        created_at=as_utc(row.created_at),  # type: ignore[arg-type]
        started_at=as_utc(row.started_at),
        ended_at=as_utc(row.ended_at),
        updated_at=as_utc(row.updated_at),
        seq=row.seq,
        worker_pid=row.worker_pid,
        worker_started_at=row.worker_started_at,
        worker_heartbeat_at=as_utc(row.worker_heartbeat_at),
        error=row.error,
        code_location=row.code_location,
    )


def _filtered(query: Any, flt: RunFilter) -> Any:
    """Apply a RunFilter's statuses, job and tags (all must match) to a select over ``runs``."""
    if flt.statuses:
        query = query.where(runs.c.status.in_([s.value for s in flt.statuses]))
    if flt.job_name:
        query = query.where(runs.c.job_name == flt.job_name)
    for key, value in flt.tags.items():
        tagged = sa.select(run_tags.c.run_id).where(run_tags.c.key == key, run_tags.c.value == value)
        query = query.where(runs.c.run_id.in_(tagged))
    return query


@dataclass(frozen=True)
class _CreateInserts:
    """The three INSERTs that store a new run, compiled once for the storage's dialect."""

    runs: DriverInsert
    tags: DriverInsert
    events: DriverInsert


class RunStore:
    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._inserts: _CreateInserts | None = None
        # queue_view's parsed tags by their JSON text: runs of one job mostly share their tags,
        # and a queued run's tags are the same on every pass (see queue_view).
        self._parsed_tags: dict[str, dict[str, str]] = {}

    def _driver_inserts(self) -> _CreateInserts:
        if self._inserts is None:
            dialect = self._storage.engine.dialect
            self._inserts = _CreateInserts(
                runs=DriverInsert(runs, NEW_RUN_COLUMNS, dialect, returning=("run_id", "seq")),
                tags=DriverInsert(run_tags, ("run_id", "key", "value"), dialect),
                events=DriverInsert(run_events, ("run_id", "at", "kind", "status", "message"), dialect),
            )
        return self._inserts

    # -- creation ---------------------------------------------------------------------------

    def create(self, new: NewRun) -> Run:
        """Store a new run with its tags and first event; idempotent on ``idempotency_key``.

        When the storage has group commit on (the supervisor), concurrent creates share one
        transaction; the call still returns only after its run is committed.
        """
        batcher = self._storage.group_commit
        if batcher is not None:
            return batcher.submit(new)
        return self.create_many([new])[0]

    def create_many(self, news: Sequence[NewRun]) -> builtins.list[Run]:
        """Store several new runs in one transaction (falls back to one by one on a key clash)."""
        keys = [n.idempotency_key for n in news if n.idempotency_key]
        existing = self.by_idempotency_keys(keys) if keys else {}
        if len(set(keys)) != len(keys):
            # One key twice (a client's retries): one by one, each finding the run an earlier copy made.
            return [self.create_many([n])[0] for n in news]
        try:
            return self._create_batch(news, existing)
        except sa.exc.IntegrityError:
            if len(news) == 1 and news[0].idempotency_key:
                found = self.get_by_idempotency_key(news[0].idempotency_key)
                if found is not None:
                    return [found]
            if len(news) == 1:
                raise
            return [self.create_many([n])[0] for n in news]

    def _create_batch(self, news: Sequence[NewRun], existing: dict[str, Run]) -> builtins.list[Run]:
        now = utcnow()
        out: builtins.list[Run | None] = []
        rows: builtins.list[dict[str, Any]] = []
        tag_rows: builtins.list[dict[str, Any]] = []
        event_rows: builtins.list[dict[str, Any]] = []
        for new in news:
            if new.idempotency_key and new.idempotency_key in existing:
                out.append(existing[new.idempotency_key])
                continue
            run_id = new.run_id or str(uuid.uuid4())
            rows.append(
                {
                    "run_id": run_id,
                    "job_name": new.job_name,
                    "status": new.status.value,
                    "priority": new.priority,
                    "tags": json.dumps(new.tags, sort_keys=True),
                    "run_config": json.dumps(new.run_config, sort_keys=True),
                    "code_location": new.code_location,
                    "idempotency_key": new.idempotency_key or None,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            tag_rows.extend({"run_id": run_id, "key": k, "value": v} for k, v in new.tags.items())
            event_rows.append(
                {
                    "run_id": run_id,
                    "at": now,
                    "kind": "status",
                    "status": new.status.value,
                    "message": "submitted",
                }
            )
            out.append(None)
        if rows:
            inserts = self._driver_inserts()
            with driver_transaction(self._storage.engine) as cursor:
                seqs: dict[str, int] = dict(inserts.runs.execute_many(cursor, rows))
                inserts.tags.execute_many(cursor, tag_rows)
                inserts.events.execute_many(cursor, event_rows)
        created = iter(rows)
        result: builtins.list[Run] = []
        for new, item in zip(news, out, strict=True):
            if item is not None:
                result.append(item)
                continue
            row = next(created)
            result.append(
                Run(
                    run_id=row["run_id"],
                    job_name=new.job_name,
                    status=new.status,
                    tags=dict(new.tags),
                    run_config=dict(new.run_config),
                    priority=new.priority,
                    created_at=now,
                    updated_at=now,
                    seq=seqs[row["run_id"]],
                    code_location=new.code_location,
                )
            )
        return result

    def by_idempotency_keys(self, keys: Sequence[str]) -> dict[str, Run]:
        found: dict[str, Run] = {}
        with self._storage.read() as conn:
            for chunk in padded(builtins.list(keys)):
                rows = conn.execute(sa.select(runs).where(runs.c.idempotency_key.in_(chunk))).all()
                found.update((row.idempotency_key, _row_to_run(row)) for row in rows)
        return found

    # -- reads ------------------------------------------------------------------------------

    def get(self, run_id: str) -> Run | None:
        with self._storage.read() as conn:
            row = conn.execute(sa.select(runs).where(runs.c.run_id == run_id)).first()
        return None if row is None else _row_to_run(row)

    def require(self, run_id: str) -> Run:
        run = self.get(run_id)
        if run is None:
            raise NotFound(f"no run with id {run_id!r}")
        return run

    def get_by_idempotency_key(self, key: str) -> Run | None:
        with self._storage.read() as conn:
            row = conn.execute(sa.select(runs).where(runs.c.idempotency_key == key)).first()
        return None if row is None else _row_to_run(row)

    def list(self, flt: RunFilter) -> builtins.list[Run]:
        query = _filtered(sa.select(runs), flt).order_by(runs.c.seq.desc()).limit(flt.limit)
        if flt.before_seq is not None:
            query = query.where(runs.c.seq < flt.before_seq)
        with self._storage.read() as conn:
            return [_row_to_run(row) for row in conn.execute(query)]

    def with_status(self, statuses: Iterable[RunStatus], *, oldest_first: bool = True) -> builtins.list[Run]:
        order = runs.c.seq.asc() if oldest_first else runs.c.seq.desc()
        query = sa.select(runs).where(runs.c.status.in_([s.value for s in statuses])).order_by(order)
        with self._storage.read() as conn:
            return [_row_to_run(row) for row in conn.execute(query)]

    def count_by_status(self, only: Iterable[RunStatus] | None = None) -> dict[RunStatus, int]:
        """How many runs are in each status, in one GROUP BY; statuses with no runs are absent.

        ``only`` restricts the count to those statuses (an index range, not a scan of history).
        """
        query = sa.select(runs.c.status, sa.func.count()).group_by(runs.c.status)
        if only is not None:
            query = query.where(runs.c.status.in_([s.value for s in only]))
        with self._storage.read() as conn:
            return {RunStatus(status): count for status, count in conn.execute(query)}

    def events(self, run_id: str) -> builtins.list[RunEvent]:
        query = sa.select(run_events).where(run_events.c.run_id == run_id).order_by(run_events.c.id)
        with self._storage.read() as conn:
            return [
                RunEvent(
                    run_id=row.run_id,
                    at=as_utc(row.at),  # type: ignore[arg-type]
                    kind=row.kind,
                    status=RunStatus(row.status) if row.status else None,
                    message=row.message,
                )
                for row in conn.execute(query)
            ]

    # -- status changes ----------------------------------------------------------------------

    def transition(
        self,
        run_id: str,
        to: RunStatus,
        *,
        expected: Sequence[RunStatus] | None = None,
        message: str = "",
        error: str | None = None,
        worker_pid: int | None = None,
        worker_started_at: float | None = None,
        claim_epoch: int | None = None,
        fence: tuple[str, int] | None = None,
    ) -> Run | None:
        """Compare-and-set the run's status; returns the updated run, or None if another writer won.

        ``expected`` defaults to every status from which ``to`` is legal. Raises NotFound for an
        unknown run and InvalidTransition when an explicit ``expected`` status cannot reach ``to``.
        ``fence=(lease_name, epoch)`` makes the change conditional on that lease still having that
        epoch, in the same statement: a writer that lost its lease changes nothing.
        """
        sources = list(expected) if expected is not None else [s for s, t in TRANSITIONS.items() if to in t]
        for source in sources:
            if to not in TRANSITIONS[source]:
                raise InvalidTransition(f"run cannot go from {source.value} to {to.value}")
        now = utcnow()
        values: dict[str, Any] = {"status": to.value, "updated_at": now}
        if to == RunStatus.STARTED:
            values["started_at"] = now
        if to in FINISHED_STATUSES:
            values["ended_at"] = now
        if error is not None:
            values["error"] = error
        if worker_pid is not None:
            values["worker_pid"] = worker_pid
            values["worker_started_at"] = worker_started_at
        if claim_epoch is not None:
            values["claim_epoch"] = claim_epoch
        conditions = [runs.c.run_id == run_id, runs.c.status.in_([s.value for s in sources])]
        if fence is not None:
            from dagd.storage.leases import epoch_of

            conditions.append(epoch_of(fence[0]) == fence[1])
        with self._storage.write() as conn:
            result = conn.execute(runs.update().where(*conditions).values(**values))
            if result.rowcount != 1:
                exists = conn.execute(sa.select(runs.c.status).where(runs.c.run_id == run_id)).first()
                if exists is None:
                    raise NotFound(f"no run with id {run_id!r}")
                return None
            conn.execute(
                run_events.insert().values(
                    run_id=run_id, at=now, kind="status", status=to.value, message=message or error or ""
                )
            )
        return self.get(run_id)

    def bulk_transition(
        self, run_ids: Sequence[str], expected: RunStatus, to: RunStatus, message: str
    ) -> builtins.list[str]:
        """Move many runs in one transaction; returns the ids that actually changed."""
        if to not in TRANSITIONS[expected]:
            raise InvalidTransition(f"run cannot go from {expected.value} to {to.value}")
        now = utcnow()
        changed: builtins.list[str] = []
        values: dict[str, Any] = {"status": to.value, "updated_at": now}
        if to in FINISHED_STATUSES:
            values["ended_at"] = now
        with self._storage.write() as conn:
            for chunk in padded(builtins.list(run_ids)):
                # UPDATE ... RETURNING: only the rows this statement changed, even if another
                # writer moved some of them between our read and our write.
                matched = (
                    conn.execute(
                        runs.update()
                        .where(runs.c.run_id.in_(chunk), runs.c.status == expected.value)
                        .values(**values)
                        .returning(runs.c.run_id)
                    )
                    .scalars()
                    .all()
                )
                if not matched:
                    continue
                conn.execute(
                    run_events.insert(),
                    [
                        {"run_id": r, "at": now, "kind": "status", "status": to.value, "message": message}
                        for r in matched
                    ],
                )
                changed.extend(matched)
        return changed

    def claim_many(
        self,
        run_ids: Sequence[str],
        *,
        expected: Sequence[RunStatus],
        claim_epoch: int | None = None,
        fence: tuple[str, int] | None = None,
        message: str = "launching",
    ) -> builtins.list[Run]:
        """Claim runs for launch (-> STARTING) in one transaction; returns the runs this call claimed.

        The compare-and-set of :meth:`transition` for many runs in one statement per 500: a run
        another writer moved first (canceled, claimed by another dequeuer) is left out, and with
        ``fence=(lease_name, epoch)`` nothing is claimed unless the lease still has that epoch.
        Unknown ids are left out too. The result follows the order of ``run_ids``.
        """
        to = RunStatus.STARTING
        for source in expected:
            if to not in TRANSITIONS[source]:
                raise InvalidTransition(f"run cannot go from {source.value} to {to.value}")
        now = utcnow()
        values: dict[str, Any] = {"status": to.value, "updated_at": now}
        if claim_epoch is not None:
            values["claim_epoch"] = claim_epoch
        wanted = builtins.list(dict.fromkeys(run_ids))
        claimed: dict[str, Run] = {}
        with self._storage.write() as conn:
            for chunk in padded(wanted):
                conditions: builtins.list[sa.ColumnElement[bool]] = [
                    runs.c.run_id.in_(chunk),
                    runs.c.status.in_([s.value for s in expected]),
                ]
                if fence is not None:
                    from dagd.storage.leases import epoch_of

                    conditions.append(epoch_of(fence[0]) == fence[1])
                # UPDATE ... RETURNING: exactly the rows this statement changed.
                rows = conn.execute(
                    runs.update().where(*conditions).values(**values).returning(*runs.c)
                ).all()
                if not rows:
                    continue
                conn.execute(
                    run_events.insert(),
                    [
                        {
                            "run_id": row.run_id,
                            "at": now,
                            "kind": "status",
                            "status": to.value,
                            "message": message,
                        }
                        for row in rows
                    ],
                )
                claimed.update((row.run_id, _row_to_run(row)) for row in rows)
        return [claimed[run_id] for run_id in wanted if run_id in claimed]

    def add_event(self, run_id: str, message: str, *, kind: str = "info") -> None:
        with self._storage.write() as conn:
            conn.execute(run_events.insert().values(run_id=run_id, at=utcnow(), kind=kind, message=message))

    def record_worker(self, run_id: str, pid: int, started_at: float) -> None:
        with self._storage.write() as conn:
            conn.execute(
                runs.update()
                .where(runs.c.run_id == run_id)
                .values(worker_pid=pid, worker_started_at=started_at, worker_heartbeat_at=utcnow())
            )

    def record_workers(self, workers: Sequence[tuple[str, int, float]]) -> None:
        """:meth:`record_worker` for many (run_id, pid, started_at) in one transaction."""
        if not workers:
            return
        statement = (
            runs.update()
            .where(runs.c.run_id == sa.bindparam("b_run_id"))
            .values(
                worker_pid=sa.bindparam("b_pid"),
                worker_started_at=sa.bindparam("b_started_at"),
                worker_heartbeat_at=utcnow(),
            )
        )
        with self._storage.write() as conn:
            conn.execute(
                statement, [{"b_run_id": r, "b_pid": pid, "b_started_at": at} for r, pid, at in workers]
            )

    def worker_heartbeat(self, run_id: str) -> None:
        with self._storage.write() as conn:
            conn.execute(runs.update().where(runs.c.run_id == run_id).values(worker_heartbeat_at=utcnow()))

    # -- logs -------------------------------------------------------------------------------

    def append_logs(self, run_id: str, lines: Sequence[tuple[datetime, str, str, str]]) -> None:
        """Append (at, stream, level, message) lines in one transaction."""
        if not lines:
            return
        with self._storage.write() as conn:
            conn.execute(
                run_logs.insert(),
                [
                    {"run_id": run_id, "at": at, "stream": stream, "level": level, "message": message}
                    for at, stream, level, message in lines
                ],
            )

    def read_logs(self, run_id: str, *, after_seq: int = 0, limit: int = 1000) -> builtins.list[LogLine]:
        query = (
            sa.select(run_logs)
            .where(run_logs.c.run_id == run_id, run_logs.c.id > after_seq)
            .order_by(run_logs.c.id)
            .limit(limit)
        )
        with self._storage.read() as conn:
            return [
                LogLine(
                    seq=row.id,
                    run_id=row.run_id,
                    at=as_utc(row.at),  # type: ignore[arg-type]
                    stream=row.stream,
                    level=row.level,
                    message=row.message,
                )
                for row in conn.execute(query)
            ]

    # -- the queue's view ------------------------------------------------------------------------

    def queue_view(
        self,
    ) -> tuple[
        builtins.list[tuple[str, int, int, dict[str, str]]], builtins.list[tuple[str, dict[str, str]]]
    ]:
        """(queued, in progress) as light tuples, in one read: (run_id, seq, priority, tags), (run_id, tags).

        Only the columns the selection needs, so a pass over 10,000 queued runs stays cheap. The tag
        dicts are shared between runs with the same tags and between passes (parsing 10,000 of them
        was a third of a pass): treat them as read-only.
        """
        from dagd.runs.model import IN_PROGRESS_STATUSES

        wanted = [RunStatus.QUEUED.value, *(s.value for s in IN_PROGRESS_STATUSES)]
        query = sa.select(runs.c.run_id, runs.c.seq, runs.c.priority, runs.c.tags, runs.c.status).where(
            runs.c.status.in_(wanted)
        )
        queued: builtins.list[tuple[str, int, int, dict[str, str]]] = []
        in_progress: builtins.list[tuple[str, dict[str, str]]] = []
        known = self._parsed_tags
        seen: dict[str, dict[str, str]] = {}  # this pass's tag texts only, so the cache stays bounded
        with self._storage.read() as conn:
            for run_id, seq, priority, text, status in conn.execute(query):
                tags = seen.get(text)
                if tags is None:
                    tags = seen[text] = known.get(text) or json.loads(text)
                if status == RunStatus.QUEUED.value:
                    queued.append((run_id, seq, priority, tags))
                else:
                    in_progress.append((run_id, tags))
        self._parsed_tags = seen
        queued.sort(key=lambda r: r[1])
        return queued, in_progress

    def queued_after(self, seq: int, limit: int = 10_000) -> builtins.list[tuple[str, int]]:
        """(run_id, seq) of QUEUED runs submitted after ``seq``, oldest first."""
        query = (
            sa.select(runs.c.run_id, runs.c.seq)
            .where(runs.c.status == RunStatus.QUEUED.value, runs.c.seq > seq)
            .order_by(runs.c.seq)
            .limit(limit)
        )
        with self._storage.read() as conn:
            return [(run_id, s) for run_id, s in conn.execute(query)]

    def ids_matching(self, flt: RunFilter) -> builtins.list[tuple[str, RunStatus]]:
        """(run_id, status) of every run matching the filter, no limit (for bulk operations)."""
        query = _filtered(sa.select(runs.c.run_id, runs.c.status), flt)
        with self._storage.read() as conn:
            return [(run_id, RunStatus(status)) for run_id, status in conn.execute(query)]
