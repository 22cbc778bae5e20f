"""The worker host's consumer watchdog's decision (dagd/runs/celery/watchdog.py), on a fake clock;
the real thing on both brokers is in tests/e2e/test_celery_fleet_e2e.py."""

from __future__ import annotations

from typing import Any

from dagd.runs.celery.watchdog import EX_TEMPFAIL, ConsumerWatchdog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Timer:
    def __init__(self) -> None:
        self.calls: list[Any] = []

    def call_after(self, secs: float, fun: Any, priority: int = 0) -> None:
        self.calls.append(fun)


class Consumer:
    def __init__(self) -> None:
        self.timer = Timer()


def make(free: bool = True) -> tuple[ConsumerWatchdog, Clock, list[int], Consumer]:
    clock = Clock()
    exits: list[int] = []
    watchdog = ConsumerWatchdog(
        "memory://", ["q"], free_slot=lambda: free, exit_host=exits.append, stall_seconds=10, clock=clock
    )
    consumer = Consumer()
    watchdog.consumer_started(consumer)
    return watchdog, clock, exits, consumer


def test_waiting_messages_and_a_free_slot_but_nothing_received_restarts_then_exits_75() -> None:
    watchdog, clock, exits, consumer = make()
    assert watchdog.check(3) == "suspect"
    clock.now += 9.9
    assert watchdog.check(3) == "suspect"
    clock.now += 0.2
    assert watchdog.check(3) == "restart"
    assert len(consumer.timer.calls) == 1 and watchdog.restarts == 1
    clock.now += 3  # the consumer's loop runs the restart at its next wake-up
    watchdog.consumer_started(consumer)
    clock.now += 9.9
    assert watchdog.check(3) == "suspect"  # judged from the restart, not from the request
    clock.now += 0.2
    assert watchdog.check(3) == "exit"
    assert exits == [EX_TEMPFAIL]


def test_a_restart_the_consumer_s_loop_never_runs_exits_75_after_the_grace() -> None:
    """Regression: the exit was decided stall_seconds after the request, while the loop had not
    yet woken up to run it (seen 2.5 s late): a restart that would have helped was cut short."""
    watchdog, clock, exits, _ = make()
    watchdog.check(1)
    clock.now += 10.1
    assert watchdog.check(1) == "restart"
    clock.now += 14.8
    assert watchdog.check(1) == "suspect" and exits == []
    clock.now += 0.3
    assert watchdog.check(1) == "exit" and exits == [EX_TEMPFAIL]


def test_a_restart_that_helps_is_forgotten() -> None:
    watchdog, clock, exits, consumer = make()
    watchdog.check(1)
    clock.now += 11
    assert watchdog.check(1) == "restart"
    clock.now += 1
    watchdog.consumer_started(consumer)  # restarted ...
    clock.now += 0.5
    watchdog.received()  # ... and it consumes again
    clock.now += 1
    assert watchdog.check(1) == "suspect"  # progress since: the clock starts again
    clock.now += 10.5
    assert watchdog.check(1) == "restart"  # a second episode restarts again, no exit
    assert exits == []


def test_no_waiting_messages_no_free_slot_or_no_broker_is_never_a_stall() -> None:
    watchdog, clock, exits, _ = make()
    for waiting in (0, None):
        watchdog.check(waiting)
        clock.now += 60
        assert watchdog.check(waiting) == "ok"
    busy, clock, exits, _ = make(free=False)
    busy.check(5)
    clock.now += 60
    assert busy.check(5) == "ok"
    assert exits == []


def test_a_consumer_that_keeps_receiving_is_never_restarted() -> None:
    watchdog, clock, exits, consumer = make()
    for _ in range(30):
        clock.now += 2
        watchdog.received()
        assert watchdog.check(4) == "suspect"
    assert consumer.timer.calls == [] and exits == []
