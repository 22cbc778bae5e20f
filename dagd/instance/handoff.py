"""The validated config, handed from the supervisor to its daemons as one line of JSON.

Validating ``dagd.yaml`` needs pydantic and the models in :mod:`dagd.instance.config`, ~11 MB of
memory in every process that imports them. The supervisor has validated the file already, so it
writes the result to each daemon's stdin at spawn (a pipe: no secret on a command line or in an
environment that run workers would inherit), and the daemon rebuilds it as :class:`ConfigView`
objects: the same attribute names as the models, read-only, and no pydantic import.

On the wire a section (a pydantic model) is a JSON object and a free-form mapping (the
``config`` of a plug-in without a ``config_model``) is ``{"$map": {...}}``, so the reader can tell
them apart. Plug-in configs the supervisor validated with a built-in model travel in ``plugins``;
a plug-in with its own pydantic ``config_model`` is validated again in the daemon, from the raw
section, exactly as when the daemon read the file itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

MAP_TAG = "$map"


class ConfigView:
    """One validated config section as plain read-only attributes (the model's field names)."""

    __slots__ = ("_fields",)

    def __init__(self, fields: dict[str, Any]) -> None:
        object.__setattr__(self, "_fields", fields)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._fields[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"config is read-only: cannot set {name!r}")

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        return iter(self._fields.items())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ConfigView) and self._fields == other._fields

    __hash__ = None  # type: ignore[assignment]  # like a dict: compared by value, not hashed

    def __repr__(self) -> str:
        return f"ConfigView({self._fields!r})"


# -- writing (the supervisor) ------------------------------------------------------------------


def encode_value(value: Any) -> Any:
    """A validated config value as JSON-ready data: sections as objects, mappings tagged."""
    fields = getattr(type(value), "model_fields", None)  # a pydantic model: its fields by name
    if fields is not None:
        return {name: encode_value(getattr(value, name)) for name in fields}
    if isinstance(value, ConfigView):
        return {name: encode_value(item) for name, item in value}
    if isinstance(value, dict):
        return {MAP_TAG: value}
    if isinstance(value, (list, tuple)):
        return [encode_value(item) for item in value]
    return value


def encode(config: Any, plugins: dict[str, Any]) -> bytes | None:
    """One JSON line for a daemon's stdin, or None when a value would not survive JSON unchanged.

    ``plugins`` maps ``run_coordinator`` / ``run_launcher`` to the config object the supervisor's
    plug-in holds, for plug-ins whose config the daemon may take as is (see ``Instance``). A value
    JSON cannot carry exactly (a YAML date in a free-form plug-in config) gives None: the daemon
    then reads and validates ``dagd.yaml`` itself, as it always could.
    """
    payload = {
        "config": encode_value(config),
        "plugins": {key: encode_value(value) for key, value in plugins.items()},
    }
    try:
        text = json.dumps(payload, allow_nan=True)
    except (TypeError, ValueError):
        return None
    if json.loads(text) != payload:  # e.g. a tuple, or a mapping with non-string keys
        return None
    return text.encode() + b"\n"


# -- reading (a daemon) ------------------------------------------------------------------------


def decode_value(data: Any) -> Any:
    if isinstance(data, dict):
        if set(data) == {MAP_TAG}:
            return data[MAP_TAG]
        return ConfigView({name: decode_value(item) for name, item in data.items()})
    if isinstance(data, list):
        return [decode_value(item) for item in data]
    return data


def decode(line: bytes) -> tuple[ConfigView, dict[str, Any]]:
    """(instance config, plug-in configs by key) from the line :func:`encode` wrote."""
    payload = json.loads(line)
    config = decode_value(payload["config"])
    plugins = {key: decode_value(value) for key, value in payload["plugins"].items()}
    return config, plugins
