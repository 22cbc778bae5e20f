"""Wake-ups across supervisors: work stored through a standby reaches the leader's daemons at once.

Every supervisor serves the API, but only the leader runs daemons. A run submitted through a
standby is stored by the standby; the leader's ``run_queue`` daemon would find it only at its next
poll. Instead the standby sends ``NOTIFY dagd_wake, '<schema>:<daemon>'`` (PostgreSQL) after the
write has committed, and the leader's supervisor, which ``LISTEN``s on a connection of its own
(:class:`WakeListener`), wakes that daemon through its process table as a local submission
would. The payload names the schema so instances sharing one database (tests isolate by schema)
wake only their own daemons. A lost notification costs only latency: the daemon still polls.

On SQLite there is nothing to do: its database lives on one host, where one supervisor leads.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from dagd.errors import DagdError
from dagd.storage.database import Database
from dagd.storage.sql import PG_CONNECTION_ARGS, POSTGRES

log = logging.getLogger("dagd.supervisor")

CHANNEL = "dagd_wake"


def notify_leader(storage: Database, daemon: str) -> None:
    """Ask the leading supervisor to wake ``daemon`` now; best effort (it polls anyway)."""
    if storage.dialect != POSTGRES:
        return
    try:
        with storage.sql_write() as sql:
            sql.execute(
                f"SELECT pg_notify('{CHANNEL}', current_schema() || ':' || :daemon)", {"daemon": daemon}
            )
    except DagdError as exc:
        log.warning("could not notify the leader to wake %s: %s", daemon, exc)


class WakeListener:
    """The leader's side: a thread LISTENing on its own connection, waking daemons by name."""

    def __init__(self, conninfo: str, wake: Callable[[str], None]) -> None:
        self.conninfo = conninfo
        self.wake = wake
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wake-listener", daemon=True)

    @classmethod
    def for_storage(cls, storage: Any, wake: Callable[[str], None]) -> WakeListener | None:
        """A listener for the supervisor's storage (a SQLAlchemy engine's URL), None on SQLite."""
        if storage.dialect != POSTGRES:
            return None
        url = storage.engine.url.set(drivername="postgresql")
        return cls(url.render_as_string(hide_password=False), wake)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        import psycopg
        from psycopg.conninfo import make_conninfo

        conninfo = make_conninfo(self.conninfo, **PG_CONNECTION_ARGS)
        while not self._stop.is_set():
            try:
                with psycopg.connect(conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    schema = conn.execute("SELECT current_schema()").fetchone()[0]  # type: ignore[index]
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5):
                            where, _, daemon = note.payload.partition(":")
                            if where == schema and daemon:
                                self.wake(daemon)
            except psycopg.Error as exc:
                log.warning(
                    "wake-up listener: %s; reconnecting", str(exc).splitlines()[0] if str(exc) else exc
                )
                self._stop.wait(1.0)
