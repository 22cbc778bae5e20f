"""Violations and the fault log of one chaos run; every failure message names the seed.

Both are written from several threads (sampler, injector, load clients) and read at the end.
Times are ``time.monotonic()``, which on Linux is one clock for every process on the host, so
the prober's samples (another process) line up with the injector's windows.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Violation:
    invariant: str
    detail: str
    at: float = field(default_factory=time.monotonic)


class FaultLog:
    """What the injector did and when, relative to the start of the run."""

    def __init__(self, started: float) -> None:
        self.started = started
        self._lines: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}

    def add(self, kind: str, detail: str, at: float | None = None, *, injected: bool = True) -> None:
        """Log a line; ``injected=False`` for the end of a fault (SIGCONT, reconnect, restart)."""
        offset = (time.monotonic() if at is None else at) - self.started
        with self._lock:
            self._lines.append((offset, f"t+{offset:6.1f}s {kind}: {detail}"))
            if injected:
                self.counts[kind] = self.counts.get(kind, 0) + 1

    def lines(self) -> list[str]:
        """In time order (a terminate storm is logged when it answers, at the time it began)."""
        with self._lock:
            return [line for _, line in sorted(self._lines, key=lambda item: item[0])]


class Violations:
    """Broken invariants, kept in order; the first few of each kind in full."""

    MAX_PER_INVARIANT = 20

    def __init__(self, seed: int, started: float) -> None:
        self.seed = seed
        self.started = started
        self._items: list[Violation] = []
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self.first = threading.Event()  # set on the first violation: the fault loop ends early

    def add(self, invariant: str, detail: str) -> None:
        with self._lock:
            self._counts[invariant] = self._counts.get(invariant, 0) + 1
            if self._counts[invariant] <= self.MAX_PER_INVARIANT:
                self._items.append(Violation(invariant, detail))
        self.first.set()

    def __bool__(self) -> bool:
        with self._lock:
            return bool(self._items)

    def invariants(self) -> set[str]:
        with self._lock:
            return set(self._counts)

    def report(self, faults: FaultLog, context: str) -> str:
        with self._lock:
            items, counts = list(self._items), dict(self._counts)
        lines = [f"[chaos seed={self.seed}] {sum(counts.values())} invariant violation(s): {counts}"]
        for item in items:
            lines.append(f"  t+{item.at - self.started:6.1f}s {item.invariant}: {item.detail}")
        lines.append(f"[chaos seed={self.seed}] faults injected (replay: DAGD_CHAOS_SEED={self.seed}):")
        lines += [f"  {line}" for line in faults.lines()[-60:]]
        lines.append(context)
        return "\n".join(lines)
