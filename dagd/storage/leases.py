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
from typing import TYPE_CHECKING

import sqlalchemy as sa

from dagd.storage.schema import leases
from dagd.timefmt import as_utc, utcnow

if TYPE_CHECKING:
    from dagd.storage.store import Storage

SUPERVISOR_LEASE = "supervisor"


@dataclass(frozen=True)
class Lease:
    name: str
    holder: str
    epoch: int
    expires_at: datetime


def epoch_of(name: str) -> sa.ScalarSelect[int]:
    """A subquery with the lease's current epoch, for fenced writes."""
    return sa.select(leases.c.epoch).where(leases.c.name == name).scalar_subquery()


class LeaseStore:
    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    def get(self, name: str) -> Lease | None:
        with self._storage.read() as conn:
            row = conn.execute(sa.select(leases).where(leases.c.name == name)).first()
        if row is None:
            return None
        return Lease(row.name, row.holder, row.epoch, as_utc(row.expires_at))  # type: ignore[arg-type]

    def acquire(self, name: str, holder: str, ttl_seconds: float) -> tuple[Lease | None, Lease | None]:
        """Try to take the lease; returns (mine, None) on success or (None, current holder's)."""
        now = utcnow()
        expires = now + timedelta(seconds=ttl_seconds)
        with self._storage.write() as conn:
            query = sa.select(leases).where(leases.c.name == name)
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()
            row = conn.execute(query).first()
            if row is None:
                try:
                    with conn.begin_nested():
                        conn.execute(
                            leases.insert().values(name=name, holder=holder, epoch=1, expires_at=expires)
                        )
                except sa.exc.IntegrityError:
                    current = self._row(conn, name)
                    return None, current
                return Lease(name, holder, 1, expires), None
            current_expiry = as_utc(row.expires_at)
            assert current_expiry is not None
            if row.holder != holder and current_expiry > now:
                return None, Lease(row.name, row.holder, row.epoch, current_expiry)
            epoch = row.epoch if row.holder == holder else row.epoch + 1
            result = conn.execute(
                leases.update()
                .where(leases.c.name == name, leases.c.epoch == row.epoch, leases.c.holder == row.holder)
                .values(holder=holder, epoch=epoch, expires_at=expires)
            )
            if result.rowcount != 1:
                return None, self._row(conn, name)
            return Lease(name, holder, epoch, expires), None

    def renew(self, lease: Lease, ttl_seconds: float) -> Lease | None:
        """Extend our lease; None if it was taken over (we must stop driving the instance)."""
        expires = utcnow() + timedelta(seconds=ttl_seconds)
        with self._storage.write() as conn:
            result = conn.execute(
                leases.update()
                .where(
                    leases.c.name == lease.name,
                    leases.c.holder == lease.holder,
                    leases.c.epoch == lease.epoch,
                )
                .values(expires_at=expires)
            )
        if result.rowcount != 1:
            return None
        return Lease(lease.name, lease.holder, lease.epoch, expires)

    def release(self, lease: Lease) -> None:
        """Expire our lease now so a successor need not wait for the time to live."""
        with self._storage.write() as conn:
            conn.execute(
                leases.update()
                .where(
                    leases.c.name == lease.name,
                    leases.c.holder == lease.holder,
                    leases.c.epoch == lease.epoch,
                )
                .values(expires_at=utcnow() - timedelta(seconds=1))
            )

    @staticmethod
    def _row(conn: sa.Connection, name: str) -> Lease | None:
        row = conn.execute(sa.select(leases).where(leases.c.name == name)).first()
        if row is None:
            return None
        return Lease(row.name, row.holder, row.epoch, as_utc(row.expires_at))  # type: ignore[arg-type]
