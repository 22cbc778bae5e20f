"""Leases: one driver per instance, with an epoch for fencing.

The supervisor holds the ``supervisor`` lease and renews it well inside its time to live. A second
supervisor on the same storage (same home, or another host on the same PostgreSQL) finds it held
and refuses. If the holder stops renewing, the lease expires and the next acquirer takes it with
``epoch + 1``. Writes that launch work check the epoch in the same statement (see
``RunStore.transition(fence=...)``), so a stale holder that wakes up after a takeover cannot
launch anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from dagd.storage.sql import POSTGRES, when
from dagd.timefmt import utcnow

if TYPE_CHECKING:
    from dagd.storage.sql import Database, Sql

SUPERVISOR_LEASE = "supervisor"


@dataclass(frozen=True)
class Lease:
    name: str
    holder: str
    epoch: int
    expires_at: datetime


#: A subquery with the lease's current epoch, for fenced writes: ``... AND :epoch = (EPOCH_OF)``
#: with the lease name bound as ``:lease``.
EPOCH_OF = "SELECT epoch FROM leases WHERE name = :lease"


def _lease(row: Any) -> Lease:
    return Lease(row.name, row.holder, row.epoch, when(row.expires_at))  # type: ignore[arg-type]


class LeaseStore:
    def __init__(self, storage: Database) -> None:
        self._storage = storage

    def get(self, name: str) -> Lease | None:
        with self._storage.sql_read() as sql:
            return self._row(sql, name)

    def acquire(self, name: str, holder: str, ttl_seconds: float) -> tuple[Lease | None, Lease | None]:
        """Try to take the lease; returns (mine, None) on success or (None, current holder's)."""
        now = utcnow()
        expires = now + timedelta(seconds=ttl_seconds)
        with self._storage.sql_write() as sql:
            lock = " FOR UPDATE" if sql.dialect == POSTGRES else ""  # SQLite: BEGIN IMMEDIATE did
            row = sql.record(f"SELECT * FROM leases WHERE name = :name{lock}", {"name": name})
            if row is None:
                inserted = sql.rows(
                    "INSERT INTO leases (name, holder, epoch, expires_at) VALUES (:name, :holder, 1, :expires)"
                    " ON CONFLICT (name) DO NOTHING RETURNING epoch",
                    {"name": name, "holder": holder, "expires": expires},
                )
                if not inserted:  # another acquirer inserted it first
                    return None, self._row(sql, name)
                return Lease(name, holder, 1, expires), None
            current = _lease(row)
            if row.holder != holder and current.expires_at > now:
                return None, current
            epoch = row.epoch if row.holder == holder else row.epoch + 1
            changed = sql.execute(
                "UPDATE leases SET holder = :holder, epoch = :epoch, expires_at = :expires"
                " WHERE name = :name AND epoch = :old_epoch AND holder = :old_holder",
                {
                    "holder": holder,
                    "epoch": epoch,
                    "expires": expires,
                    "name": name,
                    "old_epoch": row.epoch,
                    "old_holder": row.holder,
                },
            )
            if changed != 1:
                return None, self._row(sql, name)
            return Lease(name, holder, epoch, expires), None

    def renew(self, lease: Lease, ttl_seconds: float) -> Lease | None:
        """Extend our lease; None if it was taken over (we must stop driving the instance)."""
        expires = utcnow() + timedelta(seconds=ttl_seconds)
        if self._set_expiry(lease, expires) != 1:
            return None
        return Lease(lease.name, lease.holder, lease.epoch, expires)

    def release(self, lease: Lease) -> None:
        """Expire our lease now so a successor need not wait for the time to live."""
        self._set_expiry(lease, utcnow() - timedelta(seconds=1))

    def _set_expiry(self, lease: Lease, expires: datetime) -> int:
        with self._storage.sql_write() as sql:
            return sql.execute(
                "UPDATE leases SET expires_at = :expires"
                " WHERE name = :name AND holder = :holder AND epoch = :epoch",
                {"expires": expires, "name": lease.name, "holder": lease.holder, "epoch": lease.epoch},
            )

    @staticmethod
    def _row(sql: Sql, name: str) -> Lease | None:
        row = sql.record("SELECT * FROM leases WHERE name = :name", {"name": name})
        return None if row is None else _lease(row)
