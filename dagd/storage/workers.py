"""Worker hosts' SQL: register, heartbeat, stop; who is alive and how many slots are free.

A worker host (``dagctl worker run``, :mod:`dagd.runs.celery.host`) has one row, keyed by its
name (``host:pid``), stamped on the database's clock at every heartbeat. Liveness is judged on
that clock only: a host whose heartbeat is older than the timeout is dead and its slots stop
counting, wherever its own clock stands.

Free slots per queue (what the run queue may still dispatch into) = the slots of the live,
accepting hosts that consume the queue, minus the runs in progress routed to it (by their
``dagd/queue`` tag, else the launcher's default queue). A host consuming several queues counts
its slots in each; Celery's prefetch of one per slot still never hands it more than it has, so
any excess waits in the broker, never on an overloaded host.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from dagd.runs.model import IN_PROGRESS_STATUSES
from dagd.storage.sql import in_list, when

if TYPE_CHECKING:
    from dagd.storage.database import Database

QUEUE_TAG = "dagd/queue"
# Rows of hosts silent this long are forgotten (a host that died long ago is no longer news).
FORGET_AFTER_SECONDS = 24 * 3600.0


@dataclass(frozen=True)
class WorkerHost:
    name: str
    host: str
    pid: int
    queues: tuple[str, ...]
    slots: int
    in_use: int
    accepting: bool
    started_at: datetime
    heartbeat_at: datetime
    silent_seconds: float  # by the database's clock, as of the read

    def healthy(self, timeout: float) -> bool:
        return self.silent_seconds <= timeout

    def to_json(self, timeout: float) -> dict[str, Any]:
        from dagd.timefmt import rfc3339

        return {
            "name": self.name,
            "host": self.host,
            "queues": list(self.queues),
            "slots": self.slots,
            "in_use": self.in_use,
            "accepting": self.accepting,
            "last_heartbeat_at": rfc3339(self.heartbeat_at),
            "healthy": self.healthy(timeout),
        }


class WorkerStore:
    def __init__(self, storage: Database) -> None:
        self._storage = storage

    def register(self, name: str, host: str, pid: int, queues: Sequence[str], slots: int) -> None:
        """(Re)create this host's row, alive as of now; forget hosts silent for a day."""
        params = {
            "name": name,
            "host": host,
            "pid": pid,
            "queues": json.dumps(list(queues)),
            "slots": slots,
            "accepting": True,
            "forget": FORGET_AFTER_SECONDS,
        }
        with self._storage.sql_write() as sql:
            sql.execute(f"DELETE FROM workers WHERE {sql.older_than('heartbeat_at', 'forget')}", params)
            sql.execute("DELETE FROM workers WHERE name = :name", params)
            sql.execute(
                "INSERT INTO workers (name, host, pid, queues, slots, in_use, accepting, started_at, heartbeat_at)"
                f" VALUES (:name, :host, :pid, :queues, :slots, 0, :accepting, {sql.now}, {sql.now})",
                params,
            )

    def heartbeat(self, name: str, in_use: int, accepting: bool) -> bool:
        """Stamp the host alive (database clock); False if its row is gone (then register again)."""
        with self._storage.sql_write() as sql:
            return (
                sql.execute(
                    f"UPDATE workers SET heartbeat_at = {sql.now}, in_use = :in_use, accepting = :accepting"
                    " WHERE name = :name",
                    {"name": name, "in_use": in_use, "accepting": accepting},
                )
                == 1
            )

    def remove(self, name: str) -> None:
        """A host that stopped cleanly: gone from the fleet at once."""
        with self._storage.sql_write() as sql:
            sql.execute("DELETE FROM workers WHERE name = :name", {"name": name})

    def all(self) -> builtins.list[WorkerHost]:
        with self._storage.sql_read() as sql:
            now = sql.db_now()
            rows = sql.records("SELECT * FROM workers ORDER BY host, name")
        return [_row_to_host(row, now) for row in rows]

    def free_slots(self, timeout: float, default_queue: str) -> dict[str, int]:
        """Free slots per queue: live accepting hosts' slots minus runs in progress on the queue.

        One read, so both halves are of the same moment (see the module's docstring).
        """
        names, params = in_list("st", sorted(s.value for s in IN_PROGRESS_STATUSES))
        params.update(tag=QUEUE_TAG, default=default_queue)
        with self._storage.sql_read() as sql:
            now = sql.db_now()
            rows = sql.records("SELECT * FROM workers")
            used = sql.rows(
                "SELECT COALESCE(t.value, :default), COUNT(*) FROM runs r"
                " LEFT JOIN run_tags t ON t.run_id = r.run_id AND t.key = :tag"
                f" WHERE r.status IN ({names}) GROUP BY COALESCE(t.value, :default)",
                params,
            )
        free: dict[str, int] = {}
        for host in (_row_to_host(row, now) for row in rows):
            if host.accepting and host.healthy(timeout):
                for queue in host.queues:
                    free[queue] = free.get(queue, 0) + host.slots
        for queue, count in used:
            if queue in free:
                free[queue] -= int(count)
        return {queue: max(0, n) for queue, n in free.items()}


def _row_to_host(row: Any, now: datetime) -> WorkerHost:
    heartbeat = when(row.heartbeat_at)
    assert heartbeat is not None
    started = when(row.started_at)
    assert started is not None
    return WorkerHost(
        name=row.name,
        host=row.host,
        pid=row.pid,
        queues=tuple(json.loads(row.queues or "[]")),
        slots=row.slots,
        in_use=row.in_use,
        accepting=bool(row.accepting),
        started_at=started,
        heartbeat_at=heartbeat,
        silent_seconds=max(0.0, (now - heartbeat).total_seconds()),
    )


__all__ = ["QUEUE_TAG", "WorkerHost", "WorkerStore"]
