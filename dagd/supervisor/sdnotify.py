"""systemd's notification protocol (sd_notify) for dagd's long-running processes.

Under a ``Type=notify`` unit systemd sets ``NOTIFY_SOCKET`` (a Unix datagram socket; a leading ``@``
names an abstract socket) and, with ``WatchdogSec=``, ``WATCHDOG_USEC`` (and ``WATCHDOG_PID``).
A process then sends newline-separated ``KEY=VALUE`` datagrams: ``READY=1`` when it is up,
``WATCHDOG=1`` at least every half of ``WATCHDOG_USEC`` or be restarted, ``STATUS=...`` for
``systemctl status``, ``STOPPING=1`` when it begins to stop. Without ``NOTIFY_SOCKET`` every
method is a no-op, so callers never check.

The caller owns *when* to send: the watchdog ping must come from the loop whose liveness it
vouches for (:meth:`Notifier.watchdog` is meant to be called once per pass of that loop, never
from a thread of its own, which would keep pinging while the loop is wedged). The supervisor
(:mod:`dagd.supervisor.app`) uses it; so does the worker host (``dagctl worker run``,
:mod:`dagd.runs.celery.host`): ``Notifier.from_environment()`` at start, ``ready()`` once it
consumes, ``watchdog()`` from a timer of Celery's consumer event loop, ``stopping()`` when it
begins to stop.

Nothing here may stop the process: a send that fails is logged once and otherwise ignored.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, MutableMapping

log = logging.getLogger("dagd.sdnotify")

# The variables systemd hands us; removed from our environment so that children (daemons, code
# servers, runs) do not inherit them and speak for us (sd_notify's unset_environment).
NOTIFY_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def socket_address(value: str) -> str | bytes:
    """The address to send to: ``@name`` is the abstract socket ``\\0name``; a path stays a path."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    return value


def watchdog_seconds(environ: MutableMapping[str, str], pid: int) -> float | None:
    """The watchdog timeout systemd set for this process, or None (none set, or it is for another pid)."""
    raw = environ.get("WATCHDOG_USEC", "")
    owner = environ.get("WATCHDOG_PID", "")
    if owner and owner != str(pid):
        return None
    try:
        usec = int(raw)
    except ValueError:
        return None
    return usec / 1e6 if usec > 0 else None


class Notifier:
    """One process's channel to systemd; inert when ``address`` is None."""

    def __init__(
        self,
        address: str | None,
        *,
        watchdog_timeout: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.address = address
        self.watchdog_timeout = watchdog_timeout
        # A third of the timeout, so that a pass of the caller's loop that runs late still pings
        # within the half systemd asks for.
        self.watchdog_interval = watchdog_timeout / 3 if watchdog_timeout else None
        self.clock = clock
        self._socket: socket.socket | None = None
        self._last_ping: float | None = None
        self._last_status: str | None = None
        self._ready = False
        self._failed = False

    @classmethod
    def from_environment(
        cls, environ: MutableMapping[str, str] | None = None, *, unset: bool = True
    ) -> Notifier:
        """Read (and by default remove) systemd's variables from ``environ`` (``os.environ``)."""
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        timeout = watchdog_seconds(env, os.getpid()) if address else None
        if unset:
            for name in NOTIFY_VARIABLES:
                env.pop(name, None)
        return cls(address, watchdog_timeout=timeout)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def is_ready(self) -> bool:
        return self._ready

    def send(self, *fields: str) -> bool:
        """Send one datagram of ``KEY=VALUE`` fields; True if it was sent."""
        if self.address is None:
            return False
        payload = "\n".join(fields).encode()
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.sendto(payload, socket_address(self.address))
        except OSError as exc:
            if not self._failed:  # systemd gone or a wrong path: say so once, never stop for it
                log.warning("cannot notify systemd at %s: %s", self.address, exc)
                self._failed = True
            return False
        return True

    def ready(self, status: str | None = None) -> None:
        """``READY=1`` (once; later calls only update the status)."""
        if self._ready:
            if status is not None:
                self.status(status)
            return
        self._ready = True
        fields = ["READY=1"]
        if status is not None:
            fields.append(f"STATUS={_one_line(status)}")
            self._last_status = _one_line(status)
        self.send(*fields)

    def status(self, line: str) -> None:
        """``STATUS=line``, sent only when it changed."""
        line = _one_line(line)
        if line != self._last_status:
            self._last_status = line
            self.send(f"STATUS={line}")

    def watchdog(self) -> None:
        """``WATCHDOG=1`` if a ping is due: call once per pass of the loop it vouches for."""
        if self.watchdog_interval is None:
            return
        now = self.clock()
        if self._last_ping is None or now - self._last_ping >= self.watchdog_interval:
            self._last_ping = now
            self.send("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> None:
        fields = ["STOPPING=1"]
        if status is not None:
            fields.append(f"STATUS={_one_line(status)}")
        self.send(*fields)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _one_line(text: str) -> str:
    return " ".join(text.split())


__all__ = ["NOTIFY_VARIABLES", "Notifier", "socket_address", "watchdog_seconds"]
