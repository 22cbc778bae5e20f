"""Run ids a person can type: a full id, or a unique prefix of at least ``MIN_PREFIX`` characters.

Resolution happens in the supervisor (``RunService.ResolveRunId``), with one storage query on the
unique index of ``runs.run_id``: an index range ``lower <= run_id < upper`` narrowed by
``LIKE 'prefix%'``. The range alone uses the index under any collation; the ``LIKE`` keeps the
answer exact where a collation ignores the hyphens (glibc ``en_US``), and is enough by itself
under ``C``. ``dagctl`` asks only when what it was given is not a full id (SPEC §9.4).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from dagd.errors import InvalidArgument, NotFound

if TYPE_CHECKING:  # dagctl imports is_full_id from here and nothing of storage
    from dagd.storage.database import Database

MIN_PREFIX = 6
# Shown in an ambiguity error; more than this many candidates are counted, not listed.
MAX_CANDIDATES = 10
HEX = "0123456789abcdef"
_PREFIX = re.compile(r"^[0-9a-f-]+$")
_FULL_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def is_full_id(value: str) -> bool:
    """A whole run id as dagd makes them (a UUID in lower case): no lookup needed."""
    return bool(_FULL_ID.match(value))


def is_prefix(value: str) -> bool:
    """Whether ``value`` is to be read as the start of an id: hex digits and hyphens, not a whole
    id. Anything else is taken as a whole id as it is (and is simply not found if there is none)."""
    text = value.strip().lower()
    return bool(_PREFIX.match(text)) and not is_full_id(text)


def normalize_prefix(value: str) -> str:
    """The prefix in the form stored ids have (lower case), or InvalidArgument naming what is wrong."""
    prefix = value.strip().lower()
    if len(prefix) < MIN_PREFIX:
        raise InvalidArgument(
            f"run id {value!r} is too short: give the full id or at least {MIN_PREFIX} characters of it"
        )
    if not _PREFIX.match(prefix):
        raise InvalidArgument(f"run id {value!r}: expected hexadecimal digits and hyphens")
    return prefix


def upper_bound(prefix: str) -> str | None:
    """The smallest hex string above every id that starts with ``prefix`` (None: no bound).

    Increments the last hex digit, carrying over ``f``; trailing hyphens are dropped first (a
    hyphen is the same in every id, so it adds nothing to the range).
    """
    digits = list(prefix.rstrip("-"))
    while digits:
        last = digits.pop()
        if last == "-":
            continue
        if last != "f":
            return "".join(digits) + HEX[HEX.index(last) + 1]
    return None


def prefix_query(prefix: str, limit: int) -> tuple[str, dict[str, object]]:
    """The SQL (and its parameters) of :func:`ids_with_prefix`: an index range narrowed by LIKE."""
    params: dict[str, object] = {"lower": prefix, "pattern": f"{prefix}%", "limit": limit}
    where = "run_id >= :lower AND run_id LIKE :pattern"
    upper = upper_bound(prefix)
    if upper is not None:
        where += " AND run_id < :upper"
        params["upper"] = upper
    return f"SELECT run_id FROM runs WHERE {where} ORDER BY run_id LIMIT :limit", params


def ids_with_prefix(storage: Database, prefix: str, limit: int) -> list[str]:
    """Up to ``limit`` run ids that start with ``prefix`` (already normalized), in id order."""
    sql_text, params = prefix_query(prefix, limit)
    with storage.sql_read() as sql:
        rows = sql.rows(sql_text, params)
    return [row[0] for row in rows]


def resolve_run_id(storage: Database, value: str) -> str:
    """The one run id ``value`` names: itself if it is a whole id, else the only id it starts."""
    if not is_prefix(value):
        return value.strip().lower() if is_full_id(value.strip().lower()) else value
    prefix = normalize_prefix(value)
    found = ids_with_prefix(storage, prefix, MAX_CANDIDATES + 1)
    if not found:
        raise NotFound(f"no run with id {value!r} (nor one that starts with it)")
    if len(found) == 1 or prefix in found:
        return prefix if prefix in found else found[0]
    shown = ", ".join(found[:MAX_CANDIDATES])
    more = " and more" if len(found) > MAX_CANDIDATES else ""
    raise InvalidArgument(f"run id prefix {value!r} is ambiguous: it starts {shown}{more}")
