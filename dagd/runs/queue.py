"""The queue as a whole: its configuration, pause switch, current usage, and "why is it queued".

Both the ``run_queue`` daemon (to decide) and the supervisor (to explain, on request) build the
same :func:`select_runs` input from the same storage view, so an explanation is exactly what the
daemon would decide on its next pass.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from dagd.errors import NotFound
from dagd.runs.coordinators import QueuedRunCoordinator
from dagd.runs.model import RunStatus
from dagd.runs.selection import InProgressRun, QueuedRun, Selection, TagLimit, select_runs
from dagd.timefmt import rfc3339

if TYPE_CHECKING:
    from dagd.instance.config import QueuedRunCoordinatorConfig
    from dagd.instance.instance import Instance
    from dagd.storage.database import Database

PAUSED_SETTING = "run_queue.paused"


def queue_config(instance: Instance) -> QueuedRunCoordinatorConfig | None:
    """The queue's limits, or None when the coordinator does not queue."""
    coordinator = instance.coordinator
    if isinstance(coordinator, QueuedRunCoordinator):
        return coordinator.config  # type: ignore[no-any-return]
    return None


def tag_limits(config: QueuedRunCoordinatorConfig) -> list[TagLimit]:
    """The configured limits for :func:`select_runs`.

    Reads the fields, not the model's ``exact_value`` / ``per_unique_value`` properties: in the
    run_queue daemon the config is a plain :class:`~dagd.instance.handoff.ConfigView`.
    """
    return [_tag_limit(lim.key, lim.value, lim.limit) for lim in config.tag_concurrency_limits]


def _tag_limit(key: str, value: Any, limit: int) -> TagLimit:
    """``value`` is a tag value, None (any value), or ``{applyLimitPerUniqueValue: bool}``."""
    if value is None or isinstance(value, str):
        return TagLimit(key=key, value=value, per_unique_value=False, limit=limit)
    return TagLimit(
        key=key, value=None, per_unique_value=bool(value.apply_limit_per_unique_value), limit=limit
    )


def is_paused(storage: Database) -> bool:
    return bool(storage.get_setting(PAUSED_SETTING))


def set_paused(storage: Database, paused: bool) -> None:
    storage.set_setting(PAUSED_SETTING, paused)


@dataclass(frozen=True)
class QueueView:
    queued: list[QueuedRun]
    in_progress: list[InProgressRun]

    @classmethod
    def read(cls, storage: Database) -> QueueView:
        queued, in_progress = storage.runs.queue_view()
        return cls(
            [QueuedRun(run_id, seq, priority, tags) for run_id, seq, priority, tags in queued],
            [InProgressRun(run_id, tags) for run_id, tags in in_progress],
        )

    def select(self, config: QueuedRunCoordinatorConfig) -> Selection:
        return select_runs(self.queued, self.in_progress, config.max_concurrent_runs, tag_limits(config))


@dataclass(frozen=True)
class LimitUsage:
    limit: str  # for people: "team=a (limit 2)"
    in_use: int
    capacity: int
    # The same typed (issue #20): the tag key, its value (None: any value; with
    # per_unique_value, this entry's one value, or None when no value is in use).
    key: str = ""
    value: str | None = None
    per_unique_value: bool = False


@dataclass(frozen=True)
class QueueStatus:
    paused: bool
    queued: int
    in_progress: int
    max_concurrent_runs: int
    tag_limits: list[LimitUsage] = field(default_factory=list)


def queue_status(storage: Database, config: QueuedRunCoordinatorConfig | None) -> QueueStatus:
    view = QueueView.read(storage)
    usages: list[LimitUsage] = []
    for limit in tag_limits(config) if config else []:
        if limit.per_unique_value:
            per_value = Counter(r.tags[limit.key] for r in view.in_progress if limit.key in r.tags)
            for value, count in sorted(per_value.items()):
                usages.append(
                    LimitUsage(f"{limit.key}={value} (per value)", count, limit.limit, limit.key, value, True)
                )
            if not per_value:
                usages.append(LimitUsage(limit.describe(), 0, limit.limit, limit.key, None, True))
            continue
        count = sum(
            1
            for r in view.in_progress
            if limit.key in r.tags and (limit.value is None or r.tags[limit.key] == limit.value)
        )
        usages.append(LimitUsage(limit.describe(), count, limit.limit, limit.key, limit.value, False))
    return QueueStatus(
        paused=is_paused(storage),
        queued=len(view.queued),
        in_progress=len(view.in_progress),
        max_concurrent_runs=config.max_concurrent_runs if config else -1,
        tag_limits=usages,
    )


@dataclass(frozen=True)
class Explanation:
    run_id: str
    status: RunStatus
    summary: str
    reasons: tuple[str, ...] = ()
    holders: tuple[str, ...] = ()
    position: int = 0
    paused: bool = False
    daemon_healthy: bool = True
    coordinator: str = ""
    launchable: bool = False


def explain(instance: Instance, run_id: str, *, daemon_healthy: bool) -> Explanation:
    """Why ``run_id`` is where it is: the limits holding it, who holds them, its place in line."""
    storage = instance.storage
    run = storage.runs.get(run_id)
    if run is None:
        raise NotFound(f"no run with id {run_id!r}")
    paused = is_paused(storage)
    base = Explanation(
        run_id=run_id,
        status=run.status,
        summary="",
        paused=paused,
        daemon_healthy=daemon_healthy,
        coordinator=type(instance.coordinator).__name__,
    )
    if run.status != RunStatus.QUEUED:
        return replace(base, summary=f"the run is {run.status.value}, not queued")
    held = storage.runs.held_until(run_id) if run.launch_not_before is not None else None
    if held is not None:
        return replace(
            base,
            summary=(
                f"its launch failed {run.launch_failures} time(s): it waits until "
                f"{rfc3339(held)} before the queue tries again"
            ),
        )
    config = queue_config(instance)
    if config is None:
        return replace(base, summary=f"the run is QUEUED but {base.coordinator} does not dequeue runs")
    selection = QueueView.read(storage).select(config)
    blocked = selection.blocked.get(run_id)
    notes = []
    if paused:
        notes.append("the queue is paused (`dagctl queue resume` to resume)")
    if not daemon_healthy:
        notes.append("the run_queue daemon is not healthy, so nothing is being launched")
    slots = _worker_slot_note(instance, selection, run_id) if blocked is None else None
    if slots:
        notes.append(slots)
    if blocked is None:
        # In the launch order of the next pass (priority first), which is not always first:
        # with the queue paused, everything that fits waits to launch, in that order.
        order = selection.to_launch
        position = order.index(run_id) + 1 if run_id in order else 1
        if notes:
            # What blocks it comes first: "nothing blocks it ..., but the queue is paused" contradicted itself.
            summary = (
                "blocked: " + " and ".join(notes)
                + f"; no limit holds it, so it is number {position} in launch order once that changes"
            )  # fmt: skip
        else:
            summary = (
                f"nothing blocks it: it launches on the queue's next pass, number {position} in launch order"
            )
        return replace(base, summary=summary, position=position, launchable=not notes)
    summary = f"number {blocked.position} in line; held by " + "; ".join(blocked.reasons)
    if notes:
        summary += "; also " + " and ".join(notes)
    return replace(
        base, summary=summary, reasons=blocked.reasons, holders=blocked.holders, position=blocked.position
    )


def _worker_slot_note(instance: Instance, selection: Selection, run_id: str) -> str | None:
    """With a launcher that runs on worker hosts: "waits for a worker slot", when the limits let
    the run go but no live host of its queue has a free slot (what the run queue would decide)."""
    launcher = instance.launcher
    if not getattr(launcher, "uses_worker_slots", False) or run_id not in selection.to_launch:
        return None
    from dagd.runs.celery.slots import fit_slots

    timeout = float(instance.config.run_monitoring.worker_heartbeat_timeout_seconds)
    free = instance.storage.workers.free_slots(timeout, launcher.default_queue)  # type: ignore[attr-defined]
    tags = {r.run_id: r.tags for r in QueueView.read(instance.storage).queued}
    queue_of = {r: launcher.queue_of(tags.get(r, {})) for r in selection.to_launch}  # type: ignore[attr-defined]
    _, waiting = fit_slots(selection.to_launch, queue_of, free)
    if run_id not in waiting:
        return None
    queue = waiting[run_id]
    return f"it waits for a worker slot: no live worker host of queue {queue} has one free (`dagctl workers status`)"
