"""Holding the instance's supervisor lease: acquire (or stand by), renew, release.

The holder id names host, pid and process start time, so a supervisor restarted on the same host
after a SIGKILL can see that the previous holder is provably dead and take over at once instead of
waiting for the time to live. On another host it waits for expiry. Losing the lease (a takeover
while we were paused) stops this supervisor: two drivers must never run at once.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable

import psutil

from dagd.errors import DagdError, StorageUnavailable
from dagd.storage.leases import SUPERVISOR_LEASE, Lease
from dagd.storage.sql import Database
from dagd.timefmt import rfc3339

log = logging.getLogger("dagd.supervisor")

LEASE_TTL_SECONDS = 15.0


class AlreadyRunning(DagdError):
    pass


def holder_id() -> str:
    me = psutil.Process()
    return f"{socket.gethostname()}:{me.pid}:{me.create_time():.3f}"


def holder_is_dead_here(holder: str) -> bool:
    """True if ``holder`` is a process on this host that no longer exists."""
    try:
        host, pid, started = holder.rsplit(":", 2)
        if host != socket.gethostname():
            return False
        proc = psutil.Process(int(pid))
        return abs(proc.create_time() - float(started)) > 0.05
    except psutil.NoSuchProcess:
        return True
    except (ValueError, psutil.AccessDenied):
        return False


class LeaseKeeper:
    def __init__(
        self, storage: Database, on_lost: Callable[[], None], ttl: float = LEASE_TTL_SECONDS
    ) -> None:
        self.storage = storage
        self.on_lost = on_lost
        self.ttl = ttl
        self.holder = holder_id()
        self.lease: Lease | None = None
        self.standing_by_for: str | None = None  # the holder we wait on, while standing by
        self._stop = threading.Event()

    def acquire(
        self,
        *,
        standby: bool,
        stopping: threading.Event,
        wait: Callable[[float], bool] | None = None,
    ) -> Lease:
        """Take the lease, or (``standby``) wait until we can. ``wait(seconds)`` waits between
        attempts and returns True to give up (default: ``stopping.wait``); the supervisor passes
        its main loop's, which keeps the watchdog and health going while it stands by."""
        leases = self.storage.leases
        wait = wait or stopping.wait
        announced = False
        while True:
            mine, current = leases.acquire(SUPERVISOR_LEASE, self.holder, self.ttl)
            if mine is None and current is not None and holder_is_dead_here(current.holder):
                log.warning("previous supervisor %s is gone; taking over its lease", current.holder)
                leases.release(current)  # expire it; the acquire below bumps the epoch
                mine, current = leases.acquire(SUPERVISOR_LEASE, self.holder, self.ttl)
            if mine is not None:
                self.lease, self.standing_by_for = mine, None
                log.info("holding the supervisor lease (epoch %d)", mine.epoch)
                return mine
            assert current is not None
            message = (
                f"another supervisor ({current.holder}) drives this instance's storage; "
                f"its lease runs until {rfc3339(current.expires_at)}"
            )
            if not standby:
                raise AlreadyRunning(message + " (use --standby to wait and take over)")
            if not announced:
                log.warning("%s: standing by", message)
                announced = True
            self.standing_by_for = current.holder
            if wait(self.ttl / 3):
                raise AlreadyRunning("stopped while standing by")

    def start_renewing(self) -> None:
        threading.Thread(target=self._renew_loop, name="lease-renew", daemon=True).start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            assert self.lease is not None
            try:
                renewed = self.storage.leases.renew(self.lease, self.ttl)
            except StorageUnavailable:
                continue  # an outage is not a takeover; fenced writes protect us meanwhile
            if renewed is None:
                log.error("the supervisor lease was taken over by another supervisor: stopping")
                self.on_lost()
                return
            self.lease = renewed

    def release(self) -> None:
        self._stop.set()
        if self.lease is not None:
            try:
                self.storage.leases.release(self.lease)
            except DagdError:
                pass
            self.lease = None


__all__ = ["AlreadyRunning", "LeaseKeeper", "holder_id"]
