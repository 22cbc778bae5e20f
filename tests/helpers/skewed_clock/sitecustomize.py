"""A host whose wall clock is off: every Python process started with this directory on PYTHONPATH
and ``DAGD_TEST_CLOCK_OFFSET=SECONDS`` sees ``time.time()`` and ``datetime.now()`` moved by that
many seconds (and so do its children, which inherit both variables). Monotonic clocks are left
alone, as another host's would be.

Used by tests/e2e/test_ha_e2e.py to run a supervisor on a "host" with a skewed clock. Debian's
libfaketime (0.9.10) cannot do it for Python 3.11: with the monotonic clock faked, lock waits with
timeouts (``sem_clockwait``) hang; with it excluded, ``time.sleep`` fails with EINVAL
(``clock_nanosleep`` with ``TIMER_ABSTIME``; libfaketime issues 426, 390 and 469). This fakes only
the wall clock, the one thing a skewed host has wrong.
"""

from __future__ import annotations

import datetime as _datetime
import os
import time as _time

_OFFSET = float(os.environ.get("DAGD_TEST_CLOCK_OFFSET", "0") or 0)

if _OFFSET:
    _real_time, _real_time_ns = _time.time, _time.time_ns

    def _time_skewed() -> float:
        return _real_time() + _OFFSET

    def _time_ns_skewed() -> int:
        return _real_time_ns() + int(_OFFSET * 1e9)

    _time.time = _time_skewed  # type: ignore[assignment]
    _time.time_ns = _time_ns_skewed  # type: ignore[assignment]

    _RealDatetime = _datetime.datetime

    class _SkewedDatetime(_RealDatetime):
        @classmethod
        def now(cls, tz: _datetime.tzinfo | None = None) -> _SkewedDatetime:  # type: ignore[override]
            return cls.fromtimestamp(_time_skewed(), tz)

        @classmethod
        def utcnow(cls) -> _SkewedDatetime:  # type: ignore[override]
            return cls.now(_datetime.timezone.utc).replace(tzinfo=None)

        @classmethod
        def today(cls) -> _SkewedDatetime:  # type: ignore[override]
            return cls.now()

    _datetime.datetime = _SkewedDatetime  # type: ignore[misc]
