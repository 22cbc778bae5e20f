"""``dagctl submit JOB --from-file FILE``: many runs of one job in one call, all or none.

The file holds one JSON object a line (JSON Lines), each one run's ``tags``, ``config`` (or
``run_config``), ``priority`` and ``idempotency_key``, all optional; blank lines are skipped. A
file whose first character is ``[`` is read as one JSON array of such objects instead.
``--tag``/``--priority``/``--config`` given on the command line apply to every run (a line's own
tags win over them, key by key; its own priority and config replace them).

Nothing is submitted unless every line is good: a bad line (here, or refused by the supervisor)
is one error naming the file and line, exit 2, and no run is stored.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, TextIO

from dagd.errors import DagdError, InvalidArgument
from dagd.strictjson import NonStandardJSON, refuse_json_constant

if TYPE_CHECKING:
    from dagd.client.cli import Ctx

LINE_FIELDS = ("tags", "config", "run_config", "priority", "idempotency_key")


def _source_name(stream: TextIO) -> str:
    name = getattr(stream, "name", "-")
    return "stdin" if name in ("-", "<stdin>") else str(name)


def _parse(text: str, where: str) -> Any:
    try:
        return json.loads(text, parse_constant=refuse_json_constant)
    except NonStandardJSON as exc:
        raise InvalidArgument(f"{where}: not valid JSON: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"{where}: not valid JSON: {exc.msg} at column {exc.colno}") from None
    except (RecursionError, ValueError):
        raise InvalidArgument(f"{where}: not valid JSON (nested too deeply or a number too long)") from None


def read_entries(stream: TextIO) -> tuple[list[tuple[int, dict[str, Any]]], str]:
    """The file's runs as (line number, object), and the file's name for messages."""
    name = _source_name(stream)
    try:
        text = stream.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"{name}: cannot read: {exc}") from None
    entries: list[tuple[int, dict[str, Any]]] = []
    if text.lstrip().startswith("["):
        value = _parse(text, name)
        if not isinstance(value, list):
            raise InvalidArgument(f"{name}: expected a JSON array of objects")
        entries = [(i + 1, item) for i, item in enumerate(value)]
        unit = "entry"
    else:
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                entries.append((number, _parse(line, f"{name} line {number}")))
        unit = "line"
    for number, item in entries:
        if not isinstance(item, dict):
            raise InvalidArgument(
                f"{name} {unit} {number}: expected a JSON object, got {type(item).__name__}"
            )
        unknown = sorted(set(item) - set(LINE_FIELDS))
        if unknown:
            raise InvalidArgument(
                f"{name} {unit} {number}: unknown field {unknown[0]!r} (known: {', '.join(LINE_FIELDS)})"
            )
        if "config" in item and "run_config" in item:
            raise InvalidArgument(f"{name} {unit} {number}: give config or run_config, not both")
    if not entries:
        raise InvalidArgument(f"{name}: no runs in it")
    return entries, f"{name} {unit}"


def to_batch(
    entries: list[tuple[int, dict[str, Any]]],
    tags: dict[str, str],
    priority: int | None,
    config: dict[str, Any] | None,
) -> list[dict[str, Any]]:
    """Each line merged with the command line's defaults, in the shape of Client.submit_many."""
    out = []
    for _, item in entries:
        line_tags = item.get("tags") or {}
        entry: dict[str, Any] = {
            # Shapes are checked by the client (naming the entry); merge only what is mergeable.
            "tags": {**tags, **line_tags} if isinstance(line_tags, dict) else line_tags,
            "priority": item.get("priority", priority),
            "run_config": item.get("config", item.get("run_config", config)),
        }
        if item.get("idempotency_key") is not None:
            entry["idempotency_key"] = item["idempotency_key"]
        out.append(entry)
    return out


def submit_from_file(
    ctx: Ctx,
    job: str,
    stream: TextIO,
    tags: dict[str, str],
    priority: int | None,
    config_json: str | None,
    idempotency_key: str,
    wait: bool,
    as_json: bool,
) -> Any:
    """Submit one run a line of ``stream``: the runs (``as_json``) or their ids, for the CLI to print."""
    from dagd.strictjson import loads_object

    if wait:
        raise InvalidArgument("--wait takes one run; it cannot be used with --from-file")
    if idempotency_key:
        raise InvalidArgument(
            "--idempotency-key is for one run; with --from-file give idempotency_key per line"
        )
    entries, unit = read_entries(stream)
    config = loads_object(config_json, "--config") if config_json is not None else None
    batch = to_batch(entries, tags, priority, config)
    with ctx.client() as client:
        try:
            result = client.submit_many(batch, job_name=job, run_ids_only=not as_json)
        except DagdError as exc:
            if exc.run_index is None or not 0 <= exc.run_index < len(entries):
                raise
            # "runs[3]: no job ..." -> "runs.jsonl line 7: no job ..."
            message = str(exc).split("]: ", 1)[-1]
            raise type(exc)(f"{unit} {entries[exc.run_index][0]}: {message}") from None
    return result
