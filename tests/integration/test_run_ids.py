"""Run id prefixes on real databases (SQLite and PostgreSQL): unique, ambiguous, too short, absent.

The query is one indexed range narrowed by LIKE (dagd.storage.run_ids); these tests pin what it
answers, with ids chosen to share prefixes, including hyphens and the carry of an ``f``.
"""

from __future__ import annotations

import pytest

from dagd.errors import InvalidArgument, NotFound
from dagd.runs.model import RunStatus
from dagd.storage import Storage
from dagd.storage.run_ids import ids_with_prefix, prefix_query, resolve_run_id, upper_bound
from dagd.storage.runs import NewRun

IDS = [
    "abcdef01-0000-4000-8000-000000000001",
    "abcdef02-0000-4000-8000-000000000002",
    "abcdeff0-0000-4000-8000-000000000003",
    "abcdf000-0000-4000-8000-000000000004",  # just above every abcde... id: the carry's bound
    "12345678-9abc-4def-8000-000000000005",
    "12345678-9abd-4def-8000-000000000006",
]


@pytest.fixture
def stored(storage: Storage) -> Storage:
    for run_id in IDS:
        storage.runs.create(
            NewRun(
                job_name="hello", tags={}, run_config={}, priority=0, status=RunStatus.QUEUED, run_id=run_id
            )
        )
    return storage


def test_a_unique_prefix_names_its_run(stored: Storage) -> None:
    assert resolve_run_id(stored, "abcdef01") == IDS[0]
    assert resolve_run_id(stored, "ABCDEF02") == IDS[1]  # ids are lower case; what is typed may not be
    assert resolve_run_id(stored, "abcdeff") == IDS[2]
    assert resolve_run_id(stored, "12345678-9abd") == IDS[5]  # across a hyphen
    assert resolve_run_id(stored, IDS[3]) == IDS[3]  # a full id is itself


def test_an_ambiguous_prefix_is_refused_naming_the_candidates(stored: Storage) -> None:
    with pytest.raises(InvalidArgument) as refused:
        resolve_run_id(stored, "abcdef")
    message = str(refused.value)
    assert "ambiguous" in message and all(run_id in message for run_id in IDS[:3]), message
    assert IDS[3] not in message  # abcdf000 does not start with abcdef
    with pytest.raises(InvalidArgument, match="ambiguous"):
        resolve_run_id(stored, "12345678-9ab")


def test_a_short_prefix_is_refused_with_a_clear_line(stored: Storage) -> None:
    with pytest.raises(InvalidArgument, match="too short: give the full id or at least 6 characters"):
        resolve_run_id(stored, "abcde")
    assert resolve_run_id(stored, "abcdef%") == "abcdef%"  # no prefix (and no LIKE wildcard): as it is


def test_no_match_is_not_found(stored: Storage) -> None:
    with pytest.raises(NotFound, match="no run with id 'abcdef9'"):
        resolve_run_id(stored, "abcdef9")
    assert ids_with_prefix(stored, "ffffff", 5) == []


def test_the_range_bound_carries_over_f() -> None:
    assert upper_bound("abcdef") == "abcdf"
    assert upper_bound("abcd9f") == "abcda"
    assert upper_bound("12345678-") == "12345679"
    assert upper_bound("ffffff") is None


def test_the_prefix_query_walks_the_run_id_index(stored: Storage, storage_url: str) -> None:
    """One index range scan, not a scan of every run (what makes a prefix cheap on a big instance)."""
    import sqlalchemy as sa

    sql, params = prefix_query("abcdef", 11)
    engine = sa.create_engine(storage_url)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                plan = " ".join(
                    str(row[-1]) for row in conn.execute(sa.text(f"EXPLAIN QUERY PLAN {sql}"), params)
                )
                assert "USING COVERING INDEX" in plan or "USING INDEX" in plan, plan
            else:
                # A tiny table: ask whether the planner can use the index, not whether it would.
                conn.execute(sa.text("SET enable_seqscan = off"))
                plan = " ".join(str(row[0]) for row in conn.execute(sa.text(f"EXPLAIN {sql}"), params))
                assert "Index" in plan and "Seq Scan" not in plan, plan
    finally:
        engine.dispose()
