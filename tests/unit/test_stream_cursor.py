"""The gap-aware stream cursor (dagd.runs.cursor): ids that become visible out of order (PostgreSQL
transactions committing in another order than they took their ids) are each delivered exactly
once, also when the reader stops and resumes from the encoded cursor at any point."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dagd.errors import InvalidArgument
from dagd.runs.cursor import GAP_TIMEOUT_SECONDS, MAX_GAPS, Cursor


def read(cursor: Cursor, committed: set[int]) -> list[int]:
    """What read_changes returns: the visible ids the cursor has not seen, in id order."""
    return sorted(i for i in committed if cursor.is_new(i))


@settings(max_examples=300, deadline=None)
@given(
    order=st.permutations(list(range(1, 41))),
    reads=st.lists(st.integers(min_value=0, max_value=40), max_size=30),
    resumes=st.lists(st.booleans(), max_size=30),
)
def test_every_id_is_delivered_once_whatever_the_commit_order(
    order: list[int], reads: list[int], resumes: list[bool]
) -> None:
    cursor, committed, delivered = Cursor(), set[int](), []
    points = set(reads)
    for step, commit in enumerate(order, start=1):
        committed.add(commit)
        if step in points:
            batch = read(cursor, committed)
            delivered += batch
            cursor = cursor.advance(batch, now=0.0)
            if resumes and resumes[step % len(resumes)]:
                cursor = Cursor.decode(cursor.encode())  # a client reconnecting with it
    delivered += read(cursor, committed)
    assert sorted(delivered) == list(range(1, 41))


def test_a_late_commit_below_the_last_id_is_delivered() -> None:
    cursor = Cursor().advance([1, 2, 4], now=100.0)  # 3 took its id but has not committed yet
    assert cursor.last == 4 and set(cursor.gaps) == {3}
    assert not cursor.is_new(2) and cursor.is_new(3) and cursor.is_new(5)
    cursor = cursor.advance([3], now=101.0)
    assert cursor.gaps == {} and not cursor.is_new(3)


def test_a_gap_is_given_up_after_the_timeout_by_the_database_clock() -> None:
    cursor = Cursor().advance([1, 3], now=100.0)  # 2 rolled back: it will never appear
    assert cursor.expire(100.0 + GAP_TIMEOUT_SECONDS - 1).gaps == {2: 100.0}
    assert cursor.expire(100.0 + GAP_TIMEOUT_SECONDS).gaps == {}
    assert cursor.advance([4], now=100.0 + GAP_TIMEOUT_SECONDS).gaps == {}


def test_a_huge_jump_keeps_a_bounded_number_of_gaps() -> None:
    cursor = Cursor().advance([10_000_000], now=0.0)
    assert cursor.last == 10_000_000 and len(cursor.gaps) == MAX_GAPS
    assert len(cursor.encode()) < 50_000


def test_encode_decode_round_trip() -> None:
    cursor = Cursor().advance([1, 5, 9], now=1733390000.125)
    again = Cursor.decode(cursor.encode())
    assert again == cursor
    assert Cursor.decode(Cursor().encode()) == Cursor()


@pytest.mark.parametrize(
    "text", ["", "abc", "v1.", "v1.!!!", "v1.LTU", "v1." + "OTs5QDE", "x" * 300_000, "v1.MTA7MjBAMQ"]
)
def test_a_bad_cursor_is_one_clear_error(text: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid stream cursor"):
        Cursor.decode(text)


@settings(max_examples=300, deadline=None)
@given(
    a=st.lists(st.integers(min_value=1, max_value=60), max_size=40),
    b=st.lists(st.integers(min_value=1, max_value=60), max_size=40),
)
def test_merge_has_seen_exactly_what_either_cursor_saw(a: list[int], b: list[int]) -> None:
    left, right = Cursor().advance(a, now=0.0), Cursor().advance(b, now=0.0)
    merged = left.merge(right)
    for event_id in range(1, 70):
        assert merged.has_seen(event_id) == (left.has_seen(event_id) or right.has_seen(event_id)), event_id
    assert merged == right.merge(left)
