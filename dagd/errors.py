"""The one error tree of dagd.

    DagdError
    ├── ConfigError          bad dagd.yaml / workspace file       -> INVALID_ARGUMENT / exit 2
    ├── DefinitionError      user code failed to load             -> FAILED_PRECONDITION
    ├── InvalidArgument      bad request field (tag, priority...) -> INVALID_ARGUMENT
    ├── NotFound             unknown run, job, daemon             -> NOT_FOUND
    ├── InvalidTransition    illegal run status change            -> FAILED_PRECONDITION
    ├── Conflict             lost a compare-and-set / lease       -> ABORTED
    ├── StorageUnavailable   database unreachable                 -> UNAVAILABLE
    ├── SchemaOutOfDate      database older than this code        -> FAILED_PRECONDITION
    └── Unavailable          supervisor draining / unreachable    -> UNAVAILABLE

Server side, :mod:`dagd.supervisor.servicer` maps these to gRPC status codes; client side,
:mod:`dagd.client.client` maps status codes back. Nowhere else.
"""

from __future__ import annotations

#: Trailing metadata key on every error the server answers (value: the error's class name), so the
#: client can tell "the supervisor said UNAVAILABLE" (e.g. storage down) from "no supervisor answered".
ERROR_METADATA_KEY = "dagd-error"


#: Trailing metadata key on an error about one entry of a batch request (value: its index).
RUN_INDEX_METADATA_KEY = "dagd-run-index"


class DagdError(Exception):
    """Base of every error dagd raises on purpose. The message is one line for the user."""

    #: Set on an error about one entry of a batch (SubmitRuns): that entry's index.
    run_index: int | None = None


def at_index(exc: DagdError, index: int, field: str = "runs") -> DagdError:
    """The same error about entry ``index`` of a batch: ``runs[3]: <message>``, with run_index."""
    out = type(exc)(f"{field}[{index}]: {exc}")
    out.run_index = index
    return out


class ConfigError(DagdError):
    pass


class DefinitionError(DagdError):
    pass


class InvalidArgument(DagdError):
    pass


class NotFound(DagdError):
    pass


class InvalidTransition(DagdError):
    pass


class Conflict(DagdError):
    pass


class StorageUnavailable(DagdError):
    pass


class SchemaOutOfDate(DagdError):
    pass


class Unavailable(DagdError):
    pass


class Unauthenticated(DagdError):
    pass


class TooManyStreams(DagdError):
    """The supervisor already serves ``streams.max_streams`` streams (RESOURCE_EXHAUSTED)."""


class FellBehind(DagdError):
    """A stream's reader was too slow and was dropped; resume from its last cursor (ABORTED)."""
