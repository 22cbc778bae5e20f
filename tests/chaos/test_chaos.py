"""The chaos battery: a real deployment under load while seeded faults hit it; invariants must hold.

A ``dagctl daemon run`` deployment with the QueuedRunCoordinator (a global cap and key=value,
any-value and per-unique-value tag limits), three schedules and two sensors with run keys, runs
submitted by several clients over gRPC and through ``dagctl``, while a seeded plan SIGKILLs and
SIGSTOPs daemons, SIGKILLs the supervisor and run workers, cuts PostgreSQL off through a proxy
(SQLite: holds its write lock), and fires terminate storms. The two-host mode runs a leader and a
standby on two test hosts and adds partitions, a killed leader and a frozen supervisor.
docs/chaos.md lists the invariants.

    DAGD_CHAOS_SEED=1234 pytest tests/chaos -k postgres -s     # replay a seed (printed at start)
    DAGD_CHAOS_SECONDS=1800 pytest tests/chaos -m soak -s      # the long run
"""

from __future__ import annotations

import dataclasses
import pathlib
import urllib.parse

import pytest
from helpers.chaos.deployment import Deployment
from helpers.chaos.scenario import ChaosSettings, Scenario, chaos_timeout
from helpers.chaos.two_hosts import run_two_hosts
from helpers.tcp_proxy import proxy_to

POSTGRES_SECONDS = 90.0
SQLITE_SECONDS = 45.0
TWO_HOSTS_SECONDS = 60.0
SOAK_SECONDS = 1800.0


def announce(request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str], text: str) -> None:
    """Print at once (``-s`` or not), and keep it for the end of the session: under pytest-xdist a
    worker's output is not shown, so tests/conftest.py prints these lines in a "chaos" section
    of the terminal summary, passed or failed."""
    request.node.user_properties.append(("chaos", text))
    with capsys.disabled():
        print(f"\n{text}")


def run_scenario(
    deployment: Deployment,
    settings: ChaosSettings,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Run the fault loop against ``deployment``, always close it, report, fail on any violation."""
    scenario = Scenario(deployment, settings)
    try:
        scenario.run()
    finally:
        deployment.close()
    announce(request, capsys, scenario.summary())
    assert not scenario.violations, scenario.verdict()


def run_postgres(
    tmp_path: pathlib.Path,
    pg_url: str,
    settings: ChaosSettings,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    announce(request, capsys, settings.describe())
    parsed = urllib.parse.urlsplit(pg_url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 5432
    with proxy_to(host, port) as proxy:
        proxied = pg_url.replace(f"{parsed.hostname}:{port}", f"127.0.0.1:{proxy.port}", 1)
        deployment = Deployment(
            tmp_path,
            backend="postgres",
            observer_url=pg_url,
            storage_yaml=f"storage:\n  postgres:\n    url: '{proxied}'",
            proxy=proxy,
        )
        run_scenario(deployment, settings, request, capsys)


@pytest.mark.timeout(chaos_timeout(POSTGRES_SECONDS))
def test_chaos_postgres(
    tmp_path: pathlib.Path, pg_url: str, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = ChaosSettings.from_env("postgres", POSTGRES_SECONDS)
    run_postgres(tmp_path, pg_url, settings, request, capsys)


@pytest.mark.timeout(chaos_timeout(SQLITE_SECONDS))
def test_chaos_sqlite(
    tmp_path: pathlib.Path, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = ChaosSettings.from_env("sqlite", SQLITE_SECONDS)
    announce(request, capsys, settings.describe())
    deployment = Deployment(
        tmp_path,
        backend="sqlite",
        observer_url=f"sqlite:///{tmp_path / 'home' / 'storage' / 'dagd.db'}",
        storage_yaml="storage:\n  sqlite: {base_dir: storage}",
    )
    run_scenario(deployment, settings, request, capsys)


@pytest.mark.soak
@pytest.mark.timeout(chaos_timeout(SOAK_SECONDS))
def test_chaos_postgres_soak(
    tmp_path: pathlib.Path, pg_url: str, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    """The PostgreSQL battery for half an hour by default (DAGD_CHAOS_SECONDS); outside CI."""
    run_postgres(tmp_path, pg_url, ChaosSettings.from_env("postgres", SOAK_SECONDS), request, capsys)


def two_hosts(
    tmp_path: pathlib.Path,
    pg_url: str,
    default_seconds: float,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = dataclasses.replace(ChaosSettings.from_env("two-hosts", default_seconds), api_clients=4)
    announce(request, capsys, settings.describe())
    scenario = run_two_hosts(tmp_path, pg_url, settings)
    announce(request, capsys, scenario.summary())
    assert not scenario.violations, scenario.verdict()


@pytest.mark.timeout(chaos_timeout(TWO_HOSTS_SECONDS))
def test_chaos_two_hosts(
    tmp_path: pathlib.Path, pg_url: str, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    """A leader and a standby on two test hosts, one PostgreSQL: partitions, a killed or frozen
    supervisor, on top of daemon and worker faults (helpers/chaos/two_hosts.py)."""
    two_hosts(tmp_path, pg_url, TWO_HOSTS_SECONDS, request, capsys)


@pytest.mark.soak
@pytest.mark.timeout(chaos_timeout(SOAK_SECONDS))
def test_chaos_two_hosts_soak(
    tmp_path: pathlib.Path, pg_url: str, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    """The two-host battery for half an hour by default (DAGD_CHAOS_SECONDS); outside CI."""
    two_hosts(tmp_path, pg_url, SOAK_SECONDS, request, capsys)
