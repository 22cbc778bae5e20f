"""Form input: URL-encoded bodies and the launchpad's fields, parsed and validated as pure functions.

Every form in the UI posts ``application/x-www-form-urlencoded`` (no file uploads), so bodies are
parsed here with the standard library instead of a multipart parser. Parse errors are
:class:`InvalidArgument` naming the field, shown next to the form.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from dagd.errors import InvalidArgument
from dagd.runs.model import MAX_PRIORITY, MIN_PRIORITY

# A run config may be up to 1 MiB (the supervisor's limit); leave room for the other fields.
MAX_BODY_BYTES = 2 * 1024 * 1024


def parse_form(body: bytes) -> dict[str, str]:
    """A URL-encoded body as a dict (the last value wins for a repeated field)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidArgument("the form is not valid UTF-8") from None
    return dict(parse_qsl(text, keep_blank_values=True, max_num_fields=1000))


def parse_tags(text: str) -> dict[str, str]:
    """``key=value`` per line (blank lines ignored); the value may contain ``=``."""
    tags: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidArgument(f"tags, line {number}: expected key=value")
        if key in tags:
            raise InvalidArgument(f"tags, line {number}: tag {key!r} is given twice")
        tags[key] = value.strip()
    return tags


def parse_priority(text: str) -> int | None:
    """Blank means "keep the job's priority"; otherwise an integer that fits the priority column."""
    text = text.strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise InvalidArgument(f"priority must be an integer, got {text[:40]!r}") from None
    if not MIN_PRIORITY <= value <= MAX_PRIORITY:
        raise InvalidArgument(f"priority must be between {MIN_PRIORITY} and {MAX_PRIORITY}")
    return value


@dataclass(frozen=True)
class LaunchForm:
    """What the launchpad submits; ``run_config_json`` is validated by the supervisor."""

    job_name: str
    tags: dict[str, str] = field(default_factory=dict)
    priority: int | None = None
    run_config_json: str = ""
    idempotency_key: str = ""


def parse_launch(form: Mapping[str, str]) -> LaunchForm:
    job_name = form.get("job", "").strip()
    if not job_name:
        raise InvalidArgument("pick a job to launch")
    return LaunchForm(
        job_name=job_name,
        tags=parse_tags(form.get("tags", "")),
        priority=parse_priority(form.get("priority", "")),
        run_config_json=form.get("run_config", "").strip(),
        idempotency_key=form.get("launch_id", "").strip()[:255],
    )


def parse_tag_filter(values: list[str]) -> dict[str, str]:
    """The runs page's ``tag=key=value`` filters (a value-less ``key`` is refused: the API matches pairs)."""
    tags: dict[str, str] = {}
    for item in values:
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidArgument(f"tag filter {item[:60]!r}: expected key=value")
        tags[key.strip()] = value.strip()
    return tags
