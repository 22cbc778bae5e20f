"""Daemon heartbeats: one row per daemon name, written by an atomic upsert after each unit of work.

Stamped and aged by the database's clock (``Sql.now``): a heartbeat written on host A and judged
on host B is right whatever either host's wall clock says (SPEC 9.2, docs/high-availability.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from dagd.storage.sql import when

if TYPE_CHECKING:
    from dagd.storage.database import Database

MAX_ERRORS = 5


@dataclass(frozen=True)
class Heartbeat:
    daemon_name: str
    daemon_id: str
    pid: int
    incarnation: int
    iteration: int
    phase: str
    heartbeat_at: datetime | None = None  # stamped by the database's clock when written
    errors: list[dict[str, Any]] = field(default_factory=list)  # newest first: {"at", "message"}
    info: dict[str, Any] = field(default_factory=dict)
    # Seconds since heartbeat_at by the database's clock, when read back (None when writing).
    age_seconds: float | None = None

    def aged(self, seconds: float) -> Heartbeat:
        """This heartbeat read ``seconds`` ago (a cached read answering for a hung database)."""
        return self if self.age_seconds is None else replace(self, age_seconds=self.age_seconds + seconds)


_BEAT = (
    "INSERT INTO daemon_heartbeats"
    " (daemon_name, daemon_id, pid, incarnation, iteration, phase, heartbeat_at, errors, info)"
    " VALUES (:daemon_name, :daemon_id, :pid, :incarnation, :iteration, :phase, {now}, :errors, :info)"
    " ON CONFLICT (daemon_name) DO UPDATE SET daemon_id = excluded.daemon_id, pid = excluded.pid,"
    " incarnation = excluded.incarnation, iteration = excluded.iteration, phase = excluded.phase,"
    " heartbeat_at = excluded.heartbeat_at, errors = excluded.errors, info = excluded.info"
)


class DaemonStore:
    def __init__(self, storage: Database) -> None:
        self._storage = storage

    def beat(self, hb: Heartbeat) -> None:
        """One atomic upsert of the daemon's row (never insert-then-update), stamped by the
        database's clock; ``hb.heartbeat_at`` is not written."""
        with self._storage.sql_write() as sql:
            sql.execute(
                _BEAT.format(now=sql.now),
                {
                    "daemon_name": hb.daemon_name,
                    "daemon_id": hb.daemon_id,
                    "pid": hb.pid,
                    "incarnation": hb.incarnation,
                    "iteration": hb.iteration,
                    "phase": hb.phase,
                    "errors": json.dumps(hb.errors[:MAX_ERRORS]),
                    "info": json.dumps(hb.info),
                },
            )

    def all(self) -> dict[str, Heartbeat]:
        with self._storage.sql_read() as sql:
            rows = sql.records("SELECT * FROM daemon_heartbeats")
            db_now = sql.db_now()
        return {
            row.daemon_name: Heartbeat(
                daemon_name=row.daemon_name,
                daemon_id=row.daemon_id,
                pid=row.pid,
                incarnation=row.incarnation,
                iteration=row.iteration,
                phase=row.phase,
                heartbeat_at=when(row.heartbeat_at),  # type: ignore[arg-type]
                errors=json.loads(row.errors),
                info=json.loads(row.info),
                age_seconds=(db_now - when(row.heartbeat_at)).total_seconds(),  # type: ignore[operator]
            )
            for row in rows
        }
