"""JSON as the standard defines it: Python's parser also accepts ``NaN``, ``Infinity`` and
``-Infinity``, which strict parsers (and ``--json`` consumers) reject, so input must not carry them."""

from __future__ import annotations

import json
from typing import Any, NoReturn

from dagd.errors import InvalidArgument


class NonStandardJSON(ValueError):
    """A JSON text used a constant that standard JSON does not have."""


def refuse_json_constant(name: str) -> NoReturn:
    """``json.loads(..., parse_constant=refuse_json_constant)``: refuse NaN and the infinities."""
    raise NonStandardJSON(f"{name} is not allowed (JSON has no NaN or Infinity)")


def loads_object(text: str, what: str) -> dict[str, Any]:
    """``text`` as a JSON object, or :class:`InvalidArgument` naming ``what`` and the problem, on
    one line (the run config of a submission: ``dagctl submit --config`` and the server alike)."""
    try:
        value = json.loads(text, parse_constant=refuse_json_constant)
    except NonStandardJSON as exc:
        raise InvalidArgument(f"{what} is not valid JSON: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InvalidArgument(
            f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise InvalidArgument(f"{what} is nested too deeply") from None
    except ValueError:  # an integer past Python's 4,300-digit conversion limit
        raise InvalidArgument(f"{what} is not valid JSON: a number is too long") from None
    if not isinstance(value, dict):
        raise InvalidArgument(f"{what} must be a JSON object")
    return value
