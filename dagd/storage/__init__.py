"""Instance storage: the schema, engines for SQLite and PostgreSQL, migrations, and the queries.

Everything durable lives here: runs, their events and logs, daemon heartbeats, leases and
instance-wide settings. Only this package writes SQL.
"""

from dagd.storage.engine import open_storage
from dagd.storage.store import Storage

__all__ = ["Storage", "open_storage"]
