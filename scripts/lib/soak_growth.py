"""The soak's verdict on one resource series: does it grow without bound?

A pure function of the samples, so it is unit-tested (``tests/unit/test_soak_growth.py``) and the
same rule judges every process and every resource (RSS, open file descriptors).

The rule:

1. Warm-up is ignored: only samples in the second half of the run are judged (caches fill,
   pools open connections, the fork server forks its first workers, all early on).
2. The slope is the Theil-Sen estimator (the median of the slopes between every pair of samples),
   which one outlier or one step cannot move: a single spike or a one-time jump (a pool growing
   by one connection) leaves most pairs flat.
3. A series grows without bound when that slope exceeds ``max_slope_per_hour`` and the rise it
   implies over the judged window exceeds ``min_rise`` (so a short run's noise is not a leak),
   and most pairs agree (more rising pairs than falling ones).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

MIN_POINTS = 6
MAX_PAIRS = 20_000


@dataclass(frozen=True)
class Growth:
    grows: bool
    slope_per_hour: float  # units of the series per hour, over the judged window
    rise: float  # slope x judged window: how much it would have grown over that window
    points: int  # samples judged
    reason: str


def theil_sen_slope(times: Sequence[float], values: Sequence[float]) -> tuple[float, float]:
    """(median pairwise slope, share of rising minus falling pairs in [-1, 1]) of the series."""
    n = len(times)
    step = max(1, (n * (n - 1) // 2) // MAX_PAIRS)  # thin out pairs of very long series
    slopes: list[float] = []
    index = 0
    for i in range(n):
        for j in range(i + 1, n):
            index += 1
            if index % step or times[j] == times[i]:
                continue
            slopes.append((values[j] - values[i]) / (times[j] - times[i]))
    if not slopes:
        return 0.0, 0.0
    agreement = (sum(s > 0 for s in slopes) - sum(s < 0 for s in slopes)) / len(slopes)
    return statistics.median(slopes), agreement


def detect_growth(
    times_s: Sequence[float],
    values: Sequence[float],
    *,
    max_slope_per_hour: float,
    min_rise: float,
    judged_fraction: float = 0.5,
) -> Growth:
    """Judge one series: ``times_s`` in seconds (increasing), ``values`` in the resource's unit."""
    if len(times_s) != len(values):
        raise ValueError("times and values differ in length")
    if not times_s:
        return Growth(False, 0.0, 0.0, 0, "no samples")
    start = times_s[0] + (times_s[-1] - times_s[0]) * (1 - judged_fraction)
    judged = [(t, v) for t, v in zip(times_s, values, strict=True) if t >= start]
    if len(judged) < MIN_POINTS:
        return Growth(
            False, 0.0, 0.0, len(judged), f"too few samples to judge ({len(judged)} < {MIN_POINTS})"
        )
    times = [t for t, _ in judged]
    slope_s, agreement = theil_sen_slope(times, [v for _, v in judged])
    slope_h = slope_s * 3600
    rise = slope_s * (times[-1] - times[0])
    if slope_h <= max_slope_per_hour:
        return Growth(
            False, slope_h, rise, len(judged), f"slope {slope_h:.3g}/h within {max_slope_per_hour:g}/h"
        )
    if rise <= min_rise:
        return Growth(
            False, slope_h, rise, len(judged), f"rise {rise:.3g} within the noise floor {min_rise:g}"
        )
    if agreement <= 0:
        return Growth(False, slope_h, rise, len(judged), "as many pairs fall as rise")
    return Growth(
        True,
        slope_h,
        rise,
        len(judged),
        f"grows {slope_h:.3g}/h (limit {max_slope_per_hour:g}/h), +{rise:.3g}",
    )
