"""JSON as the standard defines it: Python's parser also accepts ``NaN``, ``Infinity`` and
``-Infinity``, which strict parsers (and ``--json`` consumers) reject, so input must not carry them."""

from __future__ import annotations

from typing import NoReturn


class NonStandardJSON(ValueError):
    """A JSON text used a constant that standard JSON does not have."""


def refuse_json_constant(name: str) -> NoReturn:
    """``json.loads(..., parse_constant=refuse_json_constant)``: refuse NaN and the infinities."""
    raise NonStandardJSON(f"{name} is not allowed (JSON has no NaN or Infinity)")
