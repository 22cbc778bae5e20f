"""Which queued runs the run queue launches on this pass, and why the rest wait.

This module owns the dequeue choice and nothing else: given the queued runs, the runs in progress
and the limits, :func:`select_runs` returns the runs to launch (in launch order) and, for every run
left in the queue, the limits that hold it back, the runs holding those limits and its place in
line. It does no I/O and reads no clock, so the daemon, ``dagctl runs why`` and the tests all get
the same answer from the same inputs.

The rules are Dagster's QueuedRunCoordinator's, on purpose (SPEC §4):

- Runs are considered by priority, highest first; equal priorities go in submission order.
- A run launches when the global cap (``max_concurrent_runs``; -1 is off, 0 launches nothing) and
  every tag limit matching it have room. Each chosen run counts at once toward later decisions.
- A run held back by a tag limit does not hold back the runs behind it.
- Every matching tag limit applies, so the tightest one wins; a limit of 0 blocks every match.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter

NEXT_PASS_REASON = "waiting for the next pass"

# A counter that one tag limit keeps. Key-only and key=value limits keep one counter (their rule
# index); a per-unique-value limit keeps one per value, hence (rule index, value).
_Bucket = int | tuple[int, str]


@dataclass(frozen=True)
class TagLimit:
    """One ``tag_concurrency_limits`` entry.

    ``value=None, per_unique_value=False`` counts runs carrying ``key`` with any value;
    ``value="x"`` counts runs with ``key=x``; ``per_unique_value=True`` counts each value of ``key``
    separately, each against ``limit``.
    """

    key: str
    value: str | None
    per_unique_value: bool
    limit: int

    def __post_init__(self) -> None:
        # The config loader refuses these with a user-facing message; reaching here is a caller bug.
        if self.limit < 0:
            raise ValueError(f"tag limit on {self.key!r} must be >= 0, got {self.limit}")
        if self.per_unique_value and self.value is not None:
            raise ValueError(f"tag limit on {self.key!r}: a per-unique-value limit takes no value")

    def describe(self) -> str:
        if self.per_unique_value:
            return f"{self.key}=<each value> (limit {self.limit})"
        if self.value is None:
            return f"{self.key} (any value, limit {self.limit})"
        return f"{self.key}={self.value} (limit {self.limit})"


@dataclass(frozen=True)
class QueuedRun:
    run_id: str
    seq: int  # submission order, lower = earlier
    priority: int
    tags: Mapping[str, str] = field(hash=False)


@dataclass(frozen=True)
class InProgressRun:
    run_id: str
    tags: Mapping[str, str] = field(hash=False)


@dataclass(frozen=True)
class Blocked:
    """Why one queued run stays queued after this pass.

    ``reasons`` describe the state at the end of the pass, i.e. counting the runs chosen in it.
    ``holders`` are the in-progress and just-chosen runs occupying the limits in ``reasons``.
    ``position`` is the 1-based place in line among the runs still queued.
    """

    run_id: str
    reasons: tuple[str, ...]
    holders: tuple[str, ...]
    position: int


@dataclass(frozen=True)
class Selection:
    to_launch: tuple[str, ...]  # in launch order
    blocked: Mapping[str, Blocked] = field(hash=False)  # every queued run not in to_launch


@dataclass(frozen=True)
class _Rule:
    index: int
    limit: TagLimit  # the tightest of the configured entries sharing this counter


# (bucket, rule) pairs: the counters a run falls in, with the rule that caps each.
_Matches = tuple[tuple[_Bucket, _Rule], ...]


class _KeyRules:
    """The limits on one tag key, and which buckets each value of that key falls in.

    Which buckets a run falls in depends only on its value for each limited key, and a key has far
    fewer values than there are runs; working per (key, value) rather than per run is what keeps a
    10,000-run pass fast.
    """

    def __init__(self, key: str, rules: list[_Rule]) -> None:
        self.key = key
        self.rules = tuple(rules)
        self._matches: dict[str, _Matches] = {}

    def matching(self, value: str) -> _Matches:
        found = self._matches.get(value)
        if found is None:
            hits: list[tuple[_Bucket, _Rule]] = []
            for rule in self.rules:
                tl = rule.limit
                if tl.per_unique_value:
                    hits.append(((rule.index, value), rule))
                elif tl.value is None or tl.value == value:
                    hits.append((rule.index, rule))
            found = self._matches[value] = tuple(hits)
        return found


class _TagCounters:
    """Runs counted against each tag-limit bucket, in progress first, then chosen this pass."""

    def __init__(self, tag_limits: Sequence[TagLimit]) -> None:
        # Entries that share a counter (same key/value/kind) collapse to the tightest: counting the
        # same runs, the smallest limit is the only one that can bind.
        tightest: dict[tuple[str, str | None, bool], TagLimit] = {}
        for tl in tag_limits:
            ident = (tl.key, tl.value, tl.per_unique_value)
            held = tightest.get(ident)
            if held is None or tl.limit < held.limit:
                tightest[ident] = tl
        rules_by_key: dict[str, list[_Rule]] = {}
        for index, tl in enumerate(tightest.values()):
            rules_by_key.setdefault(tl.key, []).append(_Rule(index, tl))
        self.keys = tuple(_KeyRules(key, rules) for key, rules in rules_by_key.items())
        self.counts: dict[_Bucket, int] = {}
        self.holders: dict[_Bucket, list[str]] = {}

    def matching(self, tags: Mapping[str, str]) -> _Matches:
        found: _Matches = ()
        for key_rules in self.keys:
            value = tags.get(key_rules.key)
            if value is not None:
                found += key_rules.matching(value)
        return found

    def add(self, run_id: str, matches: _Matches) -> None:
        for bucket, _ in matches:
            self.counts[bucket] = self.counts.get(bucket, 0) + 1
            self.holders.setdefault(bucket, []).append(run_id)

    def has_room(self, matches: _Matches) -> bool:
        counts = self.counts
        for bucket, rule in matches:
            if counts.get(bucket, 0) >= rule.limit.limit:
                return False
        return True


def select_runs(
    queued: Sequence[QueuedRun],
    in_progress: Sequence[InProgressRun],
    max_concurrent_runs: int,
    tag_limits: Sequence[TagLimit],
    max_to_launch: int | None = None,
) -> Selection:
    """Choose the runs to launch now; explain every run left queued.

    ``max_to_launch`` caps launches in this pass only (e.g. to keep a pass short); runs that would
    otherwise fit are reported as waiting for the next pass.
    """
    if max_concurrent_runs < -1:
        raise ValueError(f"max_concurrent_runs must be -1 (off) or >= 0, got {max_concurrent_runs}")
    if max_to_launch is not None and max_to_launch < 0:
        raise ValueError(f"max_to_launch must be >= 0, got {max_to_launch}")

    counters = _TagCounters(tag_limits)
    for ip in in_progress:
        counters.add(ip.run_id, counters.matching(ip.tags))

    # The caller's order need not be submission order, so sort by seq first; the second sort is
    # stable (reverse=True included), which keeps FIFO within a priority.
    line = sorted(queued, key=attrgetter("seq"))
    line.sort(key=attrgetter("priority"), reverse=True)

    # Negative when a lowered cap is already exceeded: then nothing launches, as it should.
    global_room = len(line) if max_concurrent_runs == -1 else max_concurrent_runs - len(in_progress)
    room = min(global_room, len(line) if max_to_launch is None else max_to_launch)

    chosen: list[str] = []
    for run in line:
        if len(chosen) >= room:
            break
        matches = counters.matching(run.tags)
        if not counters.has_room(matches):
            continue  # passed over; the runs behind it still get their turn
        chosen.append(run.run_id)
        counters.add(run.run_id, matches)

    return Selection(
        to_launch=tuple(chosen),
        blocked=_explain_blocked(line, in_progress, chosen, max_concurrent_runs, counters),
    )


@dataclass(frozen=True)
class _FullFor:
    """Why one (key, value) is blocked at the end of the pass: reasons, and the full buckets whose
    runs hold it back. A limit of 0 gives a reason but no bucket: nobody holds it, it blocks alone.
    """

    buckets: tuple[_Bucket, ...]
    reasons: tuple[str, ...]


_NOTHING_FULL = _FullFor((), ())


def _explain_blocked(
    line: list[QueuedRun],
    in_progress: Sequence[InProgressRun],
    chosen: list[str],
    max_concurrent_runs: int,
    counters: _TagCounters,
) -> dict[str, Blocked]:
    # Reasons are judged against the end-of-pass counts. Counts only grow during a pass, so a limit
    # that passed a run over mid-walk is still full here, and the answer matches what a fresh
    # "why is this queued?" would say.
    in_use = len(in_progress) + len(chosen)
    global_reasons: tuple[str, ...] = ()
    global_holders: tuple[str, ...] = ()
    if max_concurrent_runs == 0:
        global_reasons = ("max_concurrent_runs is 0: the queue launches nothing",)
    elif max_concurrent_runs != -1 and in_use >= max_concurrent_runs:
        global_reasons = (f"max_concurrent_runs: {in_use} of {max_concurrent_runs} in progress",)
        # Built once and shared: with a full cap every blocked run has the same holders.
        global_holders = tuple(ip.run_id for ip in in_progress) + tuple(chosen)

    # The final counts no longer change, so each (key, value)'s answer and each combination's
    # merged holders are worked out once, however many runs share them.
    full_for = [(key_rules.key, key_rules, dict[str, _FullFor]()) for key_rules in counters.keys]
    unions = _HolderUnions(counters.holders)
    chosen_ids = set(chosen)
    blocked: dict[str, Blocked] = {}
    position = 0
    for run in line:
        if run.run_id in chosen_ids:
            continue
        position += 1
        tags = run.tags
        buckets: tuple[_Bucket, ...] = ()
        tag_reasons: tuple[str, ...] = ()
        for key, key_rules, cache in full_for:
            value = tags.get(key)
            if value is None:
                continue
            full = cache.get(value)
            if full is None:
                full = cache[value] = _full_for(value, key_rules.matching(value), counters)
            if full.reasons:
                buckets += full.buckets
                tag_reasons += full.reasons

        if global_reasons:
            # Tag holders are all in progress or chosen, so they are already in the global set.
            reasons, holders = global_reasons + tag_reasons, global_holders
        elif tag_reasons:
            reasons, holders = tag_reasons, unions.of(buckets)
        else:
            # Only possible when max_to_launch stopped the walk: every limit has room for this run.
            reasons, holders = (NEXT_PASS_REASON,), ()
        blocked[run.run_id] = Blocked(run.run_id, reasons, holders, position)
    return blocked


def _full_for(value: str, matches: _Matches, counters: _TagCounters) -> _FullFor:
    buckets: list[_Bucket] = []
    reasons: list[str] = []
    for bucket, rule in matches:
        tl = rule.limit
        count = counters.counts.get(bucket, 0)
        if count < tl.limit:
            continue
        if tl.limit == 0:
            reasons.append(f"tag limit {tl.describe()}: blocks every matching run")
            continue
        buckets.append(bucket)
        if tl.per_unique_value:
            reasons.append(f"tag limit {tl.describe()}: {count} in progress with {tl.key}={value}")
        else:
            reasons.append(f"tag limit {tl.describe()}: {count} in progress")
    return _FullFor(tuple(buckets), tuple(reasons)) if reasons else _NOTHING_FULL


class _HolderUnions:
    """The runs holding any of several full buckets, in order, without repeats.

    A bucket combination's buckets come in limit-key order, so combinations share leading buckets.
    Building each union from its cached prefix costs a copy plus the last bucket's holders, instead
    of re-merging every bucket: with no global cap and big buckets that is most of the pass.
    """

    def __init__(self, holders: Mapping[_Bucket, list[str]]) -> None:
        self._holders = holders
        self._sets: dict[tuple[_Bucket, ...], dict[str, None]] = {(): {}}  # ordered sets
        self._tuples: dict[tuple[_Bucket, ...], tuple[str, ...]] = {}

    def of(self, buckets: tuple[_Bucket, ...]) -> tuple[str, ...]:
        found = self._tuples.get(buckets)
        if found is None:
            found = self._tuples[buckets] = tuple(self._set(buckets))
        return found

    def _set(self, buckets: tuple[_Bucket, ...]) -> dict[str, None]:
        found = self._sets.get(buckets)
        if found is None:
            found = self._set(buckets[:-1]).copy()
            found.update(dict.fromkeys(self._holders.get(buckets[-1], ())))
            self._sets[buckets] = found
        return found
