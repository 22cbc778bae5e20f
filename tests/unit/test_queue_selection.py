"""The run queue's dequeue choice: Dagster's queuing semantics, limit by limit, and the explanation
every queued run gets. The property test at the end checks the rules against a naive model."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dagd.runs.selection import (
    NEXT_PASS_REASON,
    Blocked,
    InProgressRun,
    QueuedRun,
    Selection,
    TagLimit,
    select_runs,
)


def queued(
    *specs: tuple[str, Mapping[str, str]] | str, priority: Mapping[str, int] | None = None
) -> list[QueuedRun]:
    """Queued runs in submission order; a bare string is an untagged run."""
    runs = []
    for seq, spec in enumerate(specs):
        run_id, tags = (spec, {}) if isinstance(spec, str) else spec
        runs.append(QueuedRun(run_id, seq, (priority or {}).get(run_id, 0), dict(tags)))
    return runs


def running(*specs: tuple[str, Mapping[str, str]] | str) -> list[InProgressRun]:
    return [
        InProgressRun(spec, {}) if isinstance(spec, str) else InProgressRun(spec[0], dict(spec[1]))
        for spec in specs
    ]


def any_value(key: str, limit: int) -> TagLimit:
    return TagLimit(key, None, False, limit)


def exact(key: str, value: str, limit: int) -> TagLimit:
    return TagLimit(key, value, False, limit)


def per_value(key: str, limit: int) -> TagLimit:
    return TagLimit(key, None, True, limit)


# --- ordering ---------------------------------------------------------------------------------


def test_run_blocked_by_tag_limit_does_not_block_later_runs() -> None:
    # The seed's example: limit foo: 1; submit A(foo=bar), B(foo=bar), C(untagged) -> A, C, then B.
    runs = queued(("A", {"foo": "bar"}), ("B", {"foo": "bar"}), "C")
    first = select_runs(runs, [], 10, [any_value("foo", 1)])
    assert first.to_launch == ("A", "C")
    assert first.blocked["B"] == Blocked(
        "B", ("tag limit foo (any value, limit 1): 1 in progress",), ("A",), 1
    )

    # A finished; C is still running.
    second = select_runs([runs[1]], running("C"), 10, [any_value("foo", 1)])
    assert second.to_launch == ("B",)
    assert second.blocked == {}


def test_higher_priority_launches_first_and_negatives_last() -> None:
    runs = queued("zero", "minus", "three", priority={"zero": 0, "minus": -1, "three": 3})
    assert select_runs(runs, [], -1, []).to_launch == ("three", "zero", "minus")


def test_equal_priority_launches_in_submission_order_whatever_the_input_order() -> None:
    runs = [QueuedRun(f"r{seq}", seq, 0, {}) for seq in (4, 1, 3, 0, 2)]
    assert select_runs(runs, [], -1, []).to_launch == ("r0", "r1", "r2", "r3", "r4")


def test_priority_then_fifo_under_a_global_cap() -> None:
    runs = queued("a", "b", "c", "d", priority={"c": 1, "d": 1})
    selection = select_runs(runs, [], 3, [])
    assert selection.to_launch == ("c", "d", "a")
    assert selection.blocked["b"].reasons == ("max_concurrent_runs: 3 of 3 in progress",)


# --- tag limits ---------------------------------------------------------------------------------


def test_key_only_limit_counts_every_value_of_the_key() -> None:
    runs = queued(("q1", {"dagd/backfill": "bf2"}), ("q2", {"dagd/backfill": "bf3"}), "q3")
    selection = select_runs(
        runs, running(("r1", {"dagd/backfill": "bf1"})), 10, [any_value("dagd/backfill", 2)]
    )
    assert selection.to_launch == ("q1", "q3")
    assert selection.blocked["q2"].reasons == ("tag limit dagd/backfill (any value, limit 2): 2 in progress",)
    assert selection.blocked["q2"].holders == ("r1", "q1")


def test_key_value_limit_counts_only_that_value() -> None:
    runs = queued(
        ("rs1", {"database": "redshift"}),
        ("pg1", {"database": "postgres"}),
        ("rs2", {"database": "redshift"}),
        ("pg2", {"database": "postgres"}),
    )
    selection = select_runs(runs, [], 10, [exact("database", "redshift", 1)])
    assert selection.to_launch == ("rs1", "pg1", "pg2")
    assert selection.blocked["rs2"].reasons == ("tag limit database=redshift (limit 1): 1 in progress",)


def test_per_unique_value_limit_gives_each_value_its_own_limit() -> None:
    runs = queued(
        ("a1", {"use-case": "a"}),
        ("a2", {"use-case": "a"}),
        ("b1", {"use-case": "b"}),
        ("b2", {"use-case": "b"}),
        ("b3", {"use-case": "b"}),
    )
    selection = select_runs(runs, running(("rb", {"use-case": "b"})), 10, [per_value("use-case", 2)])
    assert selection.to_launch == ("a1", "a2", "b1")
    blocked = selection.blocked["b2"]
    assert blocked.reasons == ("tag limit use-case=<each value> (limit 2): 2 in progress with use-case=b",)
    assert blocked.holders == ("rb", "b1")


def test_overlapping_limits_all_apply_and_the_tightest_binds() -> None:
    runs = queued(
        ("bar1", {"foo": "bar"}),
        ("bar2", {"foo": "bar"}),
        ("baz1", {"foo": "baz"}),
        ("baz2", {"foo": "baz"}),
        ("baz3", {"foo": "baz"}),
    )
    limits = [any_value("foo", 3), exact("foo", "bar", 1)]
    selection = select_runs(runs, [], 10, limits)
    assert selection.to_launch == ("bar1", "baz1", "baz2")
    # bar2 hits both limits by the end of the pass; baz3 only the key-wide one.
    assert selection.blocked["bar2"].reasons == (
        "tag limit foo (any value, limit 3): 3 in progress",
        "tag limit foo=bar (limit 1): 1 in progress",
    )
    assert selection.blocked["baz3"].reasons == ("tag limit foo (any value, limit 3): 3 in progress",)


def test_duplicate_entries_for_one_limit_keep_the_tightest() -> None:
    runs = queued(("a", {"foo": "x"}), ("b", {"foo": "x"}), ("c", {"foo": "x"}))
    selection = select_runs(runs, [], 10, [any_value("foo", 2), any_value("foo", 1), any_value("foo", 5)])
    assert selection.to_launch == ("a",)
    assert selection.blocked["b"].reasons == ("tag limit foo (any value, limit 1): 1 in progress",)


def test_limit_zero_blocks_every_matching_run_and_nobody_holds_it() -> None:
    runs = queued(("a", {"team": "ml"}), ("b", {"team": "bi"}), "c")
    selection = select_runs(runs, running(("r", {"team": "ml"})), 10, [exact("team", "ml", 0)])
    assert selection.to_launch == ("b", "c")
    assert selection.blocked["a"] == Blocked(
        "a", ("tag limit team=ml (limit 0): blocks every matching run",), (), 1
    )


# --- the global cap -----------------------------------------------------------------------------


def test_max_concurrent_runs_zero_launches_nothing_and_says_so() -> None:
    selection = select_runs(queued("a", "b"), [], 0, [])
    assert selection.to_launch == ()
    assert selection.blocked["a"].reasons == ("max_concurrent_runs is 0: the queue launches nothing",)
    assert selection.blocked["b"].position == 2


def test_max_concurrent_runs_minus_one_launches_everything() -> None:
    runs = queued(*(f"r{i}" for i in range(50)))
    selection = select_runs(runs, running(*(f"ip{i}" for i in range(100))), -1, [])
    assert selection.to_launch == tuple(f"r{i}" for i in range(50))
    assert selection.blocked == {}


def test_in_progress_runs_count_against_the_global_cap() -> None:
    selection = select_runs(queued("a", "b", "c"), running("r1", "r2"), 3, [])
    assert selection.to_launch == ("a",)
    assert selection.blocked["b"] == Blocked(
        "b", ("max_concurrent_runs: 3 of 3 in progress",), ("r1", "r2", "a"), 1
    )


def test_in_progress_runs_count_against_tag_limits() -> None:
    runs = queued(("a", {"database": "redshift"}), "b")
    ip = running(("r1", {"database": "redshift"}), ("r2", {"database": "redshift"}), "r3")
    selection = select_runs(runs, ip, 10, [exact("database", "redshift", 2)])
    assert selection.to_launch == ("b",)
    assert selection.blocked["a"].holders == ("r1", "r2")


def test_full_global_cap_blocks_the_rest_and_tag_reasons_are_kept() -> None:
    runs = queued(("a", {"foo": "x"}), ("b", {"foo": "x"}), "c")
    selection = select_runs(runs, [], 1, [any_value("foo", 1)])
    assert selection.to_launch == ("a",)
    assert selection.blocked["b"].reasons == (
        "max_concurrent_runs: 1 of 1 in progress",
        "tag limit foo (any value, limit 1): 1 in progress",
    )
    assert selection.blocked["c"].reasons == ("max_concurrent_runs: 1 of 1 in progress",)
    assert selection.blocked["c"].holders == ("a",)


def test_lowering_limits_below_current_use_launches_nothing_new() -> None:
    ip = running(*((f"r{i}", {"foo": "x"}) for i in range(5)))
    runs = queued(("a", {"foo": "y"}), "b")

    tag_lowered = select_runs(runs, ip, 100, [any_value("foo", 2)])
    assert tag_lowered.to_launch == ("b",)
    assert tag_lowered.blocked["a"].reasons == ("tag limit foo (any value, limit 2): 5 in progress",)

    cap_lowered = select_runs(runs, ip, 3, [])
    assert cap_lowered.to_launch == ()
    assert cap_lowered.blocked["a"].reasons == ("max_concurrent_runs: 5 of 3 in progress",)


# --- explanation ----------------------------------------------------------------------------------


def test_holders_merge_every_blocking_limit_in_order_without_duplicates() -> None:
    ip = running(("r1", {"foo": "x", "db": "rs"}), ("r2", {"db": "rs"}))
    runs = queued(("a", {"foo": "x", "db": "rs"}))
    selection = select_runs(runs, ip, 10, [any_value("foo", 1), exact("db", "rs", 2)])
    assert selection.blocked["a"].holders == ("r1", "r2")


def test_positions_count_only_runs_still_queued_in_line_order() -> None:
    runs = queued(
        ("a", {"foo": "x"}),
        ("b", {"foo": "x"}),
        "c",
        ("d", {"foo": "x"}),
        "e",
        priority={"e": 5},
    )
    selection = select_runs(runs, [], 10, [any_value("foo", 1)])
    assert selection.to_launch == ("e", "a", "c")
    assert {run_id: b.position for run_id, b in selection.blocked.items()} == {"b": 1, "d": 2}


def test_max_to_launch_caps_the_pass_and_the_rest_wait_for_the_next() -> None:
    runs = queued(("a", {"foo": "x"}), ("b", {"foo": "x"}), "c", "d")
    selection = select_runs(runs, [], 10, [any_value("foo", 1)], max_to_launch=1)
    assert selection.to_launch == ("a",)
    assert selection.blocked["b"].reasons == ("tag limit foo (any value, limit 1): 1 in progress",)
    assert selection.blocked["c"] == Blocked("c", (NEXT_PASS_REASON,), (), 2)
    assert selection.blocked["d"].position == 3


def test_max_to_launch_zero_launches_nothing() -> None:
    selection = select_runs(queued("a"), [], -1, [], max_to_launch=0)
    assert selection.to_launch == ()
    assert selection.blocked["a"].reasons == (NEXT_PASS_REASON,)


def test_describe_names_each_kind_of_limit() -> None:
    assert exact("database", "redshift", 4).describe() == "database=redshift (limit 4)"
    assert any_value("dagd/backfill", 10).describe() == "dagd/backfill (any value, limit 10)"
    assert per_value("use-case", 3).describe() == "use-case=<each value> (limit 3)"


@pytest.mark.parametrize(
    "call",
    [
        lambda: select_runs([], [], -2, []),
        lambda: select_runs([], [], 1, [], max_to_launch=-1),
        lambda: TagLimit("foo", None, False, -1),
        lambda: TagLimit("foo", "x", True, 1),
    ],
    ids=["cap below -1", "negative max_to_launch", "negative tag limit", "per-value limit with a value"],
)
def test_invalid_inputs_fail_loudly(call: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        call()


def test_empty_queue_selects_nothing() -> None:
    assert select_runs([], running("r"), 1, [any_value("foo", 0)]) == Selection((), {})


# --- properties against a naive model ----------------------------------------------------------

KEYS = ("a", "b", "c")
VALUES = ("x", "y", "z")

tags_st = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=3)
limit_st = st.one_of(
    st.builds(any_value, st.sampled_from(KEYS), st.integers(0, 3)),
    st.builds(exact, st.sampled_from(KEYS), st.sampled_from(VALUES), st.integers(0, 3)),
    st.builds(per_value, st.sampled_from(KEYS), st.integers(0, 3)),
)


def buckets_of(tags: Mapping[str, str], limits: Sequence[TagLimit]) -> list[tuple[int, str]]:
    """Each limit (by index) and the counter within it that a run with these tags falls in."""
    found = []
    for i, tl in enumerate(limits):
        value = tags.get(tl.key)
        if value is None:
            continue
        if tl.per_unique_value:
            found.append((i, value))
        elif tl.value is None or tl.value == value:
            found.append((i, ""))
    return found


def bucket_counts(
    tag_sets: Sequence[Mapping[str, str]], limits: Sequence[TagLimit]
) -> dict[tuple[int, str], int]:
    counts: dict[tuple[int, str], int] = {}
    for tags in tag_sets:
        for bucket in buckets_of(tags, limits):
            counts[bucket] = counts.get(bucket, 0) + 1
    return counts


def would_exceed(
    tags: Mapping[str, str], running_tags: Sequence[Mapping[str, str]], cap: int, limits: Sequence[TagLimit]
) -> bool:
    if cap != -1 and len(running_tags) + 1 > cap:
        return True
    counts = bucket_counts(running_tags, limits)
    return any(counts.get(bucket, 0) + 1 > limits[bucket[0]].limit for bucket in buckets_of(tags, limits))


def naive_select(
    runs: Sequence[QueuedRun],
    ip: Sequence[InProgressRun],
    cap: int,
    limits: Sequence[TagLimit],
    max_to_launch: int | None,
) -> tuple[str, ...]:
    """Dagster's walk written the slow, obvious way: recount everything for every run."""
    running_tags = [r.tags for r in ip]
    chosen: list[str] = []
    for run in sorted(runs, key=lambda r: (-r.priority, r.seq)):
        if max_to_launch is not None and len(chosen) >= max_to_launch:
            break
        if not would_exceed(run.tags, running_tags, cap, limits):
            chosen.append(run.run_id)
            running_tags.append(run.tags)
    return tuple(chosen)


@st.composite
def scenarios(
    draw: st.DrawFn,
) -> tuple[list[QueuedRun], list[InProgressRun], int, list[TagLimit], int | None]:
    limits = draw(st.lists(limit_st, max_size=5))
    ip = [InProgressRun(f"ip{i}", t) for i, t in enumerate(draw(st.lists(tags_st, max_size=8)))]
    specs = draw(st.lists(st.tuples(st.integers(-2, 2), tags_st), max_size=25))
    runs = [QueuedRun(f"q{seq}", seq, prio, tags) for seq, (prio, tags) in enumerate(specs)]
    runs = draw(st.permutations(runs))  # storage order is not submission order
    cap = draw(st.sampled_from([-1, 0, 1, 2, 3, 5, 8, 12]))
    max_to_launch = draw(st.none() | st.integers(0, 6))
    return runs, ip, cap, limits, max_to_launch


@settings(max_examples=400, deadline=None)
@given(scenarios(), st.randoms(use_true_random=False))
def test_selection_properties(
    scenario: tuple[list[QueuedRun], list[InProgressRun], int, list[TagLimit], int | None],
    rnd: random.Random,
) -> None:
    runs, ip, cap, limits, max_to_launch = scenario
    selection = select_runs(runs, ip, cap, limits, max_to_launch)
    by_id = {r.run_id: r for r in runs}
    chosen = [by_id[run_id] for run_id in selection.to_launch]

    # Every queued run is either launched or explained, never both.
    assert set(selection.to_launch) | set(selection.blocked) == set(by_id)
    assert not set(selection.to_launch) & set(selection.blocked)
    assert len(selection.to_launch) == len(set(selection.to_launch))

    # (1) Nothing launched pushes a limit past its value. A counter already over (a lowered limit)
    # may stay over, but only if nothing new joined it.
    before = bucket_counts([r.tags for r in ip], limits)
    after = bucket_counts([r.tags for r in ip] + [r.tags for r in chosen], limits)
    for bucket, count in after.items():
        assert count == before.get(bucket, 0) or count <= limits[bucket[0]].limit, bucket
    if cap != -1 and chosen:
        assert len(ip) + len(chosen) <= cap
    if max_to_launch is not None:
        assert len(chosen) <= max_to_launch

    # (2) Maximality: each blocked run would break a limit if launched too, unless the pass was
    # cut short by max_to_launch, and its reasons say which case it is.
    final_tags = [r.tags for r in ip] + [r.tags for r in chosen]
    allowed_holders = {r.run_id for r in ip} | set(selection.to_launch)
    for run_id, blocked in selection.blocked.items():
        assert blocked.run_id == run_id
        assert blocked.reasons
        assert set(blocked.holders) <= allowed_holders
        if blocked.reasons == (NEXT_PASS_REASON,):
            assert max_to_launch is not None and len(chosen) == max_to_launch
            assert not would_exceed(by_id[run_id].tags, final_tags, cap, limits)
            assert blocked.holders == ()
        else:
            assert NEXT_PASS_REASON not in blocked.reasons
            assert would_exceed(by_id[run_id].tags, final_tags, cap, limits)

    # (3) Launch order is priority, then submission order; and the whole choice is Dagster's walk.
    assert list(selection.to_launch) == [r.run_id for r in sorted(chosen, key=lambda r: (-r.priority, r.seq))]
    assert selection.to_launch == naive_select(runs, ip, cap, limits, max_to_launch)

    # Positions are the line order of the runs left queued.
    line = [
        r.run_id for r in sorted(runs, key=lambda r: (-r.priority, r.seq)) if r.run_id in selection.blocked
    ]
    assert [selection.blocked[run_id].position for run_id in line] == list(range(1, len(line) + 1))

    # (4) Deterministic, and independent of the order the queue was read in.
    assert select_runs(runs, ip, cap, limits, max_to_launch) == selection
    shuffled = list(runs)
    rnd.shuffle(shuffled)
    assert select_runs(shuffled, ip, cap, limits, max_to_launch) == selection
