"""Which sensors the sensor daemon evaluates on a pass: dagd.daemons.sensor.sensors_due."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dagd.codeserver.protocol import SensorInfo
from dagd.daemons.sensor import sensors_due


def sensor(name: str, interval: float = 30, error: str | None = None) -> SensorInfo:
    return SensorInfo(name=name, job_name="job", minimum_interval_seconds=interval, error=error)


def due(sensors, *, running=None, busy=(), last_started=None, now=100.0, horizon=1.0):
    names = {s.name for s in sensors}
    return sensors_due(
        sensors,
        running=names if running is None else running,
        busy=busy,
        last_started=last_started or {},
        now=now,
        horizon=horizon,
    )


def test_a_running_sensor_never_evaluated_is_due() -> None:
    plan = due([sensor("a"), sensor("b")])
    assert plan.due == ["a", "b"] and plan.running == 2 and plan.next_due == 101.0


def test_a_stopped_sensor_is_neither_due_nor_counted() -> None:
    plan = due([sensor("a"), sensor("b")], running={"b"})
    assert plan.due == ["b"] and plan.running == 1


def test_a_sensor_that_failed_to_load_is_neither_due_nor_counted() -> None:
    plan = due([sensor("a", error="boom"), sensor("b")])
    assert plan.due == ["b"] and plan.running == 1


def test_a_busy_sensor_is_counted_but_not_due_and_sets_no_deadline() -> None:
    plan = due([sensor("a", interval=5)], busy={"a"}, last_started={"a": 99.0})
    assert plan.due == [] and plan.running == 1 and plan.next_due == 101.0


def test_a_sensor_within_its_interval_waits_and_sets_the_next_deadline() -> None:
    plan = due([sensor("a", interval=0.5), sensor("b", interval=30)], last_started={"a": 99.8, "b": 90.0})
    assert plan.due == []
    assert plan.next_due == 99.8 + 0.5  # a's, sooner than the horizon; b's (120) is later


def test_a_sensor_is_due_again_exactly_at_its_interval() -> None:
    assert due([sensor("a", interval=30)], last_started={"a": 70.0}).due == ["a"]
    assert due([sensor("a", interval=30)], last_started={"a": 70.5}).due == []


@given(
    st.lists(
        st.tuples(
            st.floats(min_value=0.01, max_value=100),  # interval
            st.one_of(st.none(), st.floats(min_value=0, max_value=100)),  # last start
            st.booleans(),  # running
            st.booleans(),  # busy
        ),
        max_size=8,
    )
)
def test_due_sensors_are_exactly_the_running_idle_ones_past_their_interval(specs) -> None:
    now = 100.0
    sensors = [sensor(f"s{i}", interval=interval) for i, (interval, *_rest) in enumerate(specs)]
    last = {f"s{i}": start for i, (_, start, _, _) in enumerate(specs) if start is not None}
    running = {f"s{i}" for i, spec in enumerate(specs) if spec[2]}
    busy = {f"s{i}" for i, spec in enumerate(specs) if spec[3]}
    plan = due(sensors, running=running, busy=busy, last_started=last, now=now)
    expected = [
        s.name
        for s in sensors
        if s.name in running
        and s.name not in busy
        and (s.name not in last or now - last[s.name] >= s.minimum_interval_seconds)
    ]
    assert plan.due == expected
    assert plan.running == len(running)
    assert now < plan.next_due <= now + 1.0
