"""Daemon heartbeats: one row per daemon name, written by an atomic upsert after each unit of work."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from dagd.storage.schema import daemon_heartbeats
from dagd.timefmt import as_utc, utcnow

if TYPE_CHECKING:
    from dagd.storage.store import Storage

MAX_ERRORS = 5


@dataclass(frozen=True)
class Heartbeat:
    daemon_name: str
    daemon_id: str
    pid: int
    incarnation: int
    iteration: int
    phase: str
    heartbeat_at: datetime
    errors: list[dict[str, Any]] = field(default_factory=list)  # newest first: {"at", "message"}
    info: dict[str, Any] = field(default_factory=dict)


class DaemonStore:
    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    def beat(self, hb: Heartbeat) -> None:
        from dagd.storage.store import upsert

        with self._storage.write() as conn:
            upsert(
                conn,
                daemon_heartbeats,
                {
                    "daemon_name": hb.daemon_name,
                    "daemon_id": hb.daemon_id,
                    "pid": hb.pid,
                    "incarnation": hb.incarnation,
                    "iteration": hb.iteration,
                    "phase": hb.phase,
                    "heartbeat_at": hb.heartbeat_at or utcnow(),
                    "errors": json.dumps(hb.errors[:MAX_ERRORS]),
                    "info": json.dumps(hb.info),
                },
                ["daemon_name"],
            )

    def all(self) -> dict[str, Heartbeat]:
        with self._storage.read() as conn:
            rows = conn.execute(sa.select(daemon_heartbeats)).all()
        return {
            row.daemon_name: Heartbeat(
                daemon_name=row.daemon_name,
                daemon_id=row.daemon_id,
                pid=row.pid,
                incarnation=row.incarnation,
                iteration=row.iteration,
                phase=row.phase,
                heartbeat_at=as_utc(row.heartbeat_at),  # type: ignore[arg-type]
                errors=json.loads(row.errors),
                info=json.loads(row.info),
            )
            for row in rows
        }
