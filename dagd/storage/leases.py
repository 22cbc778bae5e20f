"""Leases: one driver per instance, with an epoch for fencing, timed by the database's clock.

The supervisor holds the ``supervisor`` lease and renews it well inside its time to live. Whether
a lease has expired is decided by the database's clock alone (``clock_timestamp()`` on
PostgreSQL; on SQLite, whose database lives on one host, that host's clock): acquire, renew and
release are each one compare-and-set statement, so two hosts whose wall clocks disagree still
agree on who holds the lease. A second supervisor finds it held and refuses or stands by. If the
holder stops renewing, the lease expires and the next acquirer takes it with ``epoch + 1``.

Writes that launch work check the epoch in the same statement (``EPOCH_OF``, used by
``RunStore.transition(fence=...)``, the attempts and the instigator stores), so a stale holder
that wakes up after a takeover cannot launch anything.

Standbys note themselves in rows named ``<lease>/standby/<hash of holder>`` with their own expiry, so
that a renewal also tells the holder whether anyone could take over (``Lease.standbys``): a holder
that cannot renew steps down only if someone could (``dagd.supervisor.lease``).

Every answer carries the database's clock at the moment of the statement (``Lease.db_now``):
``expires_in_seconds`` is a difference of two database times, right whatever this host's clock
says, and the keeper compares ``db_now`` with its own clock to measure skew.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from dagd.storage.sql import POSTGRES, when

if TYPE_CHECKING:
    from dagd.storage.database import Database
    from dagd.storage.sql import Sql

SUPERVISOR_LEASE = "supervisor"


@dataclass(frozen=True)
class Lease:
    name: str
    holder: str
    epoch: int
    expires_at: datetime
    db_now: datetime  # the database's clock when this was read or written
    # Supervisors standing by for this lease, as of a renewal (see ``note_standby``); -1 unknown.
    standbys: int = -1

    @property
    def expires_in_seconds(self) -> float:
        """Time to live left, by the database's clock (negative once expired)."""
        return (self.expires_at - self.db_now).total_seconds()


#: A subquery with the lease's current epoch, for fenced writes: ``... AND :epoch = (EPOCH_OF)``
#: with the lease name bound as ``:lease``.
EPOCH_OF = "SELECT epoch FROM leases WHERE name = :lease"


def _clock(sql: Sql, ttl_seconds: float) -> tuple[str, str, dict[str, Any]]:
    """SQL for the database's now and now + ttl, with their parameters.

    PostgreSQL: ``clock_timestamp()`` (the statement's moment, not the transaction's start).
    SQLite: this host's clock, read once and bound, so ``now`` and ``now + ttl`` agree.
    """
    if sql.dialect == POSTGRES:
        return "clock_timestamp()", "clock_timestamp() + make_interval(secs => :ttl)", {"ttl": ttl_seconds}
    now = datetime.now(timezone.utc)
    return ":db_now", ":expires", {"db_now": now, "expires": now + timedelta(seconds=ttl_seconds)}


def _short(holder: str) -> str:
    """A holder id short enough for a lease name (64 characters), still unique in practice."""
    return hashlib.sha256(holder.encode()).hexdigest()[:20]


def _standby_row(name: str, holder: str) -> str:
    """The name of ``holder``'s standby note for lease ``name``."""
    return f"{name}/standby/{_short(holder)}"


def _lease(name: str, holder: str, row: Any) -> Lease:
    return Lease(name, holder, row.epoch, when(row.expires_at), when(row.db_now))  # type: ignore[arg-type]


class LeaseStore:
    def __init__(self, storage: Database) -> None:
        self._storage = storage

    def get(self, name: str) -> Lease | None:
        with self._storage.sql_read() as sql:
            return self._row(sql, name)

    def acquire(self, name: str, holder: str, ttl_seconds: float) -> tuple[Lease | None, Lease | None]:
        """Try to take the lease; returns (mine, None) on success or (None, current holder's).

        One statement: insert the lease, or take it over if it expired by the database's clock
        (or is already ours), always with a new epoch."""
        with self._storage.sql_write() as sql:
            now, expiry, params = _clock(sql, ttl_seconds)
            row = sql.record(
                "INSERT INTO leases (name, holder, epoch, expires_at)"
                f" VALUES (:name, :holder, 1, {expiry})"
                " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, epoch = leases.epoch + 1,"
                " expires_at = excluded.expires_at"
                f" WHERE leases.expires_at < {now} OR leases.holder = :holder"
                f" RETURNING epoch, expires_at, {now} AS db_now",
                {"name": name, "holder": holder, **params},
            )
            if row is not None:
                # A standby that takes over stands by no more: its own note must not count as
                # someone who could take over from it (it would step down for nobody).
                sql.execute("DELETE FROM leases WHERE name = :row", {"row": _standby_row(name, holder)})
                return replace(_lease(name, holder, row), standbys=self._standbys(sql, name)), None
            return None, self._row(sql, name)

    def renew(self, lease: Lease, ttl_seconds: float) -> Lease | None:
        """Extend our lease; None if it was taken over (we must stop driving the instance). The
        answer counts the live standbys (``Lease.standbys``)."""
        with self._storage.sql_write() as sql:
            now, expiry, params = _clock(sql, ttl_seconds)
            row = sql.record(
                f"UPDATE leases SET expires_at = {expiry}"
                " WHERE name = :name AND holder = :holder AND epoch = :epoch"
                f" RETURNING epoch, expires_at, {now} AS db_now",
                {"name": lease.name, "holder": lease.holder, "epoch": lease.epoch, **params},
            )
            if row is None:
                return None
            return replace(_lease(lease.name, lease.holder, row), standbys=self._standbys(sql, lease.name))

    @staticmethod
    def _standbys(sql: Sql, name: str) -> int:
        """Live standby notes for lease ``name`` (same transaction as the write that asks)."""
        now, _expiry, params = _clock(sql, 0.0)
        return int(
            sql.scalar(
                f"SELECT count(*) FROM leases WHERE name LIKE :standbys AND expires_at > {now}",
                {"standbys": f"{name}/standby/%", **params},
            )
        )

    def note_standby(self, name: str, holder: str, ttl_seconds: float) -> None:
        """``holder`` stands by for lease ``name`` for the next ``ttl_seconds`` (database's clock);
        standby rows expired for a while are removed on the way."""
        with self._storage.sql_write() as sql:
            now, expiry, params = _clock(sql, ttl_seconds)
            sql.execute(
                "INSERT INTO leases (name, holder, epoch, expires_at)"
                f" VALUES (:row, :holder, 0, {expiry})"
                " ON CONFLICT (name) DO UPDATE SET expires_at = excluded.expires_at",
                {"row": _standby_row(name, holder), "holder": holder, **params},
            )
            _, stale, stale_params = _clock(sql, -10 * ttl_seconds)
            sql.execute(
                f"DELETE FROM leases WHERE name LIKE :standbys AND expires_at < {stale}",
                {"standbys": f"{name}/standby/%", **stale_params},
            )

    def release(self, lease: Lease) -> bool:
        """Expire our lease now so a successor need not wait for the time to live; False if it
        was no longer ours."""
        with self._storage.sql_write() as sql:
            _now, expiry, params = _clock(sql, -1.0)
            return (
                sql.execute(
                    f"UPDATE leases SET expires_at = {expiry}"
                    " WHERE name = :name AND holder = :holder AND epoch = :epoch",
                    {"name": lease.name, "holder": lease.holder, "epoch": lease.epoch, **params},
                )
                == 1
            )

    @staticmethod
    def _row(sql: Sql, name: str) -> Lease | None:
        now, _expiry, params = _clock(sql, 0.0)
        row = sql.record(
            f"SELECT holder, epoch, expires_at, {now} AS db_now FROM leases WHERE name = :name",
            {"name": name, **params},
        )
        return None if row is None else _lease(name, row.holder, row)
