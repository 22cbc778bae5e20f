"""Shared fixtures: databases (SQLite and PostgreSQL, isolated per test), instance homes, and
real supervisor processes with guaranteed cleanup.

PostgreSQL is required, never skipped: set DAGD_TEST_POSTGRES_URL to point elsewhere.
"""

from __future__ import annotations

import os
import pathlib
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from helpers import reaper  # noqa: E402
from helpers.procs import DagdProcess, assert_no_leftovers  # noqa: E402

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def postgres_base_url() -> str:
    return os.environ.get("DAGD_TEST_POSTGRES_URL", DEFAULT_PG)


@pytest.fixture(scope="session")
def pg_engine() -> Iterator[sa.Engine]:
    engine = sa.create_engine(
        postgres_base_url(), isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5}
    )
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is required for the storage tests and is unreachable at {postgres_base_url()}: "
            f"{str(exc.orig).splitlines()[0] if exc.orig else exc}",
            pytrace=False,
        )
    yield engine
    engine.dispose()


@pytest.fixture(scope="session", autouse=True)
def session_reaper(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """If this test process dies without cleaning up, stop what its tests started (helpers/reaper.py).

    At a normal end it finds nothing, since every fixture stops what it started; what it does find
    is a leak, listed in a "reaper" section of the terminal summary (passed on from xdist workers).
    """
    watchdog = reaper.start(tmp_path_factory.getbasetemp())
    yield
    left = reaper.stop(watchdog)
    workeroutput = getattr(request.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["reaped"] = left
    else:
        REAPED.extend(left)


REAPED: list[str] = []


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist, on the controller: a worker finished; keep what its reaper stopped."""
    REAPED.extend(getattr(node, "workeroutput", {}).get("reaped", []))


@pytest.fixture
def pg_url(pg_engine: sa.Engine) -> Iterator[str]:
    """A fresh PostgreSQL schema for one test, as a URL whose search_path points at it."""
    schema = f"dagd_t_{uuid.uuid4().hex[:12]}"
    with pg_engine.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    base = postgres_base_url()
    sep = "&" if "?" in base else "?"
    yield f"{base}{sep}options=-csearch_path%3D{schema}"
    with pg_engine.connect() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture
def sqlite_url(tmp_path: pathlib.Path) -> str:
    return f"sqlite:///{tmp_path / 'dagd.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def storage_url(request: pytest.FixtureRequest) -> str:
    """Every storage test runs on both backends."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


@pytest.fixture
def storage(storage_url: str) -> Iterator[object]:
    from dagd.storage import open_storage

    store = open_storage(storage_url)
    yield store
    store.dispose()


@pytest.fixture
def home(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def defs_file() -> pathlib.Path:
    return pathlib.Path(__file__).parent / "fixtures" / "defs.py"


@pytest.fixture
def dagd(home: pathlib.Path) -> Iterator[DagdProcess]:
    """Factory-ish handle: ``dagd.start(...)`` runs ``dagctl dev``; teardown stops it and checks leftovers."""
    proc = DagdProcess(home)
    yield proc
    proc.stop()
    assert_no_leftovers(home)


# -- parallel runs (scripts/test runs pytest-xdist: -n N --dist loadgroup --no-loadscope-reorder) --

# Longest first, so no worker is left with a long test at the end while the others idle: the chaos
# batteries (minutes), then whatever starts real deployments, then one component, then pure code.
RANK = {"chaos": 0, "e2e": 1, "web": 1, "fuzz": 2, "integration": 3, "unit": 4}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        group = xdist_group(item)
        if group and not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(group))
    if hasattr(config, "workerinput"):  # an xdist worker; every worker sorts the same way
        items.sort(key=lambda item: RANK.get(pathlib.Path(item.path).parent.name, 3))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Refuse to run when xdist did not apply the groups above (as with pytest 9.2 and
    pytest-xdist 3.8, where xdist renames a node id attribute pytest no longer reads): the groups
    would be ignored silently, and tests sharing a deployment would each start their own."""
    config = session.config
    if not (hasattr(config, "workerinput") and config.getvalue("loadgroup")):
        return
    lost = [
        item.nodeid
        for item in session.items
        if item.get_closest_marker("xdist_group") and "@" not in item.nodeid
    ]
    if lost:
        message = (
            f"pytest-xdist did not apply --dist loadgroup to {len(lost)} tests (e.g. {lost[0]}): "
            "check the pytest / pytest-xdist versions pinned in pyproject.toml"
        )
        print(f"error: {message}", file=sys.stderr)  # a worker's exception alone is not shown
        raise pytest.UsageError(message)


def xdist_group(item: pytest.Item) -> str | None:
    """The tests that must share one xdist worker (the scheduling unit of ``--dist loadgroup``).

    - The chaos batteries, one after the other: each loads both cores by itself, and two at once
      would be a different (and flakier) experiment than the one docs/chaos.md describes.
    - Tests of one module that share a module-scoped fixture (a running deployment): on one worker
      it starts once, as in a serial run, instead of once per worker.
    """
    path = pathlib.Path(item.path)
    if path.parent.name == "chaos" and path.name == "test_chaos.py":
        return "chaos"
    infos = getattr(item, "_fixtureinfo", None)
    for name in getattr(item, "fixturenames", ()):
        defs = infos.name2fixturedefs.get(name) if infos is not None else None
        if defs and defs[-1].scope == "module":
            return f"module:{path.parent.name}/{path.name}"
    return None


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The chaos batteries' seeds and summaries (``user_properties`` named "chaos"), at the end of
    the run whether they passed or not: a pytest-xdist worker's own output is not shown."""
    seen: set[tuple[str, str]] = set()
    lines = []
    for reports in terminalreporter.stats.values():
        for report in reports:
            for key, value in getattr(report, "user_properties", ()):
                if key == "chaos" and (report.nodeid, value) not in seen:
                    seen.add((report.nodeid, value))
                    lines.append(f"{report.nodeid}:\n{value}")
    if lines:
        terminalreporter.section("chaos")
        for line in lines:
            terminalreporter.write_line(line)
    if REAPED:
        terminalreporter.section("reaper: processes the tests left behind, stopped at the end")
        for line in REAPED:
            terminalreporter.write_line(line)
