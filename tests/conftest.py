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

import pytest
import sqlalchemy as sa

sys.path.insert(0, str(pathlib.Path(__file__).parent))

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
