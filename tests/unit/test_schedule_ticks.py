"""Schedule tick math: the DST rules (a gap fires at its end, a repeated time fires in both passes
for every-hour crons and once, later, for the others),
catch-up after downtime, validation, and properties checked against an independent model that walks
UTC minute by minute. All times are injected; nothing sleeps or reads the clock."""

from __future__ import annotations

import time as perf
from datetime import datetime, timedelta, timezone
from functools import cache
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dagd.scheduling.ticks import (
    MAX_CATCHUP_RUNS,
    MAX_PREVIEW_COUNT,
    SKIPPED_LIST_LIMIT,
    CatchUpPlan,
    next_tick,
    plan_catch_up,
    preview,
    ticks_between,
    validate_cron,
    validate_timezone,
)

UTC = timezone.utc
NEW_YORK = "America/New_York"
BERLIN = "Europe/Berlin"
MINUTE = timedelta(minutes=1)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


def walls(ticks: list[datetime], tz: str) -> list[str]:
    """Ticks as local wall time plus zone abbreviation: "01:00 EST" tells the two 01:00s apart."""
    return [t.astimezone(ZoneInfo(tz)).strftime("%H:%M %Z") for t in ticks]


def assert_strictly_increasing_utc(ticks: list[datetime]) -> None:
    assert all(t.tzinfo is UTC for t in ticks)
    assert all(a < b for a, b in zip(ticks, ticks[1:], strict=False))


# --- plain schedules ------------------------------------------------------------------------------


def test_every_minute_fires_on_each_minute_strictly_after_the_given_instant() -> None:
    ticks = ticks_between("* * * * *", "UTC", utc(2026, 5, 4, 10, 0, 30), utc(2026, 5, 4, 10, 5))
    assert ticks == [utc(2026, 5, 4, 10, m) for m in range(1, 6)]
    assert next_tick("* * * * *", "UTC", utc(2026, 5, 4, 10, 0)) == utc(2026, 5, 4, 10, 1)
    assert next_tick("* * * * *", "UTC", utc(2026, 5, 4, 10, 0, 59, 999999)) == utc(2026, 5, 4, 10, 1)


def test_aware_inputs_in_any_zone_give_utc_outputs() -> None:
    after = datetime(2026, 5, 4, 12, 0, tzinfo=ZoneInfo("Asia/Tokyo"))  # 03:00 UTC
    tick = next_tick("0 * * * *", "UTC", after)
    assert tick == utc(2026, 5, 4, 4, 0) and tick.tzinfo is UTC


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="after must be a timezone-aware datetime"):
        next_tick("* * * * *", "UTC", datetime(2026, 1, 1))


def test_schedule_follows_local_wall_time_not_utc() -> None:
    # 09:00 New York is 14:00 UTC in winter and 13:00 UTC in summer.
    assert next_tick("0 9 * * *", NEW_YORK, utc(2026, 1, 10)) == utc(2026, 1, 10, 14, 0)
    assert next_tick("0 9 * * *", NEW_YORK, utc(2026, 7, 10)) == utc(2026, 7, 10, 13, 0)


def test_day_fields_are_matched_on_the_local_date() -> None:
    # Monday 00:30 in Berlin is still Sunday in UTC.
    tick = next_tick("30 0 * * mon", BERLIN, utc(2026, 6, 1))
    assert tick == utc(2026, 6, 7, 22, 30)
    assert tick.astimezone(ZoneInfo(BERLIN)).strftime("%a %H:%M") == "Mon 00:30"


def test_preview_lists_the_next_ticks_and_bounds_count() -> None:
    assert preview("@daily", "UTC", utc(2026, 1, 1), 3) == [utc(2026, 1, 2), utc(2026, 1, 3), utc(2026, 1, 4)]
    assert preview("@daily", "UTC", utc(2026, 1, 1), 0) == []
    for bad in (-1, MAX_PREVIEW_COUNT + 1):
        with pytest.raises(ValueError, match="count must be between"):
            preview("@daily", "UTC", utc(2026, 1, 1), bad)


def test_ticks_between_honours_limit() -> None:
    assert len(ticks_between("* * * * *", "UTC", utc(2026, 1, 1), utc(2026, 1, 2), limit=7)) == 7


# --- DST: spring forward (a gap fires at its end) -------------------------------------------------


def test_hourly_across_new_york_spring_forward_fires_at_3_once() -> None:
    # 2026-03-08: 02:00 EST jumps to 03:00 EDT. The 02:00 tick moves to the end of the gap, 03:00,
    # which is also the 03:00 tick: one tick, no gap in the hourly rhythm of real time.
    ticks = ticks_between("0 * * * *", NEW_YORK, utc(2026, 3, 8, 4, 30), utc(2026, 3, 8, 8, 30))
    assert walls(ticks, NEW_YORK) == ["00:00 EST", "01:00 EST", "03:00 EDT", "04:00 EDT"]
    assert ticks == [utc(2026, 3, 8, 5), utc(2026, 3, 8, 6), utc(2026, 3, 8, 7), utc(2026, 3, 8, 8)]


def test_hourly_across_berlin_spring_forward_fires_at_3_once() -> None:
    # 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00 UTC).
    ticks = ticks_between("0 * * * *", BERLIN, utc(2026, 3, 28, 23, 30), utc(2026, 3, 29, 2, 30))
    assert walls(ticks, BERLIN) == ["01:00 CET", "03:00 CEST", "04:00 CEST"]


@pytest.mark.parametrize(
    ("tz", "day", "gap_end_utc"),
    [(NEW_YORK, 8, utc(2026, 3, 8, 7, 0)), (BERLIN, 29, utc(2026, 3, 29, 1, 0))],
)
def test_daily_0230_on_spring_forward_day_fires_at_0300_local_once(
    tz: str, day: int, gap_end_utc: datetime
) -> None:
    ticks = ticks_between("30 2 * * *", tz, utc(2026, 3, day - 1, 12), utc(2026, 3, day + 1, 12))
    assert ticks[0] == gap_end_utc
    assert [t.astimezone(ZoneInfo(tz)).strftime("%d %H:%M") for t in ticks] == [
        f"{day:02d} 03:00",
        f"{day + 1:02d} 02:30",
    ]


def test_quarter_hours_in_the_gap_collapse_into_one_tick_at_its_end() -> None:
    # 02:00, 02:15, 02:30 and 02:45 do not exist on 2026-03-08 in New York: all fire as 03:00.
    ticks = ticks_between("*/15 * * * *", NEW_YORK, utc(2026, 3, 8, 6, 30), utc(2026, 3, 8, 7, 30))
    assert walls(ticks, NEW_YORK) == ["01:45 EST", "03:00 EDT", "03:15 EDT", "03:30 EDT"]
    gap_end = utc(2026, 3, 8, 7, 0)
    assert next_tick("*/15 * * * *", NEW_YORK, utc(2026, 3, 8, 6, 45)) == gap_end
    assert next_tick("*/15 * * * *", NEW_YORK, gap_end) == gap_end + 15 * MINUTE


# --- DST: fall back (a repeated wall time: both passes for every-hour crons, else once, later) ----
#
# The expected sequences below are written out by hand from the zones' published rules and from what
# cron and Dagster do, not produced by this module:
# - cron(8) ("Special considerations exist when the clock is changed by less than 3 hours..."): jobs
#   with a wildcard in the hour field (and @hourly) run on the new time immediately, so they run in
#   both passes of a repeated hour; a job at a fixed time runs once (cron: in the first pass).
# - Dagster (dagster/_utils/schedules.py, "repeats every hour" when the hour field is `*`): an
#   every-hour schedule fires both the pre- and post-transition times; any other cron fires once,
#   at the post-transition (later) instant. dagd follows Dagster where the two differ (which pass).
# Zone rules for 2026: New York falls back 02:00 EDT -> 01:00 EST on Nov 1 (06:00 UTC); Berlin
# 03:00 CEST -> 02:00 CET on Oct 25 (01:00 UTC); Lord Howe 02:00 +11 -> 01:30 +10:30 on Apr 5
# (Apr 4 15:00 UTC), repeating only 01:30-01:59; Santiago 00:00 -03 -> 23:00 -04 on Apr 5 (03:00
# UTC), repeating 23:00-23:59 of Apr 4, across the local midnight.

LORD_HOWE = "Australia/Lord_Howe"
SANTIAGO = "America/Santiago"


@pytest.mark.parametrize(
    ("cron", "tz", "start", "end", "expected"),
    [
        # An hourly cron fires every real hour: 01:00 EDT (05:00 UTC) and 01:00 EST (06:00 UTC).
        (
            "0 * * * *",
            NEW_YORK,
            utc(2026, 11, 1, 3, 30),
            utc(2026, 11, 1, 8, 30),
            [utc(2026, 11, 1, h) for h in (4, 5, 6, 7, 8)],
        ),
        (
            "@hourly",
            NEW_YORK,
            utc(2026, 11, 1, 3, 30),
            utc(2026, 11, 1, 8, 30),
            [utc(2026, 11, 1, h) for h in (4, 5, 6, 7, 8)],
        ),
        # Every 15 minutes of real time, no gap: 04:45 UTC is 00:45 EDT, 07:00 UTC is 02:00 EST.
        (
            "*/15 * * * *",
            NEW_YORK,
            utc(2026, 11, 1, 4, 30),
            utc(2026, 11, 1, 7, 0),
            [utc(2026, 11, 1, 4, 45) + k * 15 * MINUTE for k in range(10)],
        ),
        # 02:00 CEST (00:00 UTC) and 02:00 CET (01:00 UTC) both fire.
        (
            "0 * * * *",
            BERLIN,
            utc(2026, 10, 24, 22, 30),
            utc(2026, 10, 25, 3, 30),
            [
                utc(2026, 10, 24, 23),
                utc(2026, 10, 25, 0),
                utc(2026, 10, 25, 1),
                utc(2026, 10, 25, 2),
                utc(2026, 10, 25, 3),
            ],
        ),
        # Lord Howe repeats only 01:30-01:59: :00 never repeats, so hourly at :00 has a 90-minute
        # gap (01:00 +11 = 14:00 UTC, 02:00 +10:30 = 15:30 UTC) and fires no extra tick.
        (
            "0 * * * *",
            LORD_HOWE,
            utc(2026, 4, 4, 12, 30),
            utc(2026, 4, 4, 17, 0),
            [utc(2026, 4, 4, 13), utc(2026, 4, 4, 14), utc(2026, 4, 4, 15, 30), utc(2026, 4, 4, 16, 30)],
        ),
        # 01:30 happens at 14:30 UTC (+11) and 15:00 UTC (+10:30): both fire.
        (
            "30 * * * *",
            LORD_HOWE,
            utc(2026, 4, 4, 13, 0),
            utc(2026, 4, 4, 16, 30),
            [utc(2026, 4, 4, 13, 30), utc(2026, 4, 4, 14, 30), utc(2026, 4, 4, 15), utc(2026, 4, 4, 16)],
        ),
        (
            "*/30 * * * *",
            LORD_HOWE,
            utc(2026, 4, 4, 13, 50),
            utc(2026, 4, 4, 16, 0),
            [
                utc(2026, 4, 4, 14),
                utc(2026, 4, 4, 14, 30),
                utc(2026, 4, 4, 15),
                utc(2026, 4, 4, 15, 30),
                utc(2026, 4, 4, 16),
            ],
        ),
        # The repeated hour is 23:00 of the day before: 23:00 -03 (02:00 UTC) and 23:00 -04 (03:00 UTC).
        (
            "0 * * * *",
            SANTIAGO,
            utc(2026, 4, 5, 0, 30),
            utc(2026, 4, 5, 4, 30),
            [utc(2026, 4, 5, h) for h in (1, 2, 3, 4)],
        ),
    ],
)
def test_every_hour_cron_fires_in_both_passes_of_the_repeated_hour(
    cron: str, tz: str, start: datetime, end: datetime, expected: list[datetime]
) -> None:
    assert ticks_between(cron, tz, start, end) == expected
    assert preview(cron, tz, start, len(expected)) == expected
    assert [next_tick(cron, tz, t) for t in [start, *expected[:-1]]] == expected
    # Catch-up walks backward from `now` and counts a day at a time: the same ticks.
    plan = plan_catch_up(cron, tz, last_tick=start, now=end, max_catchup_runs=len(expected))
    assert plan.to_run == expected and plan.skipped_count == 0
    plan = plan_catch_up(cron, tz, last_tick=start, now=end)
    assert plan.to_run == expected[-1:] and plan.skipped == expected[:-1]


def test_hourly_across_new_york_fall_back_names_both_one_oclocks() -> None:
    ticks = ticks_between("0 * * * *", NEW_YORK, utc(2026, 11, 1, 3, 30), utc(2026, 11, 1, 8, 30))
    assert walls(ticks, NEW_YORK) == ["00:00 EDT", "01:00 EDT", "01:00 EST", "02:00 EST", "03:00 EST"]


def test_next_tick_from_inside_the_first_pass_of_the_repeated_hour() -> None:
    # 05:30 UTC is 01:30 EDT, the first pass: the next hourly tick is 01:00 EST (06:00 UTC).
    assert next_tick("0 * * * *", NEW_YORK, utc(2026, 11, 1, 5, 30)) == utc(2026, 11, 1, 6)
    assert next_tick("30 1 * * *", NEW_YORK, utc(2026, 11, 1, 5, 0)) == utc(2026, 11, 1, 6, 30)
    # The first pass of 01:30 is 05:30 UTC; a fixed-hour cron does not fire then.
    assert next_tick("30 1 * * *", NEW_YORK, utc(2026, 11, 1, 5, 30)) == utc(2026, 11, 1, 6, 30)


@pytest.mark.parametrize(
    ("tz", "cron", "start", "end", "expected"),
    [
        (BERLIN, "30 2 * * *", utc(2026, 10, 24, 12), utc(2026, 10, 25, 12), [utc(2026, 10, 25, 1, 30)]),
        (NEW_YORK, "30 1 * * *", utc(2026, 10, 31, 12), utc(2026, 11, 1, 12), [utc(2026, 11, 1, 6, 30)]),
        (LORD_HOWE, "45 1 * * *", utc(2026, 4, 4, 0), utc(2026, 4, 5, 0), [utc(2026, 4, 4, 15, 15)]),
        (SANTIAGO, "30 23 * * *", utc(2026, 4, 4, 12), utc(2026, 4, 5, 12), [utc(2026, 4, 5, 3, 30)]),
        # Fixed hours, even several: each repeated wall time fires once, in the later pass.
        (
            NEW_YORK,
            "0 0-2 * * *",
            utc(2026, 11, 1, 3),
            utc(2026, 11, 1, 8),
            [utc(2026, 11, 1, 4), utc(2026, 11, 1, 6), utc(2026, 11, 1, 7)],
        ),
        (
            NEW_YORK,
            "*/30 1 * * *",
            utc(2026, 11, 1, 3),
            utc(2026, 11, 1, 8),
            [utc(2026, 11, 1, 6), utc(2026, 11, 1, 6, 30)],
        ),
    ],
)
def test_fixed_hour_cron_fires_once_at_the_later_instant_of_the_repeated_hour(
    tz: str, cron: str, start: datetime, end: datetime, expected: list[datetime]
) -> None:
    assert ticks_between(cron, tz, start, end) == expected
    plan = plan_catch_up(cron, tz, last_tick=start, now=end, max_catchup_runs=len(expected))
    assert plan.to_run == expected and plan.skipped_count == 0


def test_lord_howe_spring_forward_collapses_its_30_minute_gap() -> None:
    # 2026-10-04: 02:00 +10:30 (15:30 UTC Oct 3) jumps to 02:30 +11; 02:00 and 02:15 fire at 02:30.
    ticks = ticks_between("*/15 * * * *", LORD_HOWE, utc(2026, 10, 3, 15, 0), utc(2026, 10, 3, 16, 0))
    assert ticks == [
        utc(2026, 10, 3, 15, 15),
        utc(2026, 10, 3, 15, 30),
        utc(2026, 10, 3, 15, 45),
        utc(2026, 10, 3, 16),
    ]


# --- catch-up -------------------------------------------------------------------------------------


def test_catch_up_after_two_days_runs_only_the_latest_missed_tick() -> None:
    plan = plan_catch_up("0 * * * *", "UTC", last_tick=utc(2026, 6, 1, 0), now=utc(2026, 6, 3, 0, 30))
    assert plan.to_run == [utc(2026, 6, 3, 0)]
    assert plan.skipped_count == 47 and len(plan.skipped) == 47 and not plan.skipped_truncated
    assert plan.skipped[0] == utc(2026, 6, 1, 1) and plan.skipped[-1] == utc(2026, 6, 2, 23)
    assert_strictly_increasing_utc(plan.skipped + plan.to_run)


def test_catch_up_with_max_catchup_runs_5_runs_the_latest_five() -> None:
    plan = plan_catch_up(
        "0 * * * *", NEW_YORK, last_tick=utc(2026, 6, 1, 0), now=utc(2026, 6, 3, 0, 30), max_catchup_runs=5
    )
    assert plan.to_run == [utc(2026, 6, 2, h) for h in range(20, 24)] + [utc(2026, 6, 3, 0)]
    assert plan.skipped_count == 43 and len(plan.skipped) == 43
    assert plan.skipped[-1] == utc(2026, 6, 2, 19)


def test_catch_up_with_fewer_due_ticks_than_max_runs_runs_them_all() -> None:
    plan = plan_catch_up("0 * * * *", "UTC", utc(2026, 6, 1, 0), utc(2026, 6, 1, 2, 10), max_catchup_runs=5)
    assert plan == CatchUpPlan(to_run=[utc(2026, 6, 1, 1), utc(2026, 6, 1, 2)], skipped=[], skipped_count=0)


def test_catch_up_is_empty_when_nothing_is_due() -> None:
    assert plan_catch_up("0 * * * *", "UTC", utc(2026, 6, 1, 1), utc(2026, 6, 1, 1, 59)).to_run == []
    # A last tick in the future (clock stepped back) is not an error; nothing is due.
    assert plan_catch_up("0 * * * *", "UTC", utc(2026, 6, 2), utc(2026, 6, 1)) == CatchUpPlan([], [], 0)


def test_catch_up_includes_a_tick_due_exactly_now() -> None:
    assert plan_catch_up("0 * * * *", "UTC", utc(2026, 6, 1, 0), utc(2026, 6, 1, 1)).to_run == [
        utc(2026, 6, 1, 1)
    ]


def test_catch_up_over_a_year_of_every_minute_is_bounded_and_counted_exactly() -> None:
    began = perf.perf_counter()
    plan = plan_catch_up("* * * * *", "UTC", last_tick=utc(2025, 6, 1), now=utc(2026, 6, 1))
    assert perf.perf_counter() - began < 1.0
    assert plan.to_run == [utc(2026, 6, 1)]
    assert plan.skipped_count == 365 * 24 * 60 - 1
    assert len(plan.skipped) == SKIPPED_LIST_LIMIT and plan.skipped_truncated
    assert plan.skipped[-1] == utc(2026, 6, 1) - MINUTE  # the most recent skipped ticks are listed
    assert_strictly_increasing_utc(plan.skipped + plan.to_run)


def test_catch_up_count_over_a_year_in_new_york_is_every_real_minute() -> None:
    # Every UTC minute of the year is a tick: the gap's wall times do not exist (no instant is
    # lost), and the repeated hour fires in both passes. A fixed-hour cron loses the first pass.
    plan = plan_catch_up("* * * * *", NEW_YORK, last_tick=utc(2025, 6, 1), now=utc(2026, 6, 1))
    assert plan.skipped_count + len(plan.to_run) == 365 * 24 * 60
    plan = plan_catch_up("* 1 * * *", NEW_YORK, last_tick=utc(2025, 6, 1), now=utc(2026, 6, 1))
    assert plan.skipped_count + len(plan.to_run) == 365 * 60


def test_newly_started_schedule_does_not_fire_for_the_past() -> None:
    now = utc(2026, 6, 1, 12, 0, 30)
    assert plan_catch_up("* * * * *", "UTC", last_tick=None, now=now) == CatchUpPlan([], [], 0)
    started = utc(2026, 6, 1, 10, 0, 30)
    plan = plan_catch_up("0 * * * *", "UTC", last_tick=None, now=now, start=started)
    assert plan.to_run == [utc(2026, 6, 1, 12)] and plan.skipped == [utc(2026, 6, 1, 11)]


def test_ticks_before_a_restart_are_not_missed_ticks() -> None:
    # Last tick on June 1, stopped, started again on June 3: the days in between are not due.
    plan = plan_catch_up(
        "0 * * * *",
        "UTC",
        last_tick=utc(2026, 6, 1),
        now=utc(2026, 6, 3, 2, 30),
        start=utc(2026, 6, 3, 0, 30),
    )
    assert plan.to_run == [utc(2026, 6, 3, 2)] and plan.skipped == [utc(2026, 6, 3, 1)]


@pytest.mark.parametrize("bad", [0, -1, MAX_CATCHUP_RUNS + 1, True, 1.5])
def test_max_catchup_runs_must_be_a_positive_bounded_int(bad: object) -> None:
    with pytest.raises(ValueError, match="max_catchup_runs must be between 1 and"):
        plan_catch_up("* * * * *", "UTC", None, utc(2026, 1, 1), max_catchup_runs=bad)  # type: ignore[arg-type]


# --- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expr",
    ["* * * * *", "*/5 9-17 * * mon-fri", "0 0 L * *", "0 0 * * 1#2", "0 12 15W * *", "0 0 ? * 7"]
    + ["@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually", "@DAILY"],
)
def test_validate_cron_accepts_five_field_crons_and_aliases(expr: str) -> None:
    validate_cron(expr)


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("61 * * * *", "cron schedule '61 * * * *': minute must be 0-59"),
        ("* 24 * * *", "cron schedule '* 24 * * *': hour must be 0-23"),
        ("* * 0 * *", "cron schedule '* * 0 * *': day-of-month must be 1-31"),
        ("* * * 13 *", "cron schedule '* * * 13 *': month must be 1-12 or jan-dec"),
        ("* * * * 8", "cron schedule '* * * * 8': day-of-week must be 0-7 or sun-sat"),
        ("-1 * * * *", "cron schedule '-1 * * * *': minute must be 0-59"),
        ("*/0 * * * *", "cron schedule '*/0 * * * *': invalid minute field '*/0': a step must be"),
        ("* * * foo *", "cron schedule '* * * foo *': invalid month field 'foo'"),
        (
            "0 0 * * * *",
            "cron schedule '0 0 * * * *': 6 fields given, but seconds and years are not supported",
        ),
        ("0 0 * * * * 2026", "7 fields given"),
        (
            "garbage",
            "cron schedule 'garbage': expected 5 fields (minute hour day-of-month month day-of-week), got 1",
        ),
        ("", "expected 5 fields"),
        ("@reboot", "cron schedule '@reboot': unknown alias"),
        ("H * * * *", "hashed/random values (H, R) are not supported in minute"),
        ("0 R * * *", "hashed/random values (H, R) are not supported in hour"),
        ("0 0 30 2 *", "cron schedule '0 0 30 2 *': never fires"),
    ],
)
def test_validate_cron_names_the_problem_in_one_line(expr: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        validate_cron(expr)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_every_entry_point_validates_its_cron_and_zone() -> None:
    with pytest.raises(ValueError, match="minute must be 0-59"):
        next_tick("61 * * * *", "UTC", utc(2026, 1, 1))
    with pytest.raises(ValueError, match="unknown timezone 'Mars/Base'"):
        plan_catch_up("* * * * *", "Mars/Base", None, utc(2026, 1, 1))


@pytest.mark.parametrize(("expr", "expected"), [("0 3-3 * * *", "0 3 * * *"), ("5-5/2 * * * *", "5 * * * *")])
def test_a_single_value_range_means_that_value_as_in_cron(expr: str, expected: str) -> None:
    # croniter reads "3-3" as the whole cycle ("Jan-Jan" = every month); cron reads it as 3.
    after = utc(2026, 4, 1)
    assert preview(expr, "UTC", after, 5) == preview(expected, "UTC", after, 5)
    assert preview("0 0 * jan-jan *", "UTC", after, 1) == [utc(2027, 1, 1)]


@pytest.mark.parametrize("name", ["Mars/Base", "", "America", "../../etc/passwd", "/etc/localtime"])
def test_validate_timezone_refuses_unknown_zones(name: str) -> None:
    with pytest.raises(ValueError) as info:
        validate_timezone(name)
    assert str(info.value) == f"unknown timezone {name!r}"


def test_validate_timezone_returns_the_zone() -> None:
    assert validate_timezone(BERLIN) == ZoneInfo(BERLIN)


# --- properties -----------------------------------------------------------------------------------

ZONES = ["UTC", "Asia/Kolkata", NEW_YORK, BERLIN, "Australia/Lord_Howe"]  # Lord Howe shifts by 30 min


@cache
def transitions_2026(tz: str) -> tuple[datetime, ...]:
    """UTC instants in 2026 where the zone's offset changes (found by walking, hour by hour)."""
    zone, found = ZoneInfo(tz), []
    instant = utc(2026, 1, 1)
    while instant.year == 2026:
        if (instant + timedelta(hours=1)).astimezone(zone).utcoffset() != instant.astimezone(
            zone
        ).utcoffset():
            found.append(instant)
        instant += timedelta(hours=1)
    return tuple(found)


@st.composite
def cron_field(draw: st.DrawFn, high: int) -> tuple[str, frozenset[int]]:
    """A minute (high=59) or hour (high=23) field and the values it allows."""
    kind = draw(st.sampled_from(["*", "step", "value", "list", "range", "range-step"]))
    values = st.integers(0, high)
    if kind == "*":
        return "*", frozenset(range(high + 1))
    if kind == "step":
        step = draw(st.integers(1, high))
        return f"*/{step}", frozenset(range(0, high + 1, step))
    if kind == "value":
        value = draw(values)
        return str(value), frozenset([value])
    if kind == "list":
        chosen = sorted(draw(st.sets(values, min_size=2, max_size=4)))
        return ",".join(map(str, chosen)), frozenset(chosen)
    low, top = sorted(draw(st.tuples(values, values)))
    step = draw(st.integers(1, 5)) if kind == "range-step" else 1
    text = f"{low}-{top}" + (f"/{step}" if kind == "range-step" else "")
    return text, frozenset(range(low, top + 1, step))


@st.composite
def schedules(draw: st.DrawFn) -> tuple[str, frozenset[int], frozenset[int], str, datetime]:
    """(cron, minutes, hours, zone, start): starts are anywhere in 2026, or near a DST change."""
    minute, minutes = draw(cron_field(59))
    hour, hours = draw(cron_field(23))
    tz = draw(st.sampled_from(ZONES))
    anywhere = st.integers(0, 364 * 24 * 60 * 60).map(lambda s: utc(2026, 1, 1) + timedelta(seconds=s))
    starts = [anywhere]
    if transitions_2026(tz):
        near = st.sampled_from(transitions_2026(tz))
        offsets = st.integers(-30 * 60 * 60, 6 * 60 * 60).map(lambda s: timedelta(seconds=s))
        starts.append(st.builds(lambda t, d: t + d, near, offsets))
    return f"{minute} {hour} * * *", minutes, hours, tz, draw(st.one_of(starts))


def model_ticks(
    minutes: frozenset[int], hours: frozenset[int], tz: str, start: datetime, end: datetime
) -> list[datetime]:
    """The ticks in (start, end], decided instant by instant (the module decides wall time by wall
    time): an instant is a tick if its wall time matches and this is the wall time's last pass (any
    pass when the hours are all 24), or if it ends a gap that swallowed a matching wall time."""
    zone = ZoneInfo(tz)
    ticks = []
    instant = start.replace(second=0, microsecond=0) + MINUTE
    while instant <= end:
        wall = instant.astimezone(zone).replace(tzinfo=None)
        offset, before = instant.astimezone(zone).utcoffset(), (instant - MINUTE).astimezone(zone).utcoffset()
        assert offset is not None and before is not None
        last_pass = wall.replace(tzinfo=zone, fold=1).astimezone(UTC) == instant
        tick = wall.minute in minutes and wall.hour in hours and (last_pass or len(hours) == 24)
        if not tick and offset > before:  # the clock just jumped forward over [gap_start, wall)
            swallowed = instant.replace(tzinfo=None) + before
            while swallowed < wall and not tick:
                tick = swallowed.minute in minutes and swallowed.hour in hours
                swallowed += MINUTE
        if tick:
            ticks.append(instant)
        instant += MINUTE
    return ticks


@settings(max_examples=150, deadline=None)
@given(schedules(), st.integers(1, 48))
def test_ticks_are_increasing_utc_on_matching_or_gap_end_wall_times(
    schedule: tuple[str, frozenset[int], frozenset[int], str, datetime], hours_ahead: int
) -> None:
    cron, minutes, hours, tz, start = schedule
    zone = ZoneInfo(tz)
    ticks = ticks_between(cron, tz, start, start + timedelta(hours=hours_ahead))
    assert_strictly_increasing_utc(ticks)
    assert all(start < t <= start + timedelta(hours=hours_ahead) for t in ticks)
    local = [t.astimezone(zone) for t in ticks]
    for tick, wall in zip(ticks, local, strict=True):
        if wall.minute in minutes and wall.hour in hours:
            continue
        # Moved by a gap: the tick is the gap's end, i.e. the offset changed just then.
        before, offset = (tick - timedelta(microseconds=1)).astimezone(zone).utcoffset(), wall.utcoffset()
        assert before is not None and offset is not None and offset > before, (cron, tz, tick)
    if len(hours) < 24:
        assert len({w.replace(tzinfo=None) for w in local}) == len(local), "two ticks share a wall time"


@settings(max_examples=120, deadline=None)
@given(schedules(), st.integers(1, 40))
def test_ticks_match_a_minute_by_minute_model(
    schedule: tuple[str, frozenset[int], frozenset[int], str, datetime], hours_ahead: int
) -> None:
    cron, minutes, hours, tz, start = schedule
    end = start + timedelta(hours=hours_ahead)
    ticks = ticks_between(cron, tz, start, end)
    assert ticks == model_ticks(minutes, hours, tz, start, end)
    # Walking one tick at a time gives the same sequence.
    if ticks:
        assert next_tick(cron, tz, start) == ticks[0]
        assert [next_tick(cron, tz, t) for t in ticks[:-1]] == ticks[1:]
        shown = min(len(ticks), MAX_PREVIEW_COUNT)
        assert preview(cron, tz, start, shown) == ticks[:shown]


@settings(max_examples=40, deadline=None)
@given(schedules(), st.integers(1, 40), st.integers(1, 8))
def test_catch_up_splits_exactly_the_due_ticks(
    schedule: tuple[str, frozenset[int], frozenset[int], str, datetime], days: int, runs: int
) -> None:
    cron, _, _, tz, start = schedule
    now = start + timedelta(days=days)
    due = ticks_between(cron, tz, start, now)
    plan = plan_catch_up(cron, tz, last_tick=start, now=now, max_catchup_runs=runs)
    assert plan.to_run == due[-runs:]
    assert plan.skipped == due[:-runs][-SKIPPED_LIST_LIMIT:]
    assert plan.skipped_count == max(0, len(due) - runs)
