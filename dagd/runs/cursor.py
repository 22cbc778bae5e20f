"""The resumable position of a run-event stream: which ``run_events`` ids a watcher has seen.

Event ids grow, but they do not become visible in id order: on PostgreSQL two transactions take
ids 7 and 8 from the sequence, 8 commits first and 7 a moment later (or never, if it rolls back).
A cursor that kept only "the last id seen" would skip 7 for ever. So a cursor is the last id seen
plus the *gaps* below it: ids not seen yet that may still appear. A gap is given up once the
database's clock has moved ``GAP_TIMEOUT_SECONDS`` past the moment it was noticed (no transaction
of dagd's stays open that long: statements are bounded), and at most ``MAX_GAPS`` are kept (oldest
given up first). On SQLite writes are serialised and ids are AUTOINCREMENT (never reused after a
delete), so gaps there only come from deleted runs and simply age out.

Pure: the cursor is a value; :meth:`Cursor.advance` returns a new one. Times are the database's
clock as seconds since the epoch, passed in by the caller.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass, field

from dagd.errors import InvalidArgument

GAP_TIMEOUT_SECONDS = 60.0
MAX_GAPS = 2000
_PREFIX = "v1."


@dataclass(frozen=True)
class Cursor:
    """Every id <= ``last`` has been seen, except those in ``gaps`` (id -> when it was noticed)."""

    last: int = 0
    gaps: dict[int, float] = field(default_factory=dict)

    def is_new(self, event_id: int) -> bool:
        """True when an event with this id has not been seen (so it is to be delivered)."""
        return event_id > self.last or event_id in self.gaps

    def advance(self, event_ids: Iterable[int], now: float) -> Cursor:
        """The cursor after seeing ``event_ids`` (any order), at database time ``now``.

        Ids skipped over become gaps noticed at ``now``; gaps older than the timeout are given up.
        """
        last = self.last
        gaps = dict(self.gaps)
        for event_id in sorted(set(event_ids)):
            if event_id > last:
                for missing in range(max(last + 1, event_id - MAX_GAPS), event_id):
                    gaps[missing] = now
                last = event_id
            else:
                gaps.pop(event_id, None)
        return Cursor(last, _pruned(gaps, now))

    def has_seen(self, event_id: int) -> bool:
        return not self.is_new(event_id)

    def merge(self, other: Cursor) -> Cursor:
        """Seen by either: the cursor of a reader that processed what both cursors saw."""
        gaps = {g: t for g, t in self.gaps.items() if not other.has_seen(g)}
        for g, t in other.gaps.items():
            if not self.has_seen(g):
                gaps[g] = min(t, gaps.get(g, t))
        low, high = sorted((self, other), key=lambda c: c.last)
        # Ids above the lower cursor's last that the higher one has not seen stay gaps (above).
        for g in list(gaps):
            if g <= low.last and not low.is_new(g):
                gaps.pop(g)
        return Cursor(high.last, gaps)

    def expire(self, now: float) -> Cursor:
        """The same position with the gaps older than the timeout given up."""
        gaps = _pruned(self.gaps, now)
        return self if len(gaps) == len(self.gaps) else Cursor(self.last, gaps)

    def encode(self) -> str:
        """An opaque, URL-safe text: ``v1.`` then base64 of ``last;id@time,...``."""
        body = str(self.last)
        if self.gaps:
            body += ";" + ",".join(f"{i}@{t:.3f}" for i, t in sorted(self.gaps.items()))
        return _PREFIX + base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """Parse a cursor from :meth:`encode`; InvalidArgument naming the problem otherwise."""
        if not text.startswith(_PREFIX) or len(text) > 200_000:
            raise InvalidArgument(f"invalid stream cursor {text[:40]!r}: not a cursor from this API")
        raw = text[len(_PREFIX) :]
        try:
            body = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
            head, _, rest = body.partition(";")
            last = int(head)
            gaps: dict[int, float] = {}
            for item in rest.split(",") if rest else ():
                ident, _, when = item.partition("@")
                gaps[int(ident)] = float(when)
        except (ValueError, UnicodeDecodeError, binascii.Error):
            raise InvalidArgument(f"invalid stream cursor {text[:40]!r}: it is damaged") from None
        if last < 0 or any(not 0 < g < last for g in gaps) or len(gaps) > MAX_GAPS:
            raise InvalidArgument(f"invalid stream cursor {text[:40]!r}: it is inconsistent")
        return cls(last, gaps)


def _pruned(gaps: dict[int, float], now: float) -> dict[int, float]:
    kept = {i: t for i, t in gaps.items() if now - t < GAP_TIMEOUT_SECONDS}
    if len(kept) > MAX_GAPS:
        kept = dict(sorted(kept.items())[-MAX_GAPS:])
    return kept
