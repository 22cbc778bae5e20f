"""Holding the instance's supervisor lease: acquire (or stand by), renew, step down, release.

Who holds the lease, and until when, is decided by the database's clock (``dagd.storage.leases``).
The holder also keeps its own deadline on its monotonic clock, as Kubernetes' leader election does
with its renew deadline: it notes ``t0 = time.monotonic()`` before each renewal attempt, and if no
attempt begun at ``t0`` has succeeded by ``t0 + renew_deadline`` (2/3 of the time to live), it
steps down. The lease in the database runs until at least ``t0 + ttl`` by the database's clock, so
the holder has stopped a third of the lease before anyone else may take over, whatever either
wall clock says; only the rates of the clocks matter, and they agree far better than that.

Every answer from the database carries its clock: the keeper compares it with the midpoint of its
own request (``skew_seconds``), shows it in ``dagctl instance info`` and warns above
``SKEW_WARN_SECONDS``. Skew does not move the lease (nothing compares this host's wall clock with
the database's); it matters for timestamps this host writes itself, so it is worth fixing.

The holder id names host, pid and process start time, so a supervisor restarted on the same host
after a SIGKILL can see that the previous holder is provably dead and take over at once instead of
waiting for the time to live. On another host it waits for expiry. Losing the lease (a takeover
while we were paused, or the renew deadline passing during a partition) calls ``on_lost``: the
supervisor kills its daemons at once and stands by again in the same process, with a new keeper
(docs/high-availability.md). A keeper serves one term: once lost, it stays lost.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import psutil

from dagd.errors import DagdError, StorageUnavailable
from dagd.processes import process_matches
from dagd.storage.database import Database
from dagd.storage.leases import SUPERVISOR_LEASE, Lease
from dagd.timefmt import rfc3339

log = logging.getLogger("dagd.supervisor")

LEASE_TTL_SECONDS = 15.0
RENEW_DEADLINE_FRACTION = 2 / 3
#: A standby tries to take the lease this often (at most; a third of the lease if shorter).
STANDBY_RETRY_SECONDS = 2.0
#: Skew between this host's wall clock and the database's above which the log warns.
SKEW_WARN_SECONDS = 1.0
SKEW_WARN_EVERY_SECONDS = 60.0


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
        return not process_matches(int(pid), float(started))
    except ValueError:
        return False


def skew_seconds(db_now: datetime, sent: float, received: float) -> float:
    """The database's clock minus this host's, from one request: ``db_now`` was read somewhere
    between ``sent`` and ``received`` (this host's wall clock, seconds since the epoch); the
    midpoint is the best guess, off by at most half the round trip."""
    return db_now.timestamp() - (sent + received) / 2


@dataclass
class RenewDeadline:
    """The holder's own deadline, on its monotonic clock (pure: times are passed in).

    ``valid_until`` is ``t0 + renew_deadline`` of the latest successful attempt, ``t0`` taken
    before the attempt was sent: whatever delayed the answer counts against us, never for us."""

    ttl: float
    valid_until: float

    @classmethod
    def from_acquire(cls, ttl: float, attempt_started: float) -> RenewDeadline:
        return cls(ttl, attempt_started + ttl * RENEW_DEADLINE_FRACTION)

    @property
    def renew_deadline(self) -> float:
        return self.ttl * RENEW_DEADLINE_FRACTION

    def renewed(self, attempt_started: float) -> None:
        self.valid_until = max(self.valid_until, attempt_started + self.renew_deadline)

    def expired(self, now: float) -> bool:
        return now >= self.valid_until

    def next_attempt_in(self, last_succeeded: bool) -> float:
        """From the start of the last attempt: a third of the lease after a success; after a
        failure, retry often within the deadline."""
        return self.ttl / 3 if last_succeeded else min(1.0, self.ttl / 10)


class LeaseKeeper:
    def __init__(
        self, storage: Database, on_lost: Callable[[str], None], ttl: float = LEASE_TTL_SECONDS
    ) -> None:
        self.storage = storage
        self.on_lost = on_lost  # called once, with the reason, from the keeper's threads
        self.ttl = ttl
        self.holder = holder_id()
        self.lease: Lease | None = None
        self.standing_by_for: Lease | None = None  # the holder's lease we wait on, while standing by
        self.skew_seconds: float | None = None  # database clock minus ours, at the last request
        self.deadline: RenewDeadline | None = None
        self._skew_warned_at: float | None = None
        self._lost = threading.Event()
        self._stop = threading.Event()

    @property
    def holding(self) -> bool:
        return self.lease is not None and not self._lost.is_set()

    def _measure(self, lease: Lease | None, sent: float) -> None:
        if lease is None:
            return
        skew = self.skew_seconds = skew_seconds(lease.db_now, sent, time.time())
        now = time.monotonic()
        if abs(skew) <= SKEW_WARN_SECONDS:
            self._skew_warned_at = None
        elif self._skew_warned_at is None or now - self._skew_warned_at >= SKEW_WARN_EVERY_SECONDS:
            self._skew_warned_at = now
            log.warning(
                "this host's clock is %.1fs %s the database's: the lease is timed by the database and is "
                "not affected, but timestamps written from this host are off; fix its time sync (NTP)",
                abs(skew), "behind" if skew > 0 else "ahead of",
            )  # fmt: skip

    def _try_acquire(self, standby: bool = False) -> tuple[Lease | None, Lease | None, float]:
        t0, sent = time.monotonic(), time.time()
        mine, current = self.storage.leases.acquire(SUPERVISOR_LEASE, self.holder, self.ttl)
        self._measure(mine or current, sent)
        if mine is None and standby:  # let the holder know someone could take over
            self.storage.leases.note_standby(SUPERVISOR_LEASE, self.holder, self.ttl)
        return mine, current, t0

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
            try:
                mine, current, t0 = self._try_acquire(standby)
                if mine is None and current is not None and holder_is_dead_here(current.holder):
                    log.warning("previous supervisor %s is gone; taking over its lease", current.holder)
                    leases.release(current)  # expire it; the acquire below bumps the epoch
                    mine, current, t0 = self._try_acquire(standby)
            except StorageUnavailable as exc:
                if not standby:
                    raise
                log.warning("standing by: %s", exc)
                mine = current = None
                t0 = time.monotonic()
            if mine is not None:
                self.lease, self.standing_by_for = mine, None
                self.deadline = RenewDeadline.from_acquire(self.ttl, t0)
                log.info("holding the supervisor lease (epoch %d)", mine.epoch)
                return mine
            if current is not None:
                message = (
                    f"another supervisor ({current.holder}) drives this instance's storage; "
                    f"its lease expires in {max(0.0, current.expires_in_seconds):.1f}s "
                    f"(at {rfc3339(current.expires_at)}, the database's clock)"
                )
                if not standby:
                    raise AlreadyRunning(message + " (use --standby to wait and take over)")
                if not announced:
                    log.warning("%s: standing by", message)
                    announced = True
                self.standing_by_for = current
            if wait(min(STANDBY_RETRY_SECONDS, self.ttl / 3)):
                raise AlreadyRunning("stopped while standing by")

    def start_renewing(self) -> None:
        threading.Thread(target=self._renew_loop, name="lease-renew", daemon=True).start()
        threading.Thread(target=self._deadline_loop, name="lease-deadline", daemon=True).start()

    def _lose(self, reason: str) -> None:
        if self._lost.is_set() or self._stop.is_set():
            return
        self._lost.set()
        log.error("stepping down: %s", reason)
        self.on_lost(reason)

    def _deadline_loop(self) -> None:
        """Step down when the renew deadline passes, even while a renewal hangs on the network,
        if anyone could take over: a standby was seen at the last renewal (or it is not known).
        Alone, a leader that cannot reach the database keeps its daemons, degraded: nobody else
        can lead, its daemons' launches are fenced by the epoch, and once the database answers
        again it renews, or learns it was taken over and steps down then."""
        assert self.deadline is not None
        warned = False
        while not self._stop.wait(0.05) and not self._lost.is_set():
            if not self.deadline.expired(time.monotonic()):
                warned = False
                continue
            if self.lease is not None and self.lease.standbys == 0:
                if not warned:
                    log.warning(
                        "no lease renewal within the renew deadline (%.1fs), but no standby was "
                        "seen: keeping the daemons (their launches are fenced) and retrying",
                        self.deadline.renew_deadline,
                    )
                    warned = True
                continue
            self._lose(
                f"no lease renewal succeeded within the renew deadline "
                f"({self.deadline.renew_deadline:.1f}s); another supervisor may take over"
            )
            return

    def _renew_loop(self) -> None:
        """Attempts spaced from each attempt's *start*, so a slow answer does not delay the next
        one: spaced from the answer, renewals answering late drifted past the renew deadline one
        by one, and a leader whose every renewal succeeded stepped down under load."""
        assert self.deadline is not None
        succeeded = True
        began = self.deadline.valid_until - self.deadline.renew_deadline  # the acquire's attempt
        while True:
            delay = max(0.0, began + self.deadline.next_attempt_in(succeeded) - time.monotonic())
            if self._stop.wait(delay) or self._lost.is_set():
                return
            assert self.lease is not None
            t0, sent = time.monotonic(), time.time()
            began = t0
            try:
                renewed = self.storage.leases.renew(self.lease, self.ttl)
            except StorageUnavailable as exc:
                if succeeded:  # once per outage, not once a second
                    log.warning("could not renew the supervisor lease (retrying): %s", exc)
                succeeded = False  # an outage is not a takeover, but the deadline keeps running
                continue
            if self._stop.is_set():
                return  # released meanwhile (shutdown): the lease is no longer ours to track
            if renewed is None:
                self._lose("the supervisor lease was taken over by another supervisor")
                return
            self._measure(renewed, sent)
            if self._lost.is_set():
                return  # renewed too late: we already stepped down
            if renewed.standbys != self.lease.standbys:
                log.info("%d supervisor(s) standing by to take over", renewed.standbys)
            self.lease, succeeded = renewed, True
            self.deadline.renewed(t0)

    def release(self) -> None:
        self._stop.set()
        # Not after stepping down: the database may be the very thing we cannot reach (a partition),
        # and the lease is either someone else's already or expires on its own.
        if self.lease is not None and not self._lost.is_set():
            try:
                self.storage.leases.release(self.lease)
            except DagdError:
                pass
        self.lease = None


__all__ = ["AlreadyRunning", "LeaseKeeper", "RenewDeadline", "holder_id", "skew_seconds"]
