"""Reading run events as a change feed, from a gap-aware cursor (dagd.runs.cursor).

The stream readers (dagd.supervisor.streams) call :func:`read_changes` with their cursor and get
every event the cursor has not seen, in id order, with the run each belongs to and the database's
clock at the read (the cursor ages its gaps by it).
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from dagd.runs.cursor import Cursor
from dagd.runs.model import Run, RunStatus
from dagd.storage.runs import row_to_run
from dagd.storage.sql import in_list, pieces, when

if TYPE_CHECKING:
    from dagd.storage.database import Database
    from dagd.storage.sql import Sql


@dataclass(frozen=True)
class RunChange:
    """One stored run event: a status change (``status`` set) or an info line (``status`` None)."""

    event_id: int
    run_id: str
    at: datetime
    status: RunStatus | None
    message: str
    run: Run | None  # None once the run was deleted


@dataclass(frozen=True)
class ChangeBatch:
    ids: builtins.list[int]  # every event id read, status change or not
    changes: builtins.list[RunChange]  # all of them, in id order
    now: float  # the database's clock at the read, seconds since the epoch
    complete: bool = True  # False: ids only (read_changes(ids_only=True)), no changes


_COLUMNS = (
    "e.id AS ev_id, e.run_id AS ev_run_id, e.at AS ev_at, e.status AS ev_status, e.message AS ev_message, r.*"
)


def read_changes(
    storage: Database, cursor: Cursor, limit: int = 1000, *, ids_only: bool = False
) -> ChangeBatch:
    """The events ``cursor`` has not seen: those in its gaps, then up to ``limit`` after it.

    ``ids_only``: only their ids (``changes`` empty, ``complete`` False), which is all a reader
    with nobody to hand changes to needs to move its cursor; reading and decoding each event's
    run is most of the cost of a busy feed."""
    columns = "e.id AS ev_id" if ids_only else _COLUMNS
    source = "run_events e" if ids_only else "run_events e LEFT JOIN runs r ON r.run_id = e.run_id"
    with storage.sql_read() as sql:
        now = sql.db_now().timestamp()
        rows: builtins.list = []
        for chunk in pieces(sorted(cursor.gaps)):
            names, params = in_list("g", chunk)
            rows += sql.records(f"SELECT {columns} FROM {source} WHERE e.id IN ({names})", params)
        rows += sql.records(
            f"SELECT {columns} FROM {source} WHERE e.id > :last ORDER BY e.id LIMIT :limit",
            {"last": cursor.last, "limit": limit},
        )
    if ids_only:
        return ChangeBatch(sorted(row.ev_id for row in rows), [], now, complete=False)
    changes = sorted((_change(row) for row in rows), key=lambda c: c.event_id)
    return ChangeBatch([c.event_id for c in changes], changes, now)


def _change(row: object) -> RunChange:
    r = row
    return RunChange(
        event_id=r.ev_id,  # type: ignore[attr-defined]
        run_id=r.ev_run_id,  # type: ignore[attr-defined]
        at=when(r.ev_at),  # type: ignore[attr-defined,arg-type]
        status=RunStatus(r.ev_status) if r.ev_status else None,  # type: ignore[attr-defined]
        message=r.ev_message,  # type: ignore[attr-defined]
        run=row_to_run(r) if r.run_id is not None else None,  # type: ignore[attr-defined]
    )


def latest_ids(storage: Database) -> tuple[int, int, float]:
    """The newest run event id and log line id (0 when none), and the database's clock."""
    with storage.sql_read() as sql:
        return _latest(sql)


def _latest(sql: Sql) -> tuple[int, int, float]:
    events = sql.scalar("SELECT MAX(id) FROM run_events") or 0
    logs = sql.scalar("SELECT MAX(id) FROM run_logs") or 0
    return int(events), int(logs), sql.db_now().timestamp()


def oldest_cursor(storage: Database) -> Cursor:
    """A cursor before every stored event (a watch ``from_beginning``)."""
    with storage.sql_read() as sql:
        first = sql.scalar("SELECT MIN(id) FROM run_events")
    return Cursor(last=int(first) - 1 if first else 0)
