"""The supervisor lease on real databases (SQLite and PostgreSQL): one holder, expiry by the
database's clock, a new epoch on every takeover, and exactly one winner when many race."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

import pytest
from helpers.procs import wait_for

from dagd.storage import Storage
from dagd.storage.leases import SUPERVISOR_LEASE

L = SUPERVISOR_LEASE


@pytest.mark.timeout(30)
def test_a_held_lease_is_refused_and_its_time_to_live_is_measured_by_the_database(storage: Storage) -> None:
    mine, current = storage.leases.acquire(L, "a", 30)
    assert mine is not None and current is None and mine.epoch == 1
    assert 29 < mine.expires_in_seconds <= 30
    refused, held = storage.leases.acquire(L, "b", 30)
    assert refused is None and held is not None
    assert (held.holder, held.epoch) == ("a", 1) and 28 < held.expires_in_seconds <= 30
    # The database's clock and this host's are the same clock here: the lease reports it.
    assert abs((held.db_now - datetime.now(timezone.utc)).total_seconds()) < 2
    read = storage.leases.get(L)
    assert read is not None and read.holder == "a" and read.expires_in_seconds > 28


@pytest.mark.timeout(30)
def test_an_expired_lease_is_taken_over_with_a_new_epoch_and_the_old_holder_cannot_renew(
    storage: Storage,
) -> None:
    first, _ = storage.leases.acquire(L, "a", 0.5)
    assert first is not None
    taken = wait_for(lambda: storage.leases.acquire(L, "b", 30)[0], 10, "the lease to expire")
    assert taken.epoch == first.epoch + 1
    assert storage.leases.renew(first, 30) is None, "a stale holder must learn it lost the lease"
    assert storage.leases.release(first) is False
    renewed = storage.leases.renew(taken, 60)
    assert renewed is not None and renewed.epoch == taken.epoch and renewed.expires_in_seconds > 58


@pytest.mark.timeout(30)
def test_release_lets_a_successor_in_at_once(storage: Storage) -> None:
    first, _ = storage.leases.acquire(L, "a", 60)
    assert first is not None and storage.leases.release(first)
    second, _ = storage.leases.acquire(L, "b", 60)
    assert second is not None and second.epoch == 2


@pytest.mark.timeout(60)
def test_many_acquirers_racing_for_an_expired_lease_yield_exactly_one_holder(storage: Storage) -> None:
    first, _ = storage.leases.acquire(L, "old", 0.2)
    assert first is not None
    wait_for(lambda: (lease := storage.leases.get(L)) and lease.expires_in_seconds < 0, 10, "expiry")
    start = threading.Barrier(8)
    winners: list[str] = []

    def race(me: str) -> None:
        start.wait()
        mine, _ = storage.leases.acquire(L, me, 30)
        if mine is not None:
            winners.append(me)

    threads = [threading.Thread(target=race, args=(f"h{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(winners) == 1, winners
    lease = storage.leases.get(L)
    assert lease is not None and lease.holder == winners[0] and lease.epoch == 2


@pytest.mark.timeout(30)
def test_renewing_moves_the_expiry_by_the_database_clock(storage: Storage) -> None:
    mine, _ = storage.leases.acquire(L, "a", 2)
    assert mine is not None
    time.sleep(0.3)  # let the database's clock move, so the renewal must move the expiry
    renewed = storage.leases.renew(mine, 2)
    assert renewed is not None and renewed.expires_at > mine.expires_at
    assert renewed.db_now > mine.db_now


@pytest.mark.timeout(30)
def test_a_renewal_counts_the_live_standbys_and_not_the_expired_ones(storage: Storage) -> None:
    mine, _ = storage.leases.acquire(L, "leader", 30)
    assert mine is not None and mine.standbys == 0
    renewed = storage.leases.renew(mine, 30)
    assert renewed is not None and renewed.standbys == 0
    storage.leases.note_standby(L, "host-b:12:1.0" * 15, 30)  # a long holder id still fits
    storage.leases.note_standby(L, "host-c:13:1.0", 0.2)
    renewed = storage.leases.renew(mine, 30)
    assert renewed is not None and renewed.standbys in (1, 2)
    wait_for(lambda: (r := storage.leases.renew(mine, 30)) and r.standbys == 1, 10, "host-c's note to expire")
    # The standby rows are not the lease: reads and fencing see only the lease itself.
    lease = storage.leases.get(L)
    assert lease is not None and (lease.holder, lease.epoch) == ("leader", 1)


@pytest.mark.timeout(30)
def test_a_standby_that_takes_over_is_not_counted_as_its_own_standby(storage: Storage) -> None:
    """Its standby note outlived the takeover by up to a lease: the new leader counted itself as
    a standby, would step down for nobody, and said "1 supervisor(s) standing by" when one joined
    only once its own note had expired."""
    old, _ = storage.leases.acquire(L, "host-a:1:1.0", 0.2)
    assert old is not None
    storage.leases.note_standby(L, "host-b:2:1.0", 30)
    mine = wait_for(lambda: storage.leases.acquire(L, "host-b:2:1.0", 30)[0], 10, "host-a's lease to expire")
    assert mine.holder == "host-b:2:1.0" and mine.standbys == 0, mine
    renewed = storage.leases.renew(mine, 30)
    assert renewed is not None and renewed.standbys == 0
    storage.leases.note_standby(L, "host-a:1:1.0", 30)
    renewed = storage.leases.renew(mine, 30)
    assert renewed is not None and renewed.standbys == 1
