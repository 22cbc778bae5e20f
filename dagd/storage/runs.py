"""Runs, their tags, status events and logs.

Every status change is a compare-and-set: ``UPDATE runs SET status = :to WHERE run_id = :id AND
status IN (:from...)``. Only the writer whose UPDATE matched a row made the change, so a run is
never claimed twice, even by two processes on two hosts. Each change writes its event in the same
transaction.
"""

from __future__ import annotations

import builtins
import json
import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

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
from dagd.storage.attempt_rows import new_attempts
from dagd.storage.leases import EPOCH_OF
from dagd.storage.sql import (
    SQLITE,
    ConstraintViolation,
    Refused,
    by_status,
    in_list,
    insert_sql,
    padded,
    sqlite_time,
    when,
)
from dagd.timefmt import utcnow

if TYPE_CHECKING:
    from dagd.runs.attempts import Attempt
    from dagd.storage.database import Database
    from dagd.storage.sql import Sql


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


# json.dumps(value, sort_keys=True) without building an encoder per call (thousands per batch).
_ENCODE_SORTED = json.JSONEncoder(sort_keys=True).encode
_INSERT_EVENT = insert_sql("run_events", ("run_id", "at", "kind", "status", "message"))
_INSERT_LOG = insert_sql("run_logs", ("run_id", "at", "stream", "level", "message"))


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def new_run_ids(count: int) -> builtins.list[str]:
    """``count`` random (version 4) UUIDs as text, as ``str(uuid.uuid4())`` gives them, from one
    read of the system's random source (uuid4 reads it, and builds a UUID object, per id)."""
    if count == 1:
        return [str(uuid.uuid4())]
    hexes = os.urandom(16 * count).hex()
    out = []
    for i in range(0, 32 * count, 32):
        h = hexes[i : i + 32]
        out.append(f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}")
    return out


def row_to_run(row: Any) -> Run:
    return Run(
        run_id=row.run_id,
        job_name=row.job_name,
        status=RunStatus(row.status),
        tags=json.loads(row.tags),
        run_config=json.loads(row.run_config),
        priority=row.priority,
        created_at=when(row.created_at),  # type: ignore[arg-type]
        started_at=when(row.started_at),
        ended_at=when(row.ended_at),
        updated_at=when(row.updated_at),
        seq=row.seq,
        worker_pid=row.worker_pid,
        worker_started_at=row.worker_started_at,
        worker_heartbeat_at=when(row.worker_heartbeat_at),
        error=row.error,
        code_location=row.code_location,
        attempt=row.current_attempt,
        host=row.worker_host,
        launch_failures=row.launch_failures,
        resumes=row.resumes,
        launch_not_before=when(row.launch_not_before),
    )


def _filtered(flt: RunFilter, params: dict[str, Any], *, skip_tags: int = 0) -> builtins.list[str]:
    """The WHERE conditions of a RunFilter's statuses, job and tags (all must match) over ``runs``
    (aliased ``r``); the first ``skip_tags`` tags are left to the caller (joined, see RunStore.list).
    """
    where: builtins.list[str] = []
    if flt.statuses:
        names, values = in_list("st", [s.value for s in flt.statuses])
        where.append(f"r.status IN ({names})")
        params.update(values)
    if flt.job_name:
        where.append("r.job_name = :job_name")
        params["job_name"] = flt.job_name
    for i, (key, value) in enumerate(flt.tags.items()):
        if i < skip_tags:
            continue
        # A probe of run_tags' primary key (run_id, key) per candidate run.
        where.append(
            f"EXISTS (SELECT 1 FROM run_tags t{i} WHERE t{i}.run_id = r.run_id AND t{i}.key = :tk{i}"
            f" AND t{i}.value = :tv{i})"
        )
        params[f"tk{i}"], params[f"tv{i}"] = key, value
    return where


def _status_index(flt: RunFilter, dialect: str) -> str:
    """SQLite walks (status, seq) for a status filter, whatever ANALYZE says (see sql.by_status):
    198 ms at 1,000,000 runs for a page of the in-progress statuses when none was in progress.
    With ORDER BY seq DESC LIMIT, SQLite reads each status's newest runs and stops after a page."""
    return by_status(dialect) if flt.statuses else ""


def insert_event(sql: Sql, run_id: str, status: RunStatus | None, message: str, kind: str = "status") -> None:
    """A run event stamped with the database's clock, inside the caller's transaction."""
    sql.execute(
        f"INSERT INTO run_events (run_id, at, kind, status, message) VALUES (:run_id, {sql.now}, :kind, :status, :message)",
        {"run_id": run_id, "kind": kind, "status": status.value if status else None, "message": message},
    )


def _where(conditions: builtins.list[str]) -> str:
    return " WHERE " + " AND ".join(conditions) if conditions else ""


def _event(
    run_id: str, at: datetime, status: str | None, message: str, kind: str = "status"
) -> dict[str, Any]:
    return {"run_id": run_id, "at": at, "kind": kind, "status": status, "message": message}


class RunStore:
    def __init__(self, storage: Database) -> None:
        self._storage = storage
        # queue_view's parsed tags by their JSON text: runs of one job mostly share their tags,
        # and a queued run's tags are the same on every pass (see queue_view).
        self._parsed_tags: dict[str, dict[str, str]] = {}

    # -- creation ---------------------------------------------------------------------------

    def create(self, new: NewRun) -> Run:
        """Store a new run with its tags and first event; idempotent on ``idempotency_key``.

        When the storage has group commit on (the supervisor), concurrent creates share one
        transaction; the call still returns only after its run is committed.
        """
        batcher = self._storage.group_commit
        if batcher is not None:
            return batcher.submit(new)  # type: ignore[no-any-return]
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
        except ConstraintViolation:
            if len(news) == 1 and news[0].idempotency_key:
                found = self.get_by_idempotency_key(news[0].idempotency_key)
                if found is not None:
                    return [found]
            if len(news) == 1:
                raise
            return [self.create_many([n])[0] for n in news]

    def create_all(self, news: Sequence[NewRun], *, attempts: int = 3) -> builtins.list[Run]:
        """Store all of ``news`` in one transaction, or none of them (a batch submission).

        Idempotency keys are honoured per run: a key already stored returns that run, a key that
        appears twice in ``news`` is one run (both positions return it). A key committed by
        another writer between the lookup and the insert aborts the whole transaction; the
        batch is then tried again from the lookup, so it still stores all or nothing.
        """
        first_of_key: dict[str, int] = {}
        unique: builtins.list[NewRun] = []
        position: builtins.list[int] = []  # news[i] -> index in unique
        for new in news:
            key = new.idempotency_key
            if key and key in first_of_key:
                position.append(first_of_key[key])
                continue
            if key:
                first_of_key[key] = len(unique)
            position.append(len(unique))
            unique.append(new)
        for attempt in range(attempts):
            existing = self.by_idempotency_keys(builtins.list(first_of_key)) if first_of_key else {}
            try:
                created = self._create_batch(unique, existing)
                break
            except ConstraintViolation:
                if attempt == attempts - 1:
                    raise
        return [created[i] for i in position]

    def _create_batch(self, news: Sequence[NewRun], existing: dict[str, Run]) -> builtins.list[Run]:
        now = utcnow()
        stamp: Any = sqlite_time(now) if self._storage.dialect == SQLITE else now
        result: builtins.list[Run | None] = []
        rows: builtins.list[tuple[Any, ...]] = []
        tag_rows: builtins.list[tuple[str, str, str]] = []
        event_rows: builtins.list[tuple[Any, ...]] = []
        dumps = _ENCODE_SORTED
        ids = new_run_ids(len(news))
        for new, fresh_id in zip(news, ids, strict=True):
            if new.idempotency_key and new.idempotency_key in existing:
                result.append(existing[new.idempotency_key])
                continue
            run_id = new.run_id or fresh_id
            status = new.status.value
            rows.append(
                (
                    run_id,
                    new.job_name,
                    status,
                    new.priority,
                    dumps(new.tags),
                    dumps(new.run_config) if new.run_config else "{}",
                    new.code_location,
                    new.idempotency_key or None,
                    stamp,
                    stamp,
                )
            )
            tag_rows.extend((run_id, k, v) for k, v in new.tags.items())
            event_rows.append((run_id, stamp, "status", status, "submitted"))
            result.append(None)
        seqs: dict[str, int] = {}
        if rows:
            with self._storage.sql_write() as sql:
                seqs.update(sql.insert_rows("runs", NEW_RUN_COLUMNS, rows, returning="run_id, seq"))  # type: ignore[arg-type]
                sql.insert_rows(
                    "run_tags",
                    ("run_id", "key", "value", "run_seq"),
                    [(run_id, k, v, seqs[run_id]) for run_id, k, v in tag_rows],
                )
                sql.insert_rows("run_events", ("run_id", "at", "kind", "status", "message"), event_rows)
        created = iter(rows)
        out: builtins.list[Run] = []
        for new, item in zip(news, result, strict=True):
            if item is not None:
                out.append(item)
                continue
            run_id = next(created)[0]
            out.append(
                Run(
                    run_id=run_id,
                    job_name=new.job_name,
                    status=new.status,
                    tags=dict(new.tags),
                    run_config=dict(new.run_config),
                    priority=new.priority,
                    created_at=now,
                    updated_at=now,
                    seq=seqs[run_id],
                    code_location=new.code_location,
                )
            )
        return out

    def by_idempotency_keys(self, keys: Sequence[str]) -> dict[str, Run]:
        found: dict[str, Run] = {}
        with self._storage.sql_read() as sql:
            for chunk in padded(builtins.list(keys)):
                names, params = in_list("k", chunk)
                rows = sql.records(f"SELECT * FROM runs WHERE idempotency_key IN ({names})", params)
                found.update((row.idempotency_key, row_to_run(row)) for row in rows)
        return found

    # -- reads ------------------------------------------------------------------------------

    def get(self, run_id: str) -> Run | None:
        with self._storage.sql_read() as sql:
            row = sql.record("SELECT * FROM runs WHERE run_id = :run_id", {"run_id": run_id})
        return None if row is None else row_to_run(row)

    def require(self, run_id: str) -> Run:
        run = self.get(run_id)
        if run is None:
            raise NotFound(f"no run with id {run_id!r}")
        return run

    def failed_since(self, since: datetime | None, limit: int = 500) -> tuple[datetime, builtins.list[Run]]:
        """(the database's clock, FAILURE runs that ended at or after ``since``, oldest first)."""
        with self._storage.sql_read() as sql:
            now = sql.db_now()
            rows = sql.records(
                "SELECT * FROM runs WHERE status = :failure AND ended_at >= :since ORDER BY ended_at LIMIT :limit",
                {
                    "failure": RunStatus.FAILURE.value,
                    "since": since or datetime(1970, 1, 1, tzinfo=now.tzinfo),
                    "limit": limit,
                },
            )
        return now, [row_to_run(row) for row in rows]

    def held_until(self, run_id: str) -> datetime | None:
        """When a run held after a failed launch may go again, if that is still in the future by
        the database's clock; else None."""
        with self._storage.sql_read() as sql:
            value = sql.scalar(
                f"SELECT launch_not_before FROM runs WHERE run_id = :run_id AND launch_not_before > {sql.now}",
                {"run_id": run_id},
            )
        return when(value)

    def get_by_idempotency_key(self, key: str) -> Run | None:
        with self._storage.sql_read() as sql:
            row = sql.record("SELECT * FROM runs WHERE idempotency_key = :key", {"key": key})
        return None if row is None else row_to_run(row)

    def list(self, flt: RunFilter) -> builtins.list[Run]:
        """One page of runs matching ``flt``, newest first (before ``flt.before_seq``).

        Each shape reads about one page of index entries, whatever the history's size: no filter
        walks runs' primary key backwards; a tag filter walks run_tags (key, value, run_seq)
        backwards and fetches each run by its seq; a status filter walks (status, seq).
        """
        params: dict[str, Any] = {"limit": flt.limit}
        with self._storage.sql_read() as sql:
            if flt.tags:
                # The first tag drives: its index entries are already in seq order.
                (key, value), *_ = flt.tags.items()
                params["tk0"], params["tv0"] = key, value
                where = ["t0.key = :tk0", "t0.value = :tv0", *_filtered(flt, params, skip_tags=1)]
                if flt.before_seq is not None:
                    where.append("t0.run_seq < :before_seq")
                    params["before_seq"] = flt.before_seq
                query = (
                    "SELECT r.* FROM run_tags t0 JOIN runs r ON r.seq = t0.run_seq"
                    f"{_where(where)} ORDER BY t0.run_seq DESC LIMIT :limit"
                )
            else:
                where = _filtered(flt, params)
                if flt.before_seq is not None:
                    where.append("r.seq < :before_seq")
                    params["before_seq"] = flt.before_seq
                index = _status_index(flt, sql.dialect)
                query = f"SELECT r.* FROM runs r{index}{_where(where)} ORDER BY r.seq DESC LIMIT :limit"
            return [row_to_run(row) for row in sql.records(query, params)]

    def with_status(self, statuses: Iterable[RunStatus], *, oldest_first: bool = True) -> builtins.list[Run]:
        names, params = in_list("st", [s.value for s in statuses])
        if not params:
            return []
        order = "ASC" if oldest_first else "DESC"
        with self._storage.sql_read() as sql:
            rows = sql.records(
                f"SELECT * FROM runs{by_status(sql.dialect)} WHERE status IN ({names}) ORDER BY seq {order}",
                params,
            )
        return [row_to_run(row) for row in rows]

    def count_by_status(self, only: Iterable[RunStatus] | None = None) -> dict[RunStatus, int]:
        """How many runs are in each status, in one GROUP BY; statuses with no runs are absent.

        ``only`` restricts the count to those statuses (an index range, not a scan of history).
        """
        where, params = "", dict[str, Any]()
        if only is not None:
            names, params = in_list("st", [s.value for s in only])
            if not params:
                return {}
            where = f" WHERE status IN ({names})"
        with self._storage.sql_read() as sql:
            rows = sql.rows(f"SELECT status, COUNT(*) FROM runs{where} GROUP BY status", params)
        return {RunStatus(status): count for status, count in rows}

    def events(self, run_id: str) -> builtins.list[RunEvent]:
        with self._storage.sql_read() as sql:
            rows = sql.records(
                "SELECT * FROM run_events WHERE run_id = :run_id ORDER BY id", {"run_id": run_id}
            )
        return [
            RunEvent(
                run_id=row.run_id,
                at=when(row.at),  # type: ignore[arg-type]
                kind=row.kind,
                status=RunStatus(row.status) if row.status else None,
                message=row.message,
            )
            for row in rows
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
        fence: tuple[str, int] | None = None,
        attempt: tuple[int, str] | None = None,
    ) -> Run | None:
        """Compare-and-set the run's status; returns the updated run, or None if another writer won.

        ``expected`` defaults to every status from which ``to`` is legal. Raises NotFound for an
        unknown run and InvalidTransition when an explicit ``expected`` status cannot reach ``to``.
        ``fence=(lease_name, epoch)`` makes the change conditional on that lease still having that
        epoch, in the same statement: a writer that lost its lease changes nothing.
        ``attempt=(number, worker)`` is a worker's fence: the change happens only while that
        attempt is the run's current one and still CLAIMED by that worker; a finished status also
        ends the attempt (DONE), in the same transaction.
        """
        sources = list(expected) if expected is not None else [s for s, t in TRANSITIONS.items() if to in t]
        for source in sources:
            if to not in TRANSITIONS[source]:
                raise InvalidTransition(f"run cannot go from {source.value} to {to.value}")
        names, params = in_list("src", [s.value for s in sources])
        params.update(run_id=run_id, status=to.value, error=error)
        try:
            self._transition(
                sql_params=params,
                names=names,
                to=to,
                message=message,
                error=error,
                fence=fence,
                attempt=attempt,
            )
        except Refused:
            return None
        return self.get(run_id)

    def _transition(
        self,
        *,
        sql_params: dict[str, Any],
        names: str,
        to: RunStatus,
        message: str,
        error: str | None,
        fence: tuple[str, int] | None,
        attempt: tuple[int, str] | None,
    ) -> None:
        from dagd.runs.attempts import AttemptState

        params = sql_params
        run_id = params["run_id"]
        with self._storage.sql_write() as sql:
            now = sql.now
            assignments = ["status = :status", f"updated_at = {now}"]
            if to == RunStatus.STARTED:
                assignments.append(f"started_at = {now}")
            if to in FINISHED_STATUSES:
                assignments.append(f"ended_at = {now}")
            if error is not None:
                assignments.append("error = :error")
            conditions = ["run_id = :run_id", f"status IN ({names})", *fenced_conditions(fence, params)]
            if attempt is not None:
                number, worker = attempt
                params["attempt"] = number
                conditions.append("current_attempt = :attempt")
                if to in FINISHED_STATUSES:
                    ended = self._storage.attempts.end(
                        sql, run_id, number, AttemptState.DONE, message or error or to.value,
                        only=(AttemptState.CLAIMED,), worker=worker,
                    )  # fmt: skip
                else:
                    ended = self._storage.attempts.holds(sql, run_id, number, worker)
                if not ended:
                    raise Refused()
            changed = sql.execute(f"UPDATE runs SET {', '.join(assignments)}{_where(conditions)}", params)
            if changed != 1:
                if sql.scalar("SELECT status FROM runs WHERE run_id = :run_id", {"run_id": run_id}) is None:
                    raise NotFound(f"no run with id {run_id!r}")
                raise Refused()
            insert_event(sql, run_id, to, message or error or "")

    def bulk_transition(
        self, run_ids: Sequence[str], expected: RunStatus, to: RunStatus, message: str
    ) -> builtins.list[str]:
        """Move many runs in one transaction; returns the ids that actually changed."""
        if to not in TRANSITIONS[expected]:
            raise InvalidTransition(f"run cannot go from {expected.value} to {to.value}")
        now = utcnow()
        changed: builtins.list[str] = []
        ended = ", ended_at = :now" if to in FINISHED_STATUSES else ""
        with self._storage.sql_write() as sql:
            for chunk in padded(builtins.list(run_ids)):
                names, params = in_list("r", chunk)
                params.update(to=to.value, now=now, expected=expected.value)
                # UPDATE ... RETURNING: only the rows this statement changed, even if another
                # writer moved some of them between our read and our write.
                matched = [
                    r
                    for (r,) in sql.rows(
                        f"UPDATE runs SET status = :to, updated_at = :now{ended}"
                        f" WHERE run_id IN ({names}) AND status = :expected RETURNING run_id",
                        params,
                    )
                ]
                sql.many(_INSERT_EVENT, [_event(r, now, to.value, message) for r in matched])
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
        dispatcher: str | None = None,
        queue_of: dict[str, str | None] | None = None,
    ) -> builtins.list[tuple[Run, Attempt]]:
        """Claim runs for launch (-> STARTING) and dispatch a new attempt of each, in one
        transaction; returns (run, attempt) for the runs this call claimed.

        The compare-and-set of :meth:`transition` for many runs in one statement per 256: a run
        another writer moved first (canceled, claimed by another dequeuer) is left out, and with
        ``fence=(lease_name, epoch)`` nothing is claimed unless the lease still has that epoch.
        Unknown ids are left out too. The result follows the order of ``run_ids``.
        """
        to = RunStatus.STARTING
        for source in expected:
            if to not in TRANSITIONS[source]:
                raise InvalidTransition(f"run cannot go from {source.value} to {to.value}")
        sources, source_params = in_list("src", [s.value for s in expected])
        wanted = builtins.list(dict.fromkeys(run_ids))
        claimed: dict[str, tuple[Run, Attempt]] = {}
        with self._storage.sql_write() as sql:
            for chunk in padded(wanted):
                names, params = in_list("r", chunk)
                params.update(source_params, to=to.value, claim_epoch=claim_epoch)
                conditions = [
                    f"run_id IN ({names})",
                    f"status IN ({sources})",
                    *fenced_conditions(fence, params),
                ]
                # UPDATE ... RETURNING: exactly the rows this statement changed.
                rows = sql.records(
                    f"UPDATE runs SET status = :to, updated_at = {sql.now}, claim_epoch = :claim_epoch,"
                    " current_attempt = current_attempt + 1, launch_not_before = NULL"
                    f"{_where(conditions)} RETURNING *",
                    params,
                )
                attempts = new_attempts(
                    sql, [(row.run_id, row.current_attempt) for row in rows], epoch=claim_epoch,
                    dispatcher=dispatcher, queue_of=queue_of,
                )  # fmt: skip
                for row, attempt in zip(rows, attempts, strict=True):
                    insert_event(sql, row.run_id, to, f"attempt {attempt.attempt}: {message}")
                    claimed[row.run_id] = (row_to_run(row), attempt)
        return [claimed[run_id] for run_id in wanted if run_id in claimed]

    def count_launch_failure(self, run_id: str) -> int:
        """One more failed launch of the run; how many it has had."""
        with self._storage.sql_write() as sql:
            sql.execute(
                "UPDATE runs SET launch_failures = launch_failures + 1 WHERE run_id = :run_id",
                {"run_id": run_id},
            )
            return int(
                sql.scalar("SELECT launch_failures FROM runs WHERE run_id = :run_id", {"run_id": run_id}) or 0
            )

    # -- logs -------------------------------------------------------------------------------

    def append_logs(
        self,
        run_id: str,
        lines: Sequence[tuple[datetime, str, str, str]],
        *,
        attempt: tuple[int, str] | None = None,
    ) -> bool:
        """Append (at, stream, level, message) lines in one transaction; with ``attempt=(number,
        worker)``, only while that worker still holds that attempt (False: fenced, nothing written)."""
        if not lines:
            return True
        with self._storage.sql_write() as sql:
            if attempt is not None and not self._storage.attempts.holds(sql, run_id, *attempt):
                return False
            sql.many(
                _INSERT_LOG,
                [
                    {"run_id": run_id, "at": at, "stream": stream, "level": level, "message": message}
                    for at, stream, level, message in lines
                ],
            )
        return True

    def read_logs(self, run_id: str, *, after_seq: int = 0, limit: int = 1000) -> builtins.list[LogLine]:
        with self._storage.sql_read() as sql:
            rows = sql.records(
                "SELECT * FROM run_logs WHERE run_id = :run_id AND id > :after ORDER BY id LIMIT :limit",
                {"run_id": run_id, "after": after_seq, "limit": limit},
            )
        return [
            LogLine(
                seq=row.id,
                run_id=row.run_id,
                at=when(row.at),  # type: ignore[arg-type]
                stream=row.stream,
                level=row.level,
                message=row.message,
            )
            for row in rows
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

        names, params = in_list("st", [RunStatus.QUEUED.value, *(s.value for s in IN_PROGRESS_STATUSES)])
        queued: builtins.list[tuple[str, int, int, dict[str, str]]] = []
        in_progress: builtins.list[tuple[str, dict[str, str]]] = []
        known = self._parsed_tags
        seen: dict[str, dict[str, str]] = {}  # this pass's tag texts only, so the cache stays bounded
        with self._storage.sql_read() as sql:
            # A run held after a failed launch is not in the queue's view until its backoff ends.
            rows = sql.rows(
                f"SELECT run_id, seq, priority, tags, status FROM runs{by_status(sql.dialect)}"
                f" WHERE status IN ({names})"
                f" AND (launch_not_before IS NULL OR launch_not_before <= {sql.now})",
                params,
            )
        for run_id, seq, priority, text, status in rows:
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
        with self._storage.sql_read() as sql:
            rows = sql.rows(
                "SELECT run_id, seq FROM runs WHERE status = :queued AND seq > :seq ORDER BY seq LIMIT :limit",
                {"queued": RunStatus.QUEUED.value, "seq": seq, "limit": limit},
            )
        return [(run_id, s) for run_id, s in rows]

    def ids_matching(self, flt: RunFilter) -> builtins.list[tuple[str, RunStatus]]:
        """(run_id, status) of every run matching the filter, no limit (for bulk operations)."""
        params: dict[str, Any] = {}
        where = _filtered(flt, params)
        with self._storage.sql_read() as sql:
            rows = sql.rows(
                f"SELECT r.run_id, r.status FROM runs r{_status_index(flt, sql.dialect)}{_where(where)}",
                params,
            )
        return [(run_id, RunStatus(status)) for run_id, status in rows]


def fenced_conditions(fence: tuple[str, int] | None, params: dict[str, Any]) -> builtins.list[str]:
    """The condition that makes a write conditional on a lease still having an epoch (fencing)."""
    if fence is None:
        return []
    params["lease"], params["fence_epoch"] = fence
    return [f"({EPOCH_OF}) = :fence_epoch"]
