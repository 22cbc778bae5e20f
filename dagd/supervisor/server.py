"""The gRPC servers: a Unix socket for local clients, optionally TCP with a bearer token and TLS.

The Unix socket lives in an owner-only directory, which is the access control for local use.
The TCP listener is a separate ``grpc.Server`` with an auth interceptor, so the two cannot be
confused: every call that arrives over TCP must carry ``authorization: Bearer <token>`` (the scheme
in any case, RFC 6750; :mod:`dagd.bearer`), compared in constant time. Health checks are exempt so load balancers can probe without the secret.

Health (SPEC §9.2), answered from this process's state only, never the database:

- the overall service ``""`` is SERVING while the process is up and its main loop passes (the
  supervisor tells :class:`LoopHealth` when it last did; a loop silent for ``LOOP_STALL_SECONDS``
  answers NOT_SERVING), and NOT_SERVING once it begins to stop: Kubernetes' liveness probe;
- the API services (``dagd.api.v1.RunService`` and the rest) are SERVING only while this
  supervisor leads: it holds the lease and its daemons run. A standby, or a leader still starting
  or already stopping, answers NOT_SERVING: Kubernetes' readiness probe, so a Service sends
  traffic to the leader only.

The servers listen from the start, before the lease is won, so that a standby answers its probes;
until its code servers are up, :class:`LeaderGate` refuses every call but health and reflection
(UNAVAILABLE). Then every supervisor, leader or standby, serves the whole API (SPEC 9.2).
"""

from __future__ import annotations

import os
import pathlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from dagd.api.v1 import dagd_pb2 as pb
from dagd.api.v1 import dagd_pb2_grpc as pb_grpc
from dagd.bearer import bearer_matches
from dagd.errors import ConfigError
from dagd.instance.instance import Instance
from dagd.supervisor.control import ControlPlane
from dagd.supervisor.request_guard import RequestGuardInterceptor
from dagd.supervisor.servicer import (
    DaemonServicer,
    InstanceServicer,
    InstigatorServicer,
    QueueServicer,
    RunServicer,
)

SERVICE_NAMES = (
    pb.DESCRIPTOR.services_by_name["RunService"].full_name,
    pb.DESCRIPTOR.services_by_name["InstanceService"].full_name,
    pb.DESCRIPTOR.services_by_name["DaemonService"].full_name,
    pb.DESCRIPTOR.services_by_name["QueueService"].full_name,
    pb.DESCRIPTOR.services_by_name["InstigatorService"].full_name,
)
HEALTH_PREFIX = "/grpc.health.v1.Health/"
REFLECTION_PREFIX = "/grpc.reflection."
OVERALL = ""  # the overall health service name (gRPC health protocol)
RUN_SERVICE = SERVICE_NAMES[0]
# A main loop silent this long is wedged: the overall health answers NOT_SERVING (liveness fails).
LOOP_STALL_SECONDS = 10.0
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def read_token(instance: Instance) -> str | None:
    grpc_config = instance.config.grpc
    if grpc_config.token:
        return grpc_config.token
    if grpc_config.token_file:
        from dagd.instance.config import read_token_file

        return read_token_file(
            instance.home, grpc_config.token_file, key="grpc.token_file", config_file=instance.config_file
        )
    return None


class TokenAuthInterceptor(grpc.ServerInterceptor):
    """Every call over TCP but health checks needs the token; a wrong or missing one is
    UNAUTHENTICATED (``dagctl`` exit 1, docs/cli.md)."""

    def __init__(self, token: str) -> None:
        self._token = token

        def deny(request: Any, context: grpc.ServicerContext) -> None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token")

        self._deny = grpc.unary_unary_rpc_method_handler(deny)

    def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Any], details: grpc.HandlerCallDetails
    ) -> Any:
        if details.method.startswith(HEALTH_PREFIX):
            return continuation(details)
        presented = next((v for k, v in details.invocation_metadata if k == "authorization"), "")
        if bearer_matches(presented, self._token):
            return continuation(details)
        return self._deny


class LoopHealth(health.HealthServicer):
    """The standard health service, with the overall status (``""``) tied to the main loop.

    ``Check`` of ``""`` answers NOT_SERVING when the supervisor's main loop has not passed for
    ``LOOP_STALL_SECONDS`` (:meth:`loop_passed`), whatever was set: a wedged loop cannot set
    anything. Until the first pass (while starting) only the set status counts.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.clock = clock
        self._last_pass: float | None = None

    def loop_passed(self) -> None:
        self._last_pass = self.clock()

    def loop_restarting(self) -> None:
        """The main loop is busy with a bounded step (the start after winning the lease)."""
        self._last_pass = None

    def loop_alive(self) -> bool:
        last = self._last_pass
        return last is None or self.clock() - last < LOOP_STALL_SECONDS

    def Check(self, request: Any, context: grpc.ServicerContext) -> Any:
        response = super().Check(request, context)
        if request.service == OVERALL and response.status == _SERVING and not self.loop_alive():
            return health_pb2.HealthCheckResponse(status=_NOT_SERVING)
        return response


class LeaderGate(grpc.ServerInterceptor):
    """Refuses every call but health and reflection (UNAVAILABLE) until this supervisor can serve:
    its code servers are up. Then it opens for good, leader or standby: every supervisor serves
    the API (SPEC 9.2); only ``dagd.api.v1.RunService``'s health says whether this one leads."""

    def __init__(self) -> None:
        self._open = threading.Event()
        self.reason = "this supervisor is starting"

        def refuse(request: Any, context: grpc.ServicerContext) -> None:
            context.abort(grpc.StatusCode.UNAVAILABLE, self.reason)

        self._refuse = grpc.unary_unary_rpc_method_handler(refuse)

    def open(self) -> None:
        self._open.set()

    def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Any], details: grpc.HandlerCallDetails
    ) -> Any:
        method = details.method
        if self._open.is_set() or method.startswith(HEALTH_PREFIX) or method.startswith(REFLECTION_PREFIX):
            return continuation(details)
        return self._refuse


@dataclass
class Servers:
    servers: list[grpc.Server] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)
    health: LoopHealth = field(default_factory=LoopHealth)
    gate: LeaderGate = field(default_factory=LeaderGate)

    def set_alive(self, alive: bool) -> None:
        """The overall status: SERVING from the start until the process begins to stop."""
        self.health.set(OVERALL, _SERVING if alive else _NOT_SERVING)

    def set_leading(self, leading: bool) -> None:
        """The API services' health: SERVING only while this supervisor leads with its daemons running."""
        for name in SERVICE_NAMES:
            self.health.set(name, _SERVING if leading else _NOT_SERVING)

    def stop(self, grace: float) -> None:
        events = [server.stop(grace) for server in self.servers]
        for event in events:
            event.wait(grace + 1)


def _new_server(instance: Instance, interceptors: list[grpc.ServerInterceptor]) -> grpc.Server:
    limit = instance.config.grpc.max_message_bytes
    # A stream holds its thread while open (grpc's sync server): room for every allowed stream
    # beside the 16 threads of unary calls (idle threads are not created until needed).
    streams = instance.config.streams.max_streams
    return grpc.server(
        ThreadPoolExecutor(max_workers=16 + streams, thread_name_prefix="grpc"),
        # The guard runs inside the token check: an unauthenticated caller learns nothing.
        interceptors=[*interceptors, RequestGuardInterceptor()],
        options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)],
        maximum_concurrent_rpcs=256 + streams,
    )


def _read_tls(instance: Instance, key: str, file: str) -> bytes:
    try:
        return pathlib.Path(file).read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"{instance.config_file}: grpc.tls.{key}: cannot read {file}: {exc.strerror or exc}"
        ) from None


def listen_tcp(server: grpc.Server, instance: Instance) -> str:
    """Bind the TCP listener (with TLS if configured); its address, with the port chosen for 0.

    Unreadable key or certificate files and addresses that cannot be bound are configuration
    errors naming the key, not tracebacks.
    """
    tcp = instance.config.grpc.tcp
    assert tcp is not None
    bind = f"{tcp.host}:{tcp.port}"
    tls = instance.config.grpc.tls
    try:
        if tls:
            pair = (
                _read_tls(instance, "key_file", tls.key_file),
                _read_tls(instance, "cert_file", tls.cert_file),
            )
            port = server.add_secure_port(bind, grpc.ssl_server_credentials([pair]))
        else:
            port = server.add_insecure_port(bind)
    except RuntimeError:  # grpc's "Failed to bind to address ..."
        port = 0
    if port == 0:
        raise ConfigError(f"{instance.config_file}: grpc.tcp: cannot listen on {bind}")
    return f"{tcp.host}:{port}"


def prepare_socket_dir(path: pathlib.Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    if path.exists() or path.is_symlink():
        path.unlink()


REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


def enable_reflection(server: grpc.Server, service_names: tuple[str, ...]) -> None:
    """Server reflection as ``grpc.reflection.v1`` and ``v1alpha``.

    grpcio-reflection serves only v1alpha; v1 is the same protocol under a new name (identical
    messages, field for field), so the one servicer answers both: clients that ask only v1
    (newer grpcurl, Postman, grpcui) list and describe dagd's services too. Describing the
    reflection service itself works under its v1alpha name only.
    """
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    servicer = reflection.ReflectionServicer((*service_names, reflection.SERVICE_NAME, REFLECTION_V1))
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1 = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(REFLECTION_V1, {"ServerReflectionInfo": v1}),)
    )


def start_servers(instance: Instance, control: ControlPlane) -> Servers:
    """Listen with the overall health SERVING and the API gated (not leading yet)."""
    out = Servers()
    out.set_alive(True)
    out.set_leading(False)
    socket = instance.socket_path
    prepare_socket_dir(socket)
    tcp = instance.config.grpc.tcp
    token = read_token(instance) if tcp else None
    addresses = [f"unix:{socket}"]
    if tcp:
        addresses.append(f"{tcp.host}:{tcp.port}")
    plan: list[tuple[grpc.Server, str | None]] = [(_new_server(instance, [out.gate]), None)]
    if tcp:
        assert token is not None
        # The gate inside the token check: an unauthenticated caller does not learn our role.
        plan.append((_new_server(instance, [TokenAuthInterceptor(token), out.gate]), "tcp"))
    for server, kind in plan:
        pb_grpc.add_RunServiceServicer_to_server(RunServicer(control), server)
        pb_grpc.add_DaemonServiceServicer_to_server(DaemonServicer(control), server)
        pb_grpc.add_QueueServiceServicer_to_server(QueueServicer(control), server)
        pb_grpc.add_InstigatorServiceServicer_to_server(InstigatorServicer(control.instigators), server)
        pb_grpc.add_InstanceServiceServicer_to_server(
            InstanceServicer(control, addresses, os.getpid()), server
        )
        health_pb2_grpc.add_HealthServicer_to_server(out.health, server)
        enable_reflection(server, (*SERVICE_NAMES, health.SERVICE_NAME))
        if kind is None:
            server.add_insecure_port(f"unix:{socket}")
        else:
            addresses[1] = listen_tcp(server, instance)
        server.start()
        out.servers.append(server)
    os.chmod(socket, 0o600)
    out.addresses = addresses
    return out
