"""Worker hosts in storage (the Celery launcher's fleet), on SQLite and PostgreSQL: registration,
heartbeats on the database's clock, and free slots per queue (dead or draining hosts count none)."""

from __future__ import annotations

from dagd.runs.model import RunStatus
from dagd.storage import Storage
from dagd.storage.runs import NewRun


def _age(storage: Storage, name: str, seconds: float) -> None:
    """Make a host's last heartbeat ``seconds`` old (as if it had gone silent)."""
    with storage.sql_write() as sql:
        then = sql.db_now().timestamp() - seconds
        from datetime import datetime, timezone

        sql.execute(
            "UPDATE workers SET heartbeat_at = :at WHERE name = :name",
            {"at": datetime.fromtimestamp(then, timezone.utc), "name": name},
        )


def _in_progress(storage: Storage, queue: str | None) -> str:
    tags = {"dagd/queue": queue} if queue else {}
    return storage.runs.create(NewRun("job", tags, {}, 0, RunStatus.STARTED)).run_id


def test_a_host_registers_heartbeats_and_leaves(storage: Storage) -> None:
    storage.workers.register("h1:10", "h1", 10, ["dagd", "gpu"], 4)
    assert storage.workers.heartbeat("h1:10", 3, True)

    (host,) = storage.workers.all()
    assert (host.host, host.queues, host.slots, host.in_use, host.accepting) == (
        "h1",
        ("dagd", "gpu"),
        4,
        3,
        True,
    )
    assert host.healthy(5.0) and host.silent_seconds < 5
    assert set(host.to_json(5.0)) >= {
        "name",
        "host",
        "queues",
        "slots",
        "in_use",
        "last_heartbeat_at",
        "healthy",
    }

    storage.workers.remove("h1:10")
    assert storage.workers.all() == []
    assert not storage.workers.heartbeat("h1:10", 0, True)  # gone: the host registers again


def test_free_slots_count_live_accepting_hosts_minus_runs_in_progress_per_queue(storage: Storage) -> None:
    storage.workers.register("a:1", "a", 1, ["dagd"], 3)
    storage.workers.register("b:2", "b", 2, ["dagd", "gpu"], 2)
    _in_progress(storage, None)  # no tag: the default queue
    _in_progress(storage, "gpu")
    _in_progress(storage, "gpu")
    _in_progress(storage, "gpu")  # more than its slots (a host died with them): never negative

    assert storage.workers.free_slots(10.0, "dagd") == {"dagd": 4, "gpu": 0}


def test_a_silent_host_s_slots_stop_counting_by_the_database_clock(storage: Storage) -> None:
    storage.workers.register("a:1", "a", 1, ["dagd"], 3)
    storage.workers.register("b:2", "b", 2, ["dagd"], 2)
    _age(storage, "b:2", 30)

    assert storage.workers.free_slots(10.0, "dagd") == {"dagd": 3}
    assert [h.healthy(10.0) for h in storage.workers.all()] == [True, False]


def test_a_draining_host_takes_no_more_runs(storage: Storage) -> None:
    storage.workers.register("a:1", "a", 1, ["dagd"], 3)
    storage.workers.heartbeat("a:1", 1, False)

    assert storage.workers.free_slots(10.0, "dagd") == {}
