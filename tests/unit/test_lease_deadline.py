"""The leader's own renew deadline and the skew measure: pure functions, with made-up clocks."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from dagd.supervisor.lease import RenewDeadline, skew_seconds


def test_the_holder_steps_down_two_thirds_of_the_lease_after_its_last_successful_attempt_began() -> None:
    deadline = RenewDeadline.from_acquire(15.0, attempt_started=100.0)
    assert deadline.renew_deadline == pytest.approx(10.0)
    assert not deadline.expired(109.9)
    assert deadline.expired(110.0)
    # A renewal that began at 105 and answered late still counts from 105, not from its answer.
    deadline.renewed(attempt_started=105.0)
    assert not deadline.expired(114.9) and deadline.expired(115.0)


def test_a_late_answer_to_an_older_attempt_never_moves_the_deadline_back() -> None:
    deadline = RenewDeadline.from_acquire(15.0, attempt_started=100.0)
    deadline.renewed(attempt_started=110.0)
    deadline.renewed(attempt_started=104.0)  # answered after the newer one
    assert deadline.valid_until == pytest.approx(120.0)


def test_the_holder_stops_well_before_a_standby_may_take_over() -> None:
    """The database's lease runs ttl from its statement, which came after t0: the holder's
    deadline (t0 + 2/3 ttl) leaves a third of the lease, whatever the hosts' wall clocks say."""
    ttl = 15.0
    deadline = RenewDeadline.from_acquire(ttl, attempt_started=0.0)
    assert ttl - deadline.valid_until >= ttl / 3 - 1e-9


def test_retries_after_a_failed_renewal_come_often_enough_to_fit_in_the_deadline() -> None:
    deadline = RenewDeadline.from_acquire(15.0, attempt_started=0.0)
    assert deadline.next_attempt_in(True) == pytest.approx(5.0)
    assert deadline.next_attempt_in(False) <= 1.0
    # After one failed attempt at ttl/3, several more fit before the deadline.
    assert (deadline.renew_deadline - deadline.next_attempt_in(True)) / deadline.next_attempt_in(False) >= 4


def test_skew_is_the_database_clock_minus_the_midpoint_of_the_request() -> None:
    db_now = datetime.fromtimestamp(1_000_000.0, timezone.utc)
    # This host sent at 999_879.9 and heard back at 999_880.1: it runs 120 s behind the database.
    assert skew_seconds(db_now, 999_879.9, 999_880.1) == pytest.approx(120.0)
    assert skew_seconds(db_now, 1_000_000.0, 1_000_000.0) == pytest.approx(0.0)
    assert skew_seconds(db_now, 1_000_001.0, 1_000_001.2) == pytest.approx(-1.1)
