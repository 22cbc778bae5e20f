"""The soak's growth rule (scripts/lib/soak_growth.py): leaks are caught, warm-up and noise are not."""

from __future__ import annotations

import pathlib
import random
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "scripts" / "lib"))

from soak_growth import detect_growth, theil_sen_slope  # noqa: E402

HOUR = 3600.0
MB_LIMITS = {"max_slope_per_hour": 10.0, "min_rise": 2.0}  # the soak's RSS thresholds


def series(minutes: float, every_s: float = 30.0) -> list[float]:
    return [i * every_s for i in range(int(minutes * 60 / every_s) + 1)]


def test_theil_sen_ignores_one_outlier() -> None:
    times = [float(t) for t in range(20)]
    values = [2.0 * t for t in times]
    values[7] = 1_000.0
    slope, agreement = theil_sen_slope(times, values)
    assert slope == pytest.approx(2.0)
    assert agreement > 0.5


def test_flat_noisy_series_does_not_grow() -> None:
    rng = random.Random(1)
    times = series(120)
    values = [80 + rng.uniform(-3, 3) for _ in times]
    assert not detect_growth(times, values, **MB_LIMITS).grows


def test_steady_leak_grows() -> None:
    times = series(120)
    values = [80 + 30 * t / HOUR for t in times]  # +30 MB an hour
    verdict = detect_growth(times, values, **MB_LIMITS)
    assert verdict.grows, verdict
    assert verdict.slope_per_hour == pytest.approx(30, rel=0.01)


def test_noisy_leak_grows() -> None:
    rng = random.Random(2)
    times = series(120)
    values = [80 + 20 * t / HOUR + rng.uniform(-4, 4) for t in times]
    assert detect_growth(times, values, **MB_LIMITS).grows


def test_warm_up_in_the_first_half_is_ignored() -> None:
    # Climbs quickly for 20 minutes (imports, pools, caches), then flat: not a leak.
    times = series(120)
    values = [60 + min(t, 1200) / 1200 * 40 for t in times]
    verdict = detect_growth(times, values, **MB_LIMITS)
    assert not verdict.grows, verdict


def test_one_step_in_the_judged_half_is_not_a_leak() -> None:
    # A pool opening one more connection (one more fd) late in the run.
    times = series(120)
    values = [30.0 if t < 100 * 60 else 31.0 for t in times]
    assert not detect_growth(times, values, max_slope_per_hour=5, min_rise=2).grows


def test_growth_too_small_to_matter_over_a_short_run() -> None:
    # 5 minutes at 30 s: +1 MB over the judged half is above 10 MB/h but under the noise floor.
    times = series(5)
    values = [80 + 24 * t / HOUR for t in times]
    verdict = detect_growth(times, values, **MB_LIMITS)
    assert verdict.slope_per_hour > 10 and not verdict.grows, verdict


def test_slow_growth_under_the_limit_passes() -> None:
    times = series(240)
    values = [80 + 5 * t / HOUR for t in times]
    assert not detect_growth(times, values, **MB_LIMITS).grows


def test_too_few_samples_are_not_judged() -> None:
    verdict = detect_growth([0.0, 30.0, 60.0], [1.0, 50.0, 100.0], **MB_LIMITS)
    assert not verdict.grows and "too few" in verdict.reason


def test_lengths_must_match() -> None:
    with pytest.raises(ValueError):
        detect_growth([0.0, 1.0], [1.0], **MB_LIMITS)
