"""Instance storage: the schema, engines for SQLite and PostgreSQL, migrations, and the queries.

Everything durable lives here: runs, their events and logs, daemon heartbeats, leases and
instance-wide settings. Only this package writes SQL.

``Storage`` and ``open_storage`` are imported on first use: the daemons import the store modules
without SQLAlchemy (:mod:`dagd.storage.sql`), and this package's import must not pull it in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dagd.storage.engine import open_storage
    from dagd.storage.store import Storage

__all__ = ["Storage", "open_storage"]


def __getattr__(name: str) -> Any:
    if name == "Storage":
        from dagd.storage.store import Storage

        return Storage
    if name == "open_storage":
        from dagd.storage.engine import open_storage

        return open_storage
    raise AttributeError(name)
