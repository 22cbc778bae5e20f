"""Requests that cannot be served at all: bytes that are not the method's message, or NUL characters.

gRPC's own handling of a request that fails to parse (corrupt wire format, invalid UTF-8 in a
string field) is to log a traceback and answer ``INTERNAL: Exception deserializing request!``;
a NUL character in a string field parses fine but makes PostgreSQL refuse the statement, which
surfaced as ``INTERNAL: internal error: DataError``. Both are bad input, not server faults: this
interceptor answers them ``INVALID_ARGUMENT`` with one line naming the problem, before any
servicer code runs, on every method with one request of every service (dagd's, health), the
server-streaming watches included.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message


@dataclass(frozen=True)
class _Rejected:
    """What the guarded deserializer returns instead of raising: the reason, for the behaviour."""

    reason: str


def nul_field(message: Message, prefix: str = "") -> str | None:
    """The dotted name of the first string field (or map key/value) holding a NUL character."""
    for field, value in message.ListFields():
        name = f"{prefix}{field.name}"
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            for key, item in value.items():
                if isinstance(key, str) and "\x00" in key:
                    return f"{name} (a key)"
                if isinstance(item, str) and "\x00" in item:
                    return f"{name}[{key!r}]"
                if isinstance(item, Message) and (found := nul_field(item, f"{name}[{key!r}].")):
                    return found
            continue
        items = value if field.is_repeated else [value]
        if field.type == FieldDescriptor.TYPE_STRING:
            if any("\x00" in item for item in items):
                return name
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            for item in items:
                if found := nul_field(item, f"{name}."):
                    return found
    return None


def _guard_deserializer(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def guarded(data: bytes) -> Any:
        try:
            message = deserialize(data)
        except DecodeError as exc:
            # upb's message: "Error parsing message with type '...': String field had bad UTF-8"
            detail = str(exc).rpartition(": ")[2] or "corrupt wire format"
            return _Rejected(f"malformed request: {' '.join(detail.split())[:200]}")
        except Exception as exc:  # any other parser failure is still the caller's bytes
            return _Rejected(f"malformed request: {type(exc).__name__}")
        if isinstance(message, Message) and (field := nul_field(message)):
            return _Rejected(f"{field}: must not contain NUL characters")
        return message

    return guarded


def _guard_behaviour(behaviour: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[..., Any]:
    def guarded(request: Any, context: grpc.ServicerContext) -> Any:
        if isinstance(request, _Rejected):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.reason)
        return behaviour(request, context)

    return guarded


class RequestGuardInterceptor(grpc.ServerInterceptor):
    def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Any], details: grpc.HandlerCallDetails
    ) -> Any:
        handler = continuation(details)
        if handler is None or handler.request_streaming or handler.request_deserializer is None:
            return handler
        deserializer = _guard_deserializer(handler.request_deserializer)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _guard_behaviour(handler.unary_unary),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:  # the watches (WatchRuns, FollowRunLogs, WatchDaemons)
            return grpc.unary_stream_rpc_method_handler(
                _guard_behaviour(handler.unary_stream),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler
