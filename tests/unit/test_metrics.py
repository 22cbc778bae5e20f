"""The metrics collector over a hand-written process table and run store: families and outages."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from dagd.errors import StorageUnavailable
from dagd.runs.model import RunStatus
from dagd.supervisor.metrics import SupervisorCollector
from dagd.supervisor.process_table import DaemonView


def view(name: str, **changes: Any) -> DaemonView:
    fields: dict[str, Any] = {
        "name": name,
        "state": "RUNNING",
        "healthy": True,
        "detail": "running",
        "pid": 100,
        "incarnation": 1,
        "uptime_seconds": 5.0,
        "restarts": 0,
        "restarts_by_reason": {},
        "last_exit": None,
        "degraded": False,
        "last_progress_age": 0.25,
    }
    return DaemonView(**(fields | changes))


class FakeTable:
    def __init__(self, views: list[DaemonView]) -> None:
        self.views = views

    def snapshot(self) -> list[DaemonView]:
        return self.views


class FakeRuns:
    def __init__(self, counts: dict[RunStatus, int] | None) -> None:
        self.counts = counts  # None: storage is down

    def count_by_status(self) -> dict[RunStatus, int]:
        if self.counts is None:
            raise StorageUnavailable("storage unavailable: connection refused")
        return self.counts


def scrape(table: FakeTable, runs: FakeRuns) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SupervisorCollector(table, runs, version="9.9"))  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_each_family_reflects_the_snapshot_and_the_run_counts() -> None:
    table = FakeTable(
        [
            view("scheduler"),
            view(
                "sensor",
                healthy=False,
                state="BACKOFF",
                pid=None,
                last_progress_age=None,
                restarts_by_reason={"SIGNAL": 2, "STALE_HEARTBEAT": 1},
            ),
            view("run_queue", degraded=True, last_progress_age=7.5),
        ]
    )
    got = scrape(table, FakeRuns({RunStatus.QUEUED: 3, RunStatus.SUCCESS: 10}))

    assert got[("dagd_supervisor_info", frozenset({("version", "9.9")}))] == 1
    assert got[("dagd_daemon_up", frozenset({("daemon", "scheduler")}))] == 1
    assert got[("dagd_daemon_up", frozenset({("daemon", "sensor")}))] == 0
    assert got[("dagd_daemon_degraded", frozenset({("daemon", "run_queue")}))] == 1
    assert got[("dagd_daemon_heartbeat_age_seconds", frozenset({("daemon", "run_queue")}))] == 7.5
    # No process, no age: an absent series rather than a made-up number.
    assert ("dagd_daemon_heartbeat_age_seconds", frozenset({("daemon", "sensor")})) not in got
    restarts = "dagd_daemon_restarts_total"
    assert got[(restarts, frozenset({("daemon", "sensor"), ("reason", "SIGNAL")}))] == 2
    assert got[(restarts, frozenset({("daemon", "sensor"), ("reason", "STALE_HEARTBEAT")}))] == 1
    # Every reason exists from the start, at 0, so the first restart is an increase.
    assert got[(restarts, frozenset({("daemon", "scheduler"), ("reason", "EXIT_CODE")}))] == 0
    assert (restarts, frozenset({("daemon", "scheduler"), ("reason", "SHUTDOWN")})) not in got
    assert got[("dagd_storage_up", frozenset())] == 1
    assert got[("dagd_runs", frozenset({("status", "QUEUED")}))] == 3
    assert got[("dagd_runs", frozenset({("status", "SUCCESS")}))] == 10
    assert got[("dagd_runs", frozenset({("status", "STARTED")}))] == 0


def test_storage_outage_drops_the_runs_family_but_not_the_scrape() -> None:
    got = scrape(FakeTable([view("scheduler")]), FakeRuns(None))

    assert got[("dagd_storage_up", frozenset())] == 0
    assert not [key for key in got if key[0] == "dagd_runs"]
    assert got[("dagd_daemon_up", frozenset({("daemon", "scheduler")}))] == 1
