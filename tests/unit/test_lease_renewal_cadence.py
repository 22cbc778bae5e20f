"""The leader's renewal cadence under a slow database: the keeper's threads, a storage that answers
late (no database: only the timing is under test)."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from dagd.storage.leases import SUPERVISOR_LEASE, Lease
from dagd.supervisor.lease import LeaseKeeper

TTL = 6.0  # renew every 2 s, renew deadline 4 s
SLOW = 1.2  # each renewal answers this late: well inside the renew deadline on its own


class SlowLeases:
    """Every renewal succeeds, ``delay`` seconds after it was sent; a standby is always counted."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.renewals: list[tuple[float, float]] = []  # (sent, answered), monotonic

    def _lease(self, holder: str) -> Lease:
        now = datetime.now(timezone.utc)
        return Lease(SUPERVISOR_LEASE, holder, 1, now + timedelta(seconds=TTL), now, standbys=1)

    def acquire(self, name: str, holder: str, ttl: float) -> tuple[Lease | None, Lease | None]:
        return self._lease(holder), None

    def renew(self, lease: Lease, ttl: float) -> Lease | None:
        sent = time.monotonic()
        time.sleep(self.delay)
        self.renewals.append((sent, time.monotonic()))
        return replace(self._lease(lease.holder), epoch=lease.epoch)

    def release(self, lease: Lease) -> bool:
        return True


class SlowStorage:
    def __init__(self, delay: float) -> None:
        self.leases = SlowLeases(delay)


@pytest.mark.timeout(30)
def test_renewals_that_answer_late_do_not_push_the_next_one_past_the_renew_deadline() -> None:
    """Renewals were spaced ttl/3 from the previous one's *answer*: each answering 1.2 s late put the
    next attempt at 3.2 s after the last good one began, answered at 4.4 s, past the 4 s renew
    deadline, and a healthy leader stepped down for a standby. Spaced ttl/3 from each attempt's
    start, every renewal lands with 0.8 s to spare."""
    storage = SlowStorage(SLOW)
    lost: list[str] = []
    keeper = LeaseKeeper(storage, on_lost=lost.append, ttl=TTL)  # type: ignore[arg-type]
    keeper.acquire(standby=False, stopping=threading.Event())
    keeper.start_renewing()
    try:
        deadline = time.monotonic() + 1.7 * TTL  # the old cadence stepped down at 1 * TTL
        while time.monotonic() < deadline and not lost:
            time.sleep(0.05)
    finally:
        keeper.release()
    assert not lost, f"stepped down with every renewal succeeding: {lost}"
    starts = [sent for sent, _ in storage.leases.renewals]
    assert len(starts) >= 4, storage.leases.renewals
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert max(gaps) < TTL / 3 + 0.5, gaps  # one attempt every ttl/3, whatever each took
