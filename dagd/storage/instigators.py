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

import sqlalchemy as sa

from dagd.errors import Conflict
from dagd.storage.leases import SUPERVISOR_LEASE, epoch_of
from dagd.storage.schema import instigators, ticks
from dagd.storage.store import padded, pieces
from dagd.timefmt import as_utc, utcnow

if TYPE_CHECKING:
    from dagd.storage.store import Storage

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
class Tick:
    id: int
    kind: str
    name: str
    scheduled_time: datetime | None
    status: str
    planned: list[dict[str, Any]] | None
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
    planned: list[dict[str, Any]] | None = None
    new_cursor: str | None = None
    cursor_updated: bool = False
    move_cursor: bool = False  # a finished tick whose cursor move is stored in the same transaction


@dataclass(frozen=True)
class TickEnd:
    """How a STARTED tick ends (see :meth:`InstigatorStore.finish_ticks`)."""

    tick_id: int
    status: str
    run_ids: list[str] = field(default_factory=list)
    skip_reason: str | None = None
    error: str | None = None
    cursor: tuple[str, str, str | None] | None = None  # (kind, name, value): the cursor moves too


def _state(row: Any) -> InstigatorState:
    return InstigatorState(
        row.kind,
        row.name,
        row.status,
        as_utc(row.status_changed_at),  # type: ignore[arg-type]
        row.cursor,
        as_utc(row.last_evaluated_at),
    )


def _tick(row: Any) -> Tick:
    return Tick(
        id=row.id,
        kind=row.kind,
        name=row.name,
        scheduled_time=as_utc(row.scheduled_time),
        status=row.status,
        planned=json.loads(row.planned) if row.planned else None,
        new_cursor=row.new_cursor,
        cursor_updated=bool(row.cursor_updated),
        run_ids=json.loads(row.run_ids),
        skip_reason=row.skip_reason,
        error=row.error,
        started_at=as_utc(row.started_at),
        ended_at=as_utc(row.ended_at),
    )


_CURSOR_UPDATE = (
    instigators.update()
    .where(instigators.c.kind == sa.bindparam("k"), instigators.c.name == sa.bindparam("n"))
    .values(cursor=sa.bindparam("c"))
)


class InstigatorStore:
    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    # -- state ---------------------------------------------------------------------------------

    def states(self, kind: str) -> dict[str, InstigatorState]:
        with self._storage.read() as conn:
            rows = conn.execute(sa.select(instigators).where(instigators.c.kind == kind)).all()
        return {r.name: _state(r) for r in rows}

    def state(self, kind: str, name: str) -> InstigatorState | None:
        """One state (a single-row read: callers that loop over names must not read them all)."""
        with self._storage.read() as conn:
            row = conn.execute(
                sa.select(instigators).where(instigators.c.kind == kind, instigators.c.name == name)
            ).first()
        return None if row is None else _state(row)

    def ensure(self, kind: str, name: str, default_status: str) -> InstigatorState:
        """The state, created from the code's default the first time the name is seen."""
        from dagd.storage.store import insert_ignore

        with self._storage.write() as conn:
            insert_ignore(
                conn,
                instigators,
                {"kind": kind, "name": name, "status": default_status, "status_changed_at": utcnow()},
                ["kind", "name"],
            )
        state = self.state(kind, name)
        assert state is not None  # just inserted, or already there; states are never deleted
        return state

    def set_status(self, kind: str, name: str, status: str) -> InstigatorState:
        from dagd.storage.store import upsert

        with self._storage.write() as conn:
            upsert(
                conn,
                instigators,
                {"kind": kind, "name": name, "status": status, "status_changed_at": utcnow()},
                ["kind", "name"],
            )
        state = self.state(kind, name)
        assert state is not None
        return state

    def cursor(self, kind: str, name: str) -> str | None:
        with self._storage.read() as conn:
            return conn.execute(  # type: ignore[no-any-return]
                sa.select(instigators.c.cursor).where(instigators.c.kind == kind, instigators.c.name == name)
            ).scalar()

    def set_cursor(self, kind: str, name: str, cursor: str | None) -> None:
        with self._storage.write() as conn:
            conn.execute(
                instigators.update()
                .where(instigators.c.kind == kind, instigators.c.name == name)
                .values(cursor=cursor)
            )

    def mark_evaluated(self, kind: str, name: str, at: datetime) -> None:
        with self._storage.write() as conn:
            conn.execute(
                instigators.update()
                .where(instigators.c.kind == kind, instigators.c.name == name)
                .values(last_evaluated_at=at)
            )

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
        planned: list[dict[str, Any]] | None = None,
        new_cursor: str | None = None,
        cursor_updated: bool = False,
    ) -> Tick | None:
        """Insert a tick; None if a tick for this schedule time already exists. Fenced by ``epoch``."""
        now = utcnow()
        values = {
            "kind": kind,
            "name": name,
            "scheduled_time": scheduled_time,
            "status": status,
            "skip_reason": skip_reason,
            "error": error,
            "planned": json.dumps(planned) if planned is not None else None,
            "new_cursor": new_cursor,
            "cursor_updated": cursor_updated,
            "epoch": epoch,
            "started_at": now,
            "ended_at": now if status != TICK_STARTED else None,
        }
        try:
            with self._storage.write() as conn:
                self._check_epoch(conn, epoch)
                tick_id = conn.execute(ticks.insert().values(**values).returning(ticks.c.id)).scalar_one()
        except sa.exc.IntegrityError:
            return None
        return self.get_tick(tick_id)

    def get_tick(self, tick_id: int) -> Tick:
        with self._storage.read() as conn:
            return _tick(conn.execute(sa.select(ticks).where(ticks.c.id == tick_id)).one())

    def tick_at(self, kind: str, name: str, scheduled_time: datetime) -> Tick | None:
        with self._storage.read() as conn:
            row = conn.execute(
                sa.select(ticks).where(
                    ticks.c.kind == kind, ticks.c.name == name, ticks.c.scheduled_time == scheduled_time
                )
            ).first()
        return None if row is None else _tick(row)

    def plan_tick(
        self, tick_id: int, planned: list[dict[str, Any]], new_cursor: str | None, cursor_updated: bool
    ) -> None:
        with self._storage.write() as conn:
            conn.execute(
                ticks.update()
                .where(ticks.c.id == tick_id)
                .values(planned=json.dumps(planned), new_cursor=new_cursor, cursor_updated=cursor_updated)
            )

    def finish_tick(
        self,
        tick_id: int,
        status: str,
        *,
        run_ids: list[str] | None = None,
        skip_reason: str | None = None,
        error: str | None = None,
        cursor: tuple[str, str, str | None] | None = None,
    ) -> None:
        """End a tick; with ``cursor=(kind, name, value)`` the instigator's cursor moves in the same transaction."""
        self.finish_ticks([TickEnd(tick_id, status, run_ids or [], skip_reason, error, cursor)])

    # -- ticks in batches (the daemons at scale) -------------------------------------------------

    def create_ticks(self, news: list[NewTick], epoch: int | None) -> list[Tick | None]:
        """Insert many ticks in one transaction, fenced by ``epoch``; None where one already exists.

        A schedule's tick is unique per (name, scheduled time): an existing one is left alone and
        its slot in the answer is None. Sensor ticks (no scheduled time) never clash; a batch holds
        at most one per sensor. Finished ticks with ``move_cursor`` move their sensor's cursor in
        the same transaction.
        """
        from dagd.storage.store import dialect_insert

        if not news:
            return []
        now = utcnow()
        rows = [
            {
                "kind": n.kind,
                "name": n.name,
                "scheduled_time": n.scheduled_time,
                "status": n.status,
                "skip_reason": n.skip_reason,
                "error": n.error,
                "planned": json.dumps(n.planned) if n.planned is not None else None,
                "new_cursor": n.new_cursor,
                "cursor_updated": n.cursor_updated,
                "epoch": epoch,
                "started_at": now,
                "ended_at": now if n.status != TICK_STARTED else None,
            }
            for n in news
        ]
        ids: dict[tuple[str, str, Any], int] = {}
        with self._storage.write() as conn:
            self._check_epoch(conn, epoch)
            # executemany form: one cached compiled statement, sent as multi-row batches by
            # SQLAlchemy's "insertmanyvalues" (a .values(list) statement is compiled every time).
            stmt = (
                dialect_insert(conn)(ticks)
                .on_conflict_do_nothing()
                .returning(ticks.c.id, ticks.c.kind, ticks.c.name, ticks.c.scheduled_time)
            )
            for piece in pieces(rows):
                for tick_id, kind, name, scheduled_time in conn.execute(stmt, piece):
                    ids[(kind, name, as_utc(scheduled_time))] = tick_id
            moves = [
                {"k": n.kind, "n": n.name, "c": n.new_cursor}
                for n in news
                if n.move_cursor and (n.kind, n.name, as_utc(n.scheduled_time)) in ids
            ]
            if moves:
                conn.execute(_CURSOR_UPDATE, moves)
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

    def plan_ticks(self, plans: list[tuple[int, list[dict[str, Any]]]]) -> None:
        """Save the run requests of many STARTED ticks (before any of them is submitted)."""
        if not plans:
            return
        with self._storage.write() as conn:
            conn.execute(
                ticks.update().where(ticks.c.id == sa.bindparam("tick_id")).values(planned=sa.bindparam("p")),
                [{"tick_id": tick_id, "p": json.dumps(planned)} for tick_id, planned in plans],
            )

    def finish_ticks(self, ends: list[TickEnd]) -> None:
        """End many ticks in one transaction, with the cursor moves they carry."""
        if not ends:
            return
        now = utcnow()
        with self._storage.write() as conn:
            conn.execute(
                ticks.update()
                .where(ticks.c.id == sa.bindparam("tick_id"))
                .values(
                    status=sa.bindparam("s"),
                    run_ids=sa.bindparam("r"),
                    skip_reason=sa.bindparam("why"),
                    error=sa.bindparam("e"),
                    ended_at=sa.bindparam("at"),
                ),
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
            moves = [{"k": e.cursor[0], "n": e.cursor[1], "c": e.cursor[2]} for e in ends if e.cursor]
            if moves:
                conn.execute(_CURSOR_UPDATE, moves)

    def cursors(self, kind: str, names: list[str]) -> dict[str, str | None]:
        """The current cursors of ``names`` in one read."""
        if not names:
            return {}
        out: dict[str, str | None] = {}
        with self._storage.read() as conn:
            for chunk in padded(names):
                rows = conn.execute(
                    sa.select(instigators.c.name, instigators.c.cursor).where(
                        instigators.c.kind == kind, instigators.c.name.in_(chunk)
                    )
                ).all()
                out.update((name, cursor) for name, cursor in rows)
        return out

    @staticmethod
    def _check_epoch(conn: sa.Connection, epoch: int | None) -> None:
        if epoch is not None:
            current = conn.execute(sa.select(epoch_of(SUPERVISOR_LEASE))).scalar()
            if current is not None and current != epoch:
                raise Conflict(f"lease epoch {epoch} is stale (now {current}): not creating ticks")

    def unfinished_ticks(self, kind: str) -> list[Tick]:
        with self._storage.read() as conn:
            rows = conn.execute(
                sa.select(ticks)
                .where(ticks.c.kind == kind, ticks.c.status == TICK_STARTED)
                .order_by(ticks.c.id)
            ).all()
        return [_tick(r) for r in rows]

    def last_scheduled_times(self) -> dict[str, datetime]:
        """Per schedule, the latest scheduled time that has a tick (any status)."""
        with self._storage.read() as conn:
            rows = conn.execute(
                sa.select(ticks.c.name, sa.func.max(ticks.c.scheduled_time))
                .where(ticks.c.kind == "schedule")
                .group_by(ticks.c.name)
            ).all()
        return {name: as_utc(at) for name, at in rows if at is not None}  # type: ignore[misc]

    def last_tick_starts(self, kind: str) -> dict[str, datetime]:
        """Per instigator of ``kind``, when its latest tick started (the newest id, from the index)."""
        newest = sa.select(sa.func.max(ticks.c.id)).where(ticks.c.kind == kind).group_by(ticks.c.name)
        with self._storage.read() as conn:
            rows = conn.execute(
                sa.select(ticks.c.name, ticks.c.started_at).where(ticks.c.id.in_(newest))
            ).all()
        return {name: as_utc(at) for name, at in rows if at is not None}  # type: ignore[misc]

    def ticks(self, kind: str, name: str, limit: int = 20) -> list[Tick]:
        with self._storage.read() as conn:
            rows = conn.execute(
                sa.select(ticks)
                .where(ticks.c.kind == kind, ticks.c.name == name)
                .order_by(ticks.c.id.desc())
                .limit(limit)
            ).all()
        return [_tick(r) for r in rows]
