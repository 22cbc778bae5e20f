"""The automatic purge: expired schedule and sensor ticks and finished runs, per ``retention:``.

Why the supervisor does it, in a thread of its own, rather than a daemon:

- only the leader purges, and the supervisor is the leader by construction: it takes the lease
  before it starts anything and stops when it loses it (a standby never gets here);
- no daemon pass waits on it: the run queue and the scheduler and sensor daemons keep their own
  loops and heartbeats, and a purge competes with them only for the database, one small batch at a
  time (``retention.batch_size`` rows per transaction, then a pause at least as long as the batch
  took, so it holds SQLite's write lock at most half the time and yields between batches);
- a purge can take minutes after retention is first turned on over a big history: in a daemon that
  would be a pass the hang detector has to be told about; here it is just a background thread.

Dagster purges ticks from its scheduler and sensor daemons, once a day; runs it never purges.
Errors (storage down) are logged and the next round tries again. docs/retention.md is the manual.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from dagd.errors import StorageUnavailable
from dagd.storage.instigators import TICK_FAILURE, TICK_SKIPPED, TICK_SUCCESS
from dagd.storage.retention import purge_runs
from dagd.timefmt import utcnow

if TYPE_CHECKING:
    from dagd.instance.instance import Instance

log = logging.getLogger("dagd.retention")

#: Shortest pause between two batches, whatever the batch took.
MIN_PAUSE_SECONDS = 0.05


@dataclass
class PurgeReport:
    """What one round deleted: ticks by (kind, status), and runs."""

    ticks: dict[tuple[str, str], int] = field(default_factory=dict)
    runs: int = 0

    @property
    def total(self) -> int:
        return self.runs + sum(self.ticks.values())


class RetentionPurger:
    """Rounds of purging every ``retention.purge_interval_seconds`` until ``stop`` is set."""

    def __init__(self, instance: Instance, stop: threading.Event) -> None:
        self.instance = instance
        self.config = instance.config.retention
        self.stop = stop
        self.thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return bool(self._tick_rules()) or self.config.runs.purge_after_days >= 0

    def start(self) -> None:
        if not self.enabled:
            return
        self.thread = threading.Thread(target=self._loop, name="retention", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        # The first round waits one interval too: a starting supervisor has better things to do.
        while not self.stop.wait(self.config.purge_interval_seconds):
            try:
                report = self.purge_once()
            except StorageUnavailable as exc:
                log.warning("retention: purge postponed: %s", exc)
                continue
            except Exception:  # a bug must not kill the thread for the supervisor's lifetime
                log.exception("retention: purge failed")
                continue
            if report.total:
                log.info(
                    "retention: purged %d run(s) and %d tick(s)", report.runs, report.total - report.runs
                )

    def _tick_rules(self) -> list[tuple[str, str, float]]:
        rules = []
        for kind, section in (("schedule", self.config.schedule), ("sensor", self.config.sensor)):
            days = section.purge_after_days
            for status, keep in (
                (TICK_SKIPPED, days.skipped),
                (TICK_SUCCESS, days.success),
                (TICK_FAILURE, days.failure),
            ):
                if keep >= 0:
                    rules.append((kind, status, keep))
        return rules

    def purge_once(self, now: datetime | None = None) -> PurgeReport:
        """One round: everything expired at ``now``, batch by batch, pausing between batches."""
        now = now or utcnow()
        report = PurgeReport()
        batch = self.config.batch_size
        storage = self.instance.storage
        for kind, status, keep in self._tick_rules():
            batches = self._tick_batches(kind, status, now - timedelta(days=keep), batch)
            report.ticks[(kind, status)] = self._paced(batches)
        keep_runs = self.config.runs.purge_after_days
        if keep_runs >= 0:
            report.runs = self._paced(purge_runs(storage, now - timedelta(days=keep_runs), batch_size=batch))
        return report

    def _tick_batches(self, kind: str, status: str, cutoff: datetime, batch: int) -> Iterator[int]:
        while True:
            deleted = self.instance.storage.instigators.purge_ticks(kind, status, cutoff, batch)
            yield deleted
            if deleted < batch:
                return

    def _paced(self, batches: Iterator[int]) -> int:
        """Run the batches, pausing after each at least as long as it took; stop early on ``stop``."""
        total = 0
        began = time.monotonic()
        for deleted in batches:
            total += deleted
            if self.stop.wait(max(MIN_PAUSE_SECONDS, time.monotonic() - began)):
                break
            began = time.monotonic()
        return total


def start_retention(instance: Instance, stop: threading.Event) -> RetentionPurger:
    purger = RetentionPurger(instance, stop)
    purger.start()
    return purger
