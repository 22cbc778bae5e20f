"""Schedules' and sensors' persisted state, and their ticks.

A schedule's tick is unique per (name, scheduled time): two schedulers, or one restarted after a
crash, can never create the same tick twice. A tick's run requests (and a sensor's new cursor) are
saved on the tick *before* any run is submitted, so a crash at any point is resumed from the tick
instead of evaluating again. Creating a tick is fenced by the supervisor lease epoch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from dagd.errors import Conflict
from dagd.storage.leases import EPOCH_OF, SUPERVISOR_LEASE
from dagd.storage.sql import ConstraintViolation, Sql, in_list, insert_sql, padded, pieces, when
from dagd.timefmt import as_utc, utcnow

if TYPE_CHECKING:
    from dagd.storage.database import Database

RUNNING, STOPPED = "RUNNING", "STOPPED"
TICK_STARTED, TICK_SUCCESS, TICK_SKIPPED, TICK_FAILURE = "STARTED", "SUCCESS", "SKIPPED", "FAILURE"


@dataclass(frozen=True)
class InstigatorState:
    kind: str
    name: str
    status: str
    status_changed_at: datetime
    cursor: str | None = None
    last_evaluated_at: datetime | None = None


@dataclass(frozen=True)
class PlannedRun:
    """A run request saved on a STARTED tick before anything is submitted (the ``planned`` column).

    Its idempotency key makes a resumed tick get the runs it already has."""

    job_name: str
    idempotency_key: str | None = None
    run_key: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    run_config: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "job_name": self.job_name,
            "run_key": self.run_key,
            "idempotency_key": self.idempotency_key,
            "tags": self.tags,
            "run_config": self.run_config,
        }

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> PlannedRun:
        return cls(
            job_name=item["job_name"],
            idempotency_key=item.get("idempotency_key"),
            run_key=item.get("run_key"),
            tags=item.get("tags") or {},
            run_config=item.get("run_config") or {},
        )


def _plan_json(planned: list[PlannedRun]) -> str:
    return json.dumps([p.to_json() for p in planned])


@dataclass(frozen=True)
class Tick:
    id: int
    kind: str
    name: str
    scheduled_time: datetime | None
    status: str
    planned: list[PlannedRun] | None
    new_cursor: str | None
    cursor_updated: bool
    run_ids: list[str] = field(default_factory=list)
    skip_reason: str | None = None
    error: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None


@dataclass(frozen=True)
class NewTick:
    """A tick to create in a batch (see :meth:`InstigatorStore.create_ticks`)."""

    kind: str
    name: str
    scheduled_time: datetime | None = None
    status: str = TICK_STARTED
    skip_reason: str | None = None
    error: str | None = None
    planned: list[PlannedRun] | None = None
    new_cursor: str | None = None
    cursor_updated: bool = False
    move_cursor: bool = False  # a finished tick whose cursor move is stored in the same transaction


@dataclass(frozen=True)
class CursorMove:
    """An instigator's cursor set to ``value`` in the transaction that ends its tick."""

    kind: str
    name: str
    value: str | None


@dataclass(frozen=True)
class TickEnd:
    """How a STARTED tick ends (see :meth:`InstigatorStore.finish_ticks`)."""

    tick_id: int
    status: str
    run_ids: list[str] = field(default_factory=list)
    skip_reason: str | None = None
    error: str | None = None
    cursor: CursorMove | None = None  # the cursor moves too


def _state(row: Any) -> InstigatorState:
    return InstigatorState(
        row.kind,
        row.name,
        row.status,
        when(row.status_changed_at),  # type: ignore[arg-type]
        row.cursor,
        when(row.last_evaluated_at),
    )


def _tick(row: Any) -> Tick:
    return Tick(
        id=row.id,
        kind=row.kind,
        name=row.name,
        scheduled_time=when(row.scheduled_time),
        status=row.status,
        planned=[PlannedRun.from_json(item) for item in json.loads(row.planned)] if row.planned else None,
        new_cursor=row.new_cursor,
        cursor_updated=bool(row.cursor_updated),
        run_ids=json.loads(row.run_ids),
        skip_reason=row.skip_reason,
        error=row.error,
        started_at=when(row.started_at),
        ended_at=when(row.ended_at),
    )


TICK_COLUMNS = (
    "kind", "name", "scheduled_time", "status", "skip_reason", "error", "planned", "new_cursor",
    "cursor_updated", "epoch", "started_at", "ended_at",
)  # fmt: skip
_INSERT_TICK = insert_sql("ticks", TICK_COLUMNS)
_CURSOR_UPDATE = "UPDATE instigators SET cursor = :c WHERE kind = :k AND name = :n"


def _tick_row(n: NewTick, epoch: int | None, now: datetime) -> dict[str, Any]:
    return {
        "kind": n.kind,
        "name": n.name,
        "scheduled_time": n.scheduled_time,
        "status": n.status,
        "skip_reason": n.skip_reason,
        "error": n.error,
        "planned": _plan_json(n.planned) if n.planned is not None else None,
        "new_cursor": n.new_cursor,
        "cursor_updated": n.cursor_updated,
        "epoch": epoch,
        "started_at": now,
        "ended_at": now if n.status != TICK_STARTED else None,
    }


class InstigatorStore:
    def __init__(self, storage: Database) -> None:
        self._storage = storage

    # -- state ---------------------------------------------------------------------------------

    def states(self, kind: str) -> dict[str, InstigatorState]:
        with self._storage.sql_read() as sql:
            rows = sql.records("SELECT * FROM instigators WHERE kind = :kind", {"kind": kind})
        return {r.name: _state(r) for r in rows}

    def state(self, kind: str, name: str) -> InstigatorState | None:
        """One state (a single-row read: callers that loop over names must not read them all)."""
        with self._storage.sql_read() as sql:
            row = sql.record(
                "SELECT * FROM instigators WHERE kind = :kind AND name = :name", {"kind": kind, "name": name}
            )
        return None if row is None else _state(row)

    def ensure(self, kind: str, name: str, default_status: str) -> InstigatorState:
        """The state, created from the code's default the first time the name is seen."""
        with self._storage.sql_write() as sql:
            sql.execute(
                "INSERT INTO instigators (kind, name, status, status_changed_at) VALUES (:kind, :name, :status, :at)"
                " ON CONFLICT (kind, name) DO NOTHING",
                {"kind": kind, "name": name, "status": default_status, "at": utcnow()},
            )
        state = self.state(kind, name)
        assert state is not None  # just inserted, or already there; states are never deleted
        return state

    def set_status(self, kind: str, name: str, status: str) -> InstigatorState:
        with self._storage.sql_write() as sql:
            sql.execute(
                "INSERT INTO instigators (kind, name, status, status_changed_at) VALUES (:kind, :name, :status, :at)"
                " ON CONFLICT (kind, name) DO UPDATE SET status = excluded.status,"
                " status_changed_at = excluded.status_changed_at",
                {"kind": kind, "name": name, "status": status, "at": utcnow()},
            )
        state = self.state(kind, name)
        assert state is not None
        return state

    def cursor(self, kind: str, name: str) -> str | None:
        with self._storage.sql_read() as sql:
            return sql.scalar(  # type: ignore[no-any-return]
                "SELECT cursor FROM instigators WHERE kind = :kind AND name = :name",
                {"kind": kind, "name": name},
            )

    def set_cursor(self, kind: str, name: str, cursor: str | None) -> None:
        with self._storage.sql_write() as sql:
            sql.execute(_CURSOR_UPDATE, {"k": kind, "n": name, "c": cursor})

    # -- ticks ---------------------------------------------------------------------------------

    def create_tick(
        self,
        kind: str,
        name: str,
        *,
        scheduled_time: datetime | None,
        status: str = TICK_STARTED,
        epoch: int | None,
        skip_reason: str | None = None,
        error: str | None = None,
        planned: list[PlannedRun] | None = None,
        new_cursor: str | None = None,
        cursor_updated: bool = False,
    ) -> Tick | None:
        """Insert a tick; None if a tick for this schedule time already exists. Fenced by ``epoch``."""
        new = NewTick(
            kind,
            name,
            scheduled_time=scheduled_time,
            status=status,
            skip_reason=skip_reason,
            error=error,
            planned=planned,
            new_cursor=new_cursor,
            cursor_updated=cursor_updated,
        )
        try:
            with self._storage.sql_write() as sql:
                self._check_epoch(sql, epoch)
                tick_id = sql.scalar(_INSERT_TICK + " RETURNING id", _tick_row(new, epoch, utcnow()))
        except ConstraintViolation:
            return None
        return self.get_tick(tick_id)

    def get_tick(self, tick_id: int) -> Tick:
        with self._storage.sql_read() as sql:
            row = sql.record("SELECT * FROM ticks WHERE id = :id", {"id": tick_id})
        if row is None:
            raise LookupError(f"no tick with id {tick_id}")
        return _tick(row)

    def tick_at(self, kind: str, name: str, scheduled_time: datetime) -> Tick | None:
        with self._storage.sql_read() as sql:
            row = sql.record(
                "SELECT * FROM ticks WHERE kind = :kind AND name = :name AND scheduled_time = :at",
                {"kind": kind, "name": name, "at": scheduled_time},
            )
        return None if row is None else _tick(row)

    def finish_tick(
        self,
        tick_id: int,
        status: str,
        *,
        run_ids: list[str] | None = None,
        skip_reason: str | None = None,
        error: str | None = None,
        cursor: CursorMove | None = None,
    ) -> None:
        """End a tick; with ``cursor`` the instigator's cursor moves in the same transaction."""
        self.finish_ticks([TickEnd(tick_id, status, run_ids or [], skip_reason, error, cursor)])

    # -- ticks in batches (the daemons at scale) -------------------------------------------------

    def create_ticks(self, news: list[NewTick], epoch: int | None) -> list[Tick | None]:
        """Insert many ticks in one transaction, fenced by ``epoch``; None where one already exists.

        A schedule's tick is unique per (name, scheduled time): an existing one is left alone and
        its slot in the answer is None. Sensor ticks (no scheduled time) never clash; a batch holds
        at most one per sensor. Finished ticks with ``move_cursor`` move their sensor's cursor in
        the same transaction.
        """
        if not news:
            return []
        now = utcnow()
        rows = [_tick_row(n, epoch, now) for n in news]
        ids: dict[tuple[str, str, Any], int] = {}
        insert = _INSERT_TICK + " ON CONFLICT DO NOTHING RETURNING id, kind, name, scheduled_time"
        with self._storage.sql_write() as sql:
            self._check_epoch(sql, epoch)
            for piece in pieces(rows):
                for tick_id, kind, name, scheduled_time in sql.many_returning(insert, piece):
                    ids[(kind, name, when(scheduled_time))] = tick_id
            moves = [
                {"k": n.kind, "n": n.name, "c": n.new_cursor}
                for n in news
                if n.move_cursor and (n.kind, n.name, as_utc(n.scheduled_time)) in ids
            ]
            sql.many(_CURSOR_UPDATE, moves)
        out: list[Tick | None] = []
        for n in news:
            tick_id = ids.get((n.kind, n.name, as_utc(n.scheduled_time)))
            out.append(
                None
                if tick_id is None
                else Tick(
                    id=tick_id,
                    kind=n.kind,
                    name=n.name,
                    scheduled_time=n.scheduled_time,
                    status=n.status,
                    planned=n.planned,
                    new_cursor=n.new_cursor,
                    cursor_updated=n.cursor_updated,
                    skip_reason=n.skip_reason,
                    error=n.error,
                    started_at=now,
                    ended_at=now if n.status != TICK_STARTED else None,
                )
            )
        return out

    def plan_ticks(self, plans: list[tuple[int, list[PlannedRun]]]) -> None:
        """Save the run requests of many STARTED ticks (before any of them is submitted)."""
        if not plans:
            return
        with self._storage.sql_write() as sql:
            sql.many(
                "UPDATE ticks SET planned = :p WHERE id = :tick_id",
                [{"tick_id": tick_id, "p": _plan_json(planned)} for tick_id, planned in plans],
            )

    def finish_ticks(self, ends: list[TickEnd]) -> None:
        """End many ticks in one transaction, with the cursor moves they carry."""
        if not ends:
            return
        now = utcnow()
        with self._storage.sql_write() as sql:
            sql.many(
                "UPDATE ticks SET status = :s, run_ids = :r, skip_reason = :why, error = :e, ended_at = :at"
                " WHERE id = :tick_id",
                [
                    {
                        "tick_id": end.tick_id,
                        "s": end.status,
                        "r": json.dumps(end.run_ids),
                        "why": end.skip_reason,
                        "e": end.error,
                        "at": now,
                    }
                    for end in ends
                ],
            )
            sql.many(
                _CURSOR_UPDATE,
                [
                    {"k": e.cursor.kind, "n": e.cursor.name, "c": e.cursor.value}
                    for e in ends
                    if e.cursor is not None
                ],
            )

    def cursors(self, kind: str, names: list[str]) -> dict[str, str | None]:
        """The current cursors of ``names`` in one read."""
        if not names:
            return {}
        out: dict[str, str | None] = {}
        with self._storage.sql_read() as sql:
            for chunk in padded(names):
                listed, params = in_list("n", chunk)
                params["kind"] = kind
                rows = sql.rows(
                    f"SELECT name, cursor FROM instigators WHERE kind = :kind AND name IN ({listed})", params
                )
                out.update((name, cursor) for name, cursor in rows)
        return out

    @staticmethod
    def _check_epoch(sql: Sql, epoch: int | None) -> None:
        if epoch is not None:
            current = sql.scalar(EPOCH_OF, {"lease": SUPERVISOR_LEASE})
            if current is not None and current != epoch:
                raise Conflict(f"lease epoch {epoch} is stale (now {current}): not creating ticks")

    def unfinished_ticks(self, kind: str) -> list[Tick]:
        with self._storage.sql_read() as sql:
            rows = sql.records(
                "SELECT * FROM ticks WHERE kind = :kind AND status = :started ORDER BY id",
                {"kind": kind, "started": TICK_STARTED},
            )
        return [_tick(r) for r in rows]

    def last_scheduled_times(self) -> dict[str, datetime]:
        """Per schedule, the latest scheduled time that has a tick (any status)."""
        with self._storage.sql_read() as sql:
            rows = sql.rows(
                "SELECT name, MAX(scheduled_time) FROM ticks WHERE kind = 'schedule' GROUP BY name"
            )
        return {name: when(at) for name, at in rows if at is not None}  # type: ignore[misc]

    def last_tick_starts(self, kind: str) -> dict[str, datetime]:
        """Per instigator of ``kind``, when its latest tick started (the newest id, from the index)."""
        with self._storage.sql_read() as sql:
            rows = sql.rows(
                "SELECT name, started_at FROM ticks WHERE id IN"
                " (SELECT MAX(id) FROM ticks WHERE kind = :kind GROUP BY name)",
                {"kind": kind},
            )
        return {name: when(at) for name, at in rows if at is not None}  # type: ignore[misc]

    def ticks(self, kind: str, name: str, limit: int = 20) -> list[Tick]:
        with self._storage.sql_read() as sql:
            rows = sql.records(
                "SELECT * FROM ticks WHERE kind = :kind AND name = :name ORDER BY id DESC LIMIT :limit",
                {"kind": kind, "name": name, "limit": limit},
            )
        return [_tick(r) for r in rows]

    def purge_ticks(self, kind: str, status: str, started_before: datetime, limit: int) -> int:
        """Delete up to ``limit`` finished ticks of ``kind`` with ``status`` that started before
        ``started_before``, oldest first; how many were deleted (retention, one batch).

        Never an unfinished tick (a crash resumes from it), and never an instigator's latest tick
        or its latest scheduled time: the scheduler resumes catch-up from the latest scheduled
        time and a sensor its interval from the latest start, so purging those would re-run a
        schedule's last tick or evaluate a sensor early.
        """
        if status == TICK_STARTED:
            raise ValueError("unfinished ticks are never purged")
        params = {"kind": kind, "status": status, "before": started_before, "limit": limit}
        with self._storage.sql_read() as sql:
            ids = [
                row[0]
                for row in sql.rows(
                    "SELECT t.id FROM ticks t WHERE t.kind = :kind AND t.status = :status"
                    " AND t.started_at < :before"
                    " AND EXISTS (SELECT 1 FROM ticks n WHERE n.kind = t.kind AND n.name = t.name"
                    " AND n.id > t.id)"
                    " AND (t.scheduled_time IS NULL OR EXISTS (SELECT 1 FROM ticks n"
                    " WHERE n.kind = t.kind AND n.name = t.name AND n.scheduled_time > t.scheduled_time))"
                    " ORDER BY t.id LIMIT :limit",
                    params,
                )
            ]
        deleted = 0
        if ids:
            with self._storage.sql_write() as sql:
                for chunk in padded(ids):
                    names, chunk_params = in_list("t", chunk)
                    deleted += sql.execute(
                        f"DELETE FROM ticks WHERE id IN ({names}) AND status = :status",
                        {**chunk_params, "status": status},
                    )
        return deleted
