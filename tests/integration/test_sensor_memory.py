"""The sensor daemon's memory stays bounded however its batch sizes vary (issue #5).

Regression: ``create_ticks`` (a multi-row ``INSERT ... RETURNING``) and ``cursors`` (an ``IN``
list) sent one distinct SQL string per batch size. SQLite keeps up to 128 prepared statements per
pooled connection, and a few hundred rows make a statement of hundreds of KB, so when sensors fell
behind their interval and the batches came in every size, each connection's cache filled with
one-off statements and their churn fragmented the C heap: the daemon's RSS grew for as long as it
ran (72 -> 92 MB in 15 minutes under load). Batches are now cut into power-of-two pieces, so the
number of distinct statements is bounded by a constant, not by the number of batch sizes seen.
"""

from __future__ import annotations

import pathlib
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest
from helpers.codeserver import serving

from dagd.daemons.sensor import SensorDaemon
from dagd.instance.instance import Instance
from dagd.storage import sql
from dagd.storage.instigators import TICK_SKIPPED, NewTick
from dagd.storage.sql import MAX_PIECE, padded, pieces

SENSORS = 300
PASSES = 40
# Every statement shape the sensor path can send (inserts in 9 piece sizes, IN lists in 9 padded
# sizes, the epoch check, BEGIN...), with room to spare; one per batch size would be ~2 * PASSES.
MAX_SHAPES = 30

DEFS = f"""
from dagd import Definitions, SkipReason, job, sensor


@job
def noop(context):
    pass


def make(i):
    @sensor(job=noop, name=f"x{{i:04d}}", minimum_interval_seconds=1, default_status="RUNNING")
    def every_second(context):
        if i % 3 == 0:
            context.update_cursor(str(i))
        return SkipReason("nothing new") if i % 2 else None

    return every_second


defs = Definitions(jobs=[noop], sensors=[make(i) for i in range({SENSORS})])
"""


def test_pieces_are_powers_of_two_in_order() -> None:
    for n in [0, 1, 2, 3, 7, 255, 256, 257, 511, 1000, 1023]:
        items = list(range(n))
        cut = list(pieces(items))
        assert [x for piece in cut for x in piece] == items
        assert all(len(p) <= MAX_PIECE and len(p) & (len(p) - 1) == 0 for p in cut)
        assert len(cut) <= MAX_PIECE.bit_length() + n // MAX_PIECE


def test_padded_in_lists_cover_every_name_in_few_sizes() -> None:
    sizes = set()
    for n in range(1, 1100, 7):
        names = [f"n{i}" for i in range(n)]
        chunks = list(padded(names))
        assert set().union(*map(set, chunks)) == set(names)
        assert all(len(c) <= MAX_PIECE and len(c) & (len(c) - 1) == 0 for c in chunks)
        sizes.update(len(c) for c in chunks)
    assert len(sizes) <= MAX_PIECE.bit_length()


class _Recording:
    """A DBAPI cursor that notes the SQL text of every statement it is given."""

    def __init__(self, cursor: Any, seen: set[str]) -> None:
        self._cursor = cursor
        self._seen = seen

    def execute(self, statement: str, *args: Any, **kwargs: Any) -> Any:
        self._seen.add(statement)
        return self._cursor.execute(statement, *args, **kwargs)

    def executemany(self, statement: str, *args: Any, **kwargs: Any) -> Any:
        self._seen.add(statement)
        return self._cursor.executemany(statement, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


def _statements(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Every distinct SQL text the stores send to the driver from now on."""
    seen: set[str] = set()
    original = sql.Sql.__init__

    def recording(self: sql.Sql, cursor: Any, dialect: str) -> None:
        original(self, _Recording(cursor, seen), dialect)

    monkeypatch.setattr(sql.Sql, "__init__", recording)
    return seen


def test_tick_batches_of_every_size_use_a_bounded_set_of_statements(
    storage: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = storage.instigators
    names = [f"s{i:04d}" for i in range(700)]
    for name in names:
        store.ensure("sensor", name, "RUNNING")
    seen = _statements(monkeypatch)
    sizes = random.Random(5).sample(range(1, len(names) + 1), 60)
    for size in sizes:
        batch = names[:size]
        assert set(store.cursors("sensor", batch)) == set(batch)
        created = store.create_ticks(
            [NewTick("sensor", n, status=TICK_SKIPPED, skip_reason="x") for n in batch], epoch=None
        )
        assert all(t is not None for t in created) and len({t.id for t in created if t}) == size
    assert len(seen) <= MAX_SHAPES, f"{len(seen)} distinct statements for {len(sizes)} batch sizes"


@pytest.fixture
def sensor_home(home: pathlib.Path, tmp_path: pathlib.Path, sqlite_url: str) -> Iterator[Instance]:
    db = pathlib.Path(sqlite_url.removeprefix("sqlite:///"))
    (home / "dagd.yaml").write_text(f"storage:\n  sqlite:\n    base_dir: {db.parent}\n")
    with serving(home, tmp_path / "many_sensors.py", DEFS) as instance:
        yield instance


@pytest.mark.timeout(180)
def test_sensor_daemon_behind_schedule_stays_bounded(
    sensor_home: Instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sensors behind their interval: every pass finds a different number of them due. After many
    passes the daemon's per-sensor state holds one entry per sensor and the database has seen a
    bounded set of statements, whatever the batch sizes were."""
    daemon = SensorDaemon(sensor_home)
    seen = _statements(monkeypatch)
    rng = random.Random(11)
    sizes = []
    try:
        daemon.run_iteration()  # first pass: every sensor due (states created, resumed ticks)
        _wait(daemon)
        for _ in range(PASSES):
            names = list(daemon.last_started)
            due = set(rng.sample(names, rng.randint(1, len(names))))
            now = time.monotonic()
            for name in names:  # the due ones started long ago; the others just now
                daemon.last_started[name] = now - 3600 if name in due else now
            daemon._states_at = now  # keep the cached states: only the evaluations vary
            daemon.run_iteration()
            _wait(daemon)
            sizes.append(len(due))
        assert daemon.evaluations == SENSORS + sum(sizes)
    finally:
        daemon.close()
    assert len(daemon.in_flight) == len(daemon.last_started) == len(daemon._states) == SENSORS
    assert len(set(sizes)) > MAX_SHAPES  # the batch sizes really did vary
    assert len(seen) <= MAX_SHAPES, f"{len(seen)} distinct statements for {len(set(sizes))} batch sizes"


def _wait(daemon: SensorDaemon) -> None:
    for future in list(daemon.in_flight.values()):
        assert future.exception(timeout=60) is None
