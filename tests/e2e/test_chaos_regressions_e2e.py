"""Regressions found by the chaos battery (tests/chaos, docs/chaos.md), each reproduced on its own.

Each test is named after what broke and drives the same real processes the battery does, without
the randomness, so the bug stays fixed even on a seed that never hits it.
"""

from __future__ import annotations

import pathlib
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from helpers.procs import DagdProcess, wait_for
from helpers.tcp_proxy import proxy_to

from dagd.client.client import Client

NAMES = {"scheduler", "run_queue", "sensor", "run_monitoring"}
FAST = """
daemons:
  heartbeat_interval_seconds: 0.5
  heartbeat_timeout_seconds: 10
"""


@pytest.mark.timeout(90)
def test_regression_storage_outage_reported_as_supervisor_unreachable(
    dagd: DagdProcess, pg_url: str, defs_file: pathlib.Path
) -> None:
    """With PostgreSQL down, the supervisor still answers (UNAVAILABLE: storage unavailable), but
    the client read any UNAVAILABLE whose message mentions "connect" as "no supervisor": dagctl
    said "cannot reach the supervisor" and exited 4, the exit code reserved for a supervisor that
    does not answer. It must say what failed, the storage, and exit 1."""
    parsed = urllib.parse.urlsplit(pg_url)
    port = parsed.port or 5432
    with proxy_to(parsed.hostname or "127.0.0.1", port) as proxy:
        proxied = pg_url.replace(f"{parsed.hostname}:{port}", f"127.0.0.1:{proxy.port}", 1)
        dagd.write_config(FAST + f"storage:\n  postgres:\n    url: '{proxied}'\n")
        dagd.start("-f", str(defs_file), command=("daemon", "run"))
        proxy.outage()
        for args in (("submit", "hello"), ("runs", "terminate", "--status", "QUEUED"), ("runs", "list")):
            result = dagd.ctl(*args)
            assert result.code == 1, (args, result.code, result.stderr)
            assert result.stderr.startswith("dagctl: error: storage unavailable"), (args, result.stderr)
            assert "cannot reach the supervisor" not in result.stderr, (args, result.stderr)
        assert dagd.ctl("daemons", "status").code in (0, 3)  # the supervisor answers throughout
        proxy.restore()
        dagd.stop()
    # A supervisor that really is gone is still exit 4.
    gone = dagd.ctl("submit", "hello")
    assert gone.code == 4 and "no supervisor is running" in gone.stderr, gone


@pytest.mark.timeout(90)
def test_regression_daemons_status_hangs_while_the_database_stalls(
    dagd: DagdProcess, pg_url: str, defs_file: pathlib.Path
) -> None:
    """A database that hangs rather than refuses (frozen, partitioned: connections open, nothing
    answers) held `daemons status` for as long as it hung, because the supervisor read the
    heartbeat rows before answering: the first call ran into its deadline, later ones took the
    5 s connect timeout. Status is judged from the process table; it must answer within 1 s."""
    parsed = urllib.parse.urlsplit(pg_url)
    port = parsed.port or 5432
    with proxy_to(parsed.hostname or "127.0.0.1", port) as proxy:
        proxied = pg_url.replace(f"{parsed.hostname}:{port}", f"127.0.0.1:{proxy.port}", 1)
        dagd.write_config(FAST + f"storage:\n  postgres:\n    url: '{proxied}'\n")
        dagd.start("-f", str(defs_file), command=("daemon", "run"))
        wait_for(
            lambda: all(d["last_heartbeat_at"] for d in status(dagd)["daemons"]),
            20,
            "a heartbeat of each daemon",
        )
        proxy.stall()
        try:
            for _ in range(4):
                started = time.monotonic()
                during = status(dagd)
                took = time.monotonic() - started
                assert took < 1.0, f"daemons status took {took:.2f}s while the database stalled"
                assert {d["name"] for d in during["daemons"]} == NAMES
                # The last heartbeats read are shown (each dated), not dropped.
                assert all(d["last_heartbeat_at"] for d in during["daemons"]), during
            result = dagd.ctl("daemons", "status", "--json")
            assert result.code in (0, 3), (result.code, result.stderr)
        finally:
            proxy.resume()
        dagd.stop()


def status(dagd: DagdProcess) -> dict[str, Any]:
    """What `dagctl daemons status` asks, with its 5 s deadline, in-process (no Python start-up)."""
    with Client.for_home(dagd.home) as client:
        client.timeout = 5.0
        return client.daemon_status()


@pytest.mark.timeout(90)
def test_regression_retries_with_one_idempotency_key_in_one_batch_answered_internal_error(
    dagd: DagdProcess, defs_file: pathlib.Path
) -> None:
    """A client whose submission hangs (the database stalled) retries with the same idempotency
    key; when the database answers again, the original and the retries reach the supervisor's
    group commit together. A batch holding one key twice was inserted one run at a time without
    looking for the run the first copy had just created: a unique-key violation, and every
    submission in the batch (other clients' too) answered INTERNAL. A retry must get the run."""
    dagd.write_config(FAST + "run_coordinator:\n  config: {max_concurrent_runs: 0}\n")
    dagd.start("-f", str(defs_file), command=("daemon", "run"))
    for round_ in range(5):
        key = f"retried-{round_}"
        keys = [key] * 12 + [f"other-{round_}-{i}" for i in range(12)]
        answers = submit_together(dagd, keys)  # any error fails the test here
        assert len({a["run_id"] for a, k in zip(answers, keys, strict=True) if k == key}) == 1, answers
        with Client.for_home(dagd.home) as client:
            listed, _ = client.list_runs(tags={"key": key})
        assert len(listed) == 1, listed


def submit_together(dagd: DagdProcess, keys: list[str]) -> list[dict[str, Any]]:
    """One submission per idempotency key, all released at the same instant from their own threads."""
    barrier = threading.Barrier(len(keys))

    def submit(key: str) -> dict[str, Any]:
        with Client.for_home(dagd.home) as client:
            barrier.wait(timeout=30)
            return client.submit("hello", tags={"key": key}, idempotency_key=key)

    with ThreadPoolExecutor(len(keys)) as pool:
        return list(pool.map(submit, keys))
