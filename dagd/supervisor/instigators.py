"""Schedules and sensors as the control plane shows and changes them.

Definitions come from the code servers' snapshots; state (running or not, cursor) and ticks from
storage. Starting a schedule persists RUNNING and the time it started, so it never fires for the
past; stopping persists STOPPED. Both survive restarts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from dagd.codeserver.protocol import ScheduleInfo, SensorInfo
from dagd.errors import InvalidArgument, NotFound
from dagd.instance.instance import Instance
from dagd.scheduling.ticks import next_tick, preview
from dagd.storage.instigators import RUNNING, STOPPED, InstigatorState, Tick
from dagd.supervisor.code_locations import CodeLocations
from dagd.timefmt import utcnow

KINDS = ("schedule", "sensor")
MAX_TICKS = 1000
MAX_PREVIEW = 1000


@dataclass(frozen=True)
class InstigatorView:
    kind: str
    name: str
    location: str
    definition: ScheduleInfo | SensorInfo
    state: InstigatorState | None
    last_tick: Tick | None
    next_tick_at: datetime | None

    @property
    def status(self) -> str:
        if self.state is not None:
            return self.state.status
        return self.definition.default_status


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise InvalidArgument(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return kind


class Instigators:
    def __init__(self, instance: Instance, locations: CodeLocations) -> None:
        self.instance = instance
        self.locations = locations
        # Called with the kind after a start/stop/cursor change, to wake the daemon that acts on it.
        self.on_change: Callable[[str], None] | None = None

    def _changed(self, kind: str) -> None:
        if self.on_change is not None:
            self.on_change(kind)

    def _definitions(self, kind: str) -> dict[str, tuple[str, ScheduleInfo | SensorInfo]]:
        out: dict[str, tuple[str, ScheduleInfo | SensorInfo]] = {}
        for location, snap in self.locations.snapshots().items():
            if snap is None:
                continue
            items: list[ScheduleInfo | SensorInfo] = list(
                snap.schedules if kind == "schedule" else snap.sensors
            )
            for item in items:
                out.setdefault(item.name, (location, item))
        return out

    def _find(self, kind: str, name: str) -> tuple[str, ScheduleInfo | SensorInfo]:
        found = self._definitions(check_kind(kind)).get(name)
        if found is None:
            known = ", ".join(sorted(self._definitions(kind))) or "none"
            raise NotFound(f"no {kind} named {name!r} (known: {known})")
        return found

    def _view(
        self, kind: str, name: str, location: str, definition: ScheduleInfo | SensorInfo
    ) -> InstigatorView:
        store = self.instance.storage.instigators
        state = store.states(kind).get(name)
        ticks = store.ticks(kind, name, limit=1)
        view = InstigatorView(kind, name, location, definition, state, ticks[0] if ticks else None, None)
        if isinstance(definition, ScheduleInfo) and not definition.error and view.status == RUNNING:
            upcoming = next_tick(definition.cron_schedule, definition.execution_timezone, utcnow())
            view = InstigatorView(kind, name, location, definition, state, view.last_tick, upcoming)
        return view

    def list_all(self, kind: str) -> list[InstigatorView]:
        return [
            self._view(kind, name, loc, d)
            for name, (loc, d) in sorted(self._definitions(check_kind(kind)).items())
        ]

    def set_running(self, kind: str, name: str, running: bool) -> InstigatorView:
        location, definition = self._find(kind, name)
        if running and definition.error:
            raise InvalidArgument(f"cannot start {kind} {name}: {definition.error}")
        self.instance.storage.instigators.set_status(kind, name, RUNNING if running else STOPPED)
        self._changed(kind)
        return self._view(kind, name, location, definition)

    def ticks(self, kind: str, name: str, limit: int) -> list[Tick]:
        self._find(kind, name)
        limit = 20 if limit <= 0 else min(limit, MAX_TICKS)
        return self.instance.storage.instigators.ticks(kind, name, limit)

    def preview(self, name: str, count: int) -> tuple[str, list[datetime]]:
        _, definition = self._find("schedule", name)
        assert isinstance(definition, ScheduleInfo)
        if definition.error:
            raise InvalidArgument(definition.error)
        count = 5 if count <= 0 else min(count, MAX_PREVIEW)
        return definition.execution_timezone, preview(
            definition.cron_schedule, definition.execution_timezone, utcnow(), count
        )

    def set_cursor(self, name: str, cursor: str | None) -> InstigatorView:
        location, definition = self._find("sensor", name)
        store = self.instance.storage.instigators
        store.ensure("sensor", name, definition.default_status)
        store.set_cursor("sensor", name, cursor)
        self._changed("sensor")
        return self._view("sensor", name, location, definition)
