"""Schedule and sensor state in storage at scale, SQLite and PostgreSQL alike."""

from __future__ import annotations

import time
from typing import Any

import pytest

from dagd.storage.instigators import RUNNING, STOPPED
from dagd.storage.schema import instigators
from dagd.timefmt import utcnow

EXISTING = 5_000
CALLS = 20


def _ensure_seconds(storage: Any, prefix: str) -> float:
    store = storage.instigators
    started = time.perf_counter()
    for i in range(CALLS):
        state = store.ensure("schedule", f"{prefix}{i}", RUNNING)
        assert state.name == f"{prefix}{i}" and state.status == RUNNING
    return time.perf_counter() - started


@pytest.mark.timeout(120)
def test_ensure_cost_does_not_grow_with_the_number_of_schedules(storage: Any) -> None:
    """Regression: ``ensure`` re-read every state of the kind to return one, so a scheduler's first
    pass over 1,000 new schedules was quadratic: 15-25 s under load, past the 20 s heartbeat
    timeout, and the supervisor killed the scheduler as hung before it had ticked once."""
    _ensure_seconds(storage, "warm")  # connections, statement caches
    few = _ensure_seconds(storage, "few")
    now = utcnow()
    rows = [
        {"kind": "schedule", "name": f"existing{i:05d}", "status": STOPPED, "status_changed_at": now}
        for i in range(EXISTING)
    ]
    with storage.write() as conn:
        conn.execute(instigators.insert(), rows)
    many = _ensure_seconds(storage, "many")
    # The same work with 5,000 more rows in the table: not ~10x slower (a full read per call).
    assert many < 4 * few + 0.05, (
        f"{CALLS} ensures: {few:.3f} s on a small table, {many:.3f} s on a large one"
    )
    # Existing states are left as they are.
    assert storage.instigators.ensure("schedule", "existing00007", RUNNING).status == STOPPED
