"""SQLite older than 3.35 (no RETURNING) is refused when storage is opened, with one line saying
what to do, by the supervisor's engine and by a daemon's own connections alike."""

from __future__ import annotations

import pathlib
import sqlite3

import pytest

from dagd.errors import ConfigError
from dagd.storage.database import DirectDatabase
from dagd.storage.engine import open_storage
from dagd.storage.sql import check_sqlite_version

MESSAGE = (
    "SQLite 3.31.1 is too old: dagd needs SQLite 3.35 or newer (for RETURNING); run dagd on a "
    "Python linked against a newer SQLite, or use PostgreSQL (storage.postgres)"
)


@pytest.mark.parametrize("version", ["3.35.0", "3.35.5", "3.45.1", "4.0.0"])
def test_sqlite_with_returning_is_accepted(version: str) -> None:
    check_sqlite_version(version)


@pytest.mark.parametrize("version", ["3.34.1", "3.31.1", "3.7.17", "2.8.17"])
def test_sqlite_without_returning_is_refused(version: str) -> None:
    with pytest.raises(ConfigError, match=f"^SQLite {version} is too old: dagd needs SQLite 3.35 or newer"):
        check_sqlite_version(version)


def test_this_pythons_sqlite_is_new_enough() -> None:
    check_sqlite_version()  # the suite itself needs RETURNING


def test_opening_storage_on_an_old_sqlite_fails_at_once_and_creates_nothing(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.31.1")
    url = f"sqlite:///{tmp_path / 'dagd.db'}"
    for open_ in (open_storage, DirectDatabase):
        with pytest.raises(ConfigError) as info:
            open_(url)
        assert str(info.value) == MESSAGE
    assert not (tmp_path / "dagd.db").exists()
