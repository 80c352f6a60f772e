"""gRPC settings shared by every hop: keepalive, message limits, metadata keys."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import grpc
from grpc_health.v1 import _async as health_aio  # the aio servicer; `health.aio` re-exports it
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.pb import recognizer_pb2

SESSION_ID_KEY = "x-session-id"
TRACEPARENT_KEY = "traceparent"
SUPPORTED_LANGUAGES_KEY = "x-supported-languages"
SUPPORTED_PROCESSES_KEY = "x-supported-processes"

# Keepalive on both sides, so a dead peer is noticed within seconds even when a session
# is silent; the limits stay above any audio frame the endpoint forwards (64 KiB).
CHANNEL_OPTIONS: Sequence[tuple[str, int]] = (
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 4 * 1024 * 1024),
)
SERVER_OPTIONS: Sequence[tuple[str, int]] = (
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.max_ping_strikes", 0),
    ("grpc.max_receive_message_length", 4 * 1024 * 1024),
)


def balanced_channel_options(address: str) -> list[tuple[str, Any]]:
    """Channel options for `address`; for several servers (a headless Service
    `dns:///name:port`, or `ipv4:a:port,b:port`), balance per stream over those whose
    grpc.health.v1 says SERVING for RECOGNIZER_SERVICE: a server that drains (NOT_SERVING)
    gets no new stream, and the channel re-resolves when a server ends a connection (the
    router's max connection age), so servers added later get their share
    (docs/architecture.md, "Drain")."""
    options: list[tuple[str, Any]] = list(CHANNEL_OPTIONS)
    if address.startswith(("dns:", "ipv4:", "ipv6:")):
        config = {
            "loadBalancingConfig": [{"round_robin": {}}],
            "healthCheckConfig": {"serviceName": RECOGNIZER_SERVICE},
        }
        options.append(("grpc.service_config", json.dumps(config)))
    return options


# grpc/grpc#36066: when a client's write races the server ending the call, grpc-python
# replaces the server's status with this one (a local failure of the write), whichever
# status the server sent. The server ended the call; only why is lost.
LOCAL_WRITE_FAILURE_DETAILS = "Internal error from Core"


def peer_status(code: grpc.StatusCode, details: str) -> grpc.StatusCode:
    """The status a call ended with, as this side must treat it. The INTERNAL that stands
    in for a status lost to a racing write (above) is UNAVAILABLE: the peer ended the call
    and may be retried or failed over, as for a broken transport. Every other status is
    the peer's own."""
    if code == grpc.StatusCode.INTERNAL and details == LOCAL_WRITE_FAILURE_DETAILS:
        return grpc.StatusCode.UNAVAILABLE
    return code


# The end of a stream read with call.read(); grpc-stubs (1.53) does not know it yet.
EOF: Any = grpc.aio.EOF  # type: ignore[attr-defined]

# The grpc.health.v1 service a client (the endpoint, the router) watches to know whether to
# send sessions ("" is the whole server).
RECOGNIZER_SERVICE = recognizer_pb2.DESCRIPTOR.services_by_name["Recognizer"].full_name

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def add_health(server: grpc.aio.Server) -> health_aio.HealthServicer:
    """Serve grpc.health.v1 on `server`; the caller sets the status as readiness changes."""
    servicer = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    return servicer


def metadata_value(metadata: Iterable[Any] | None, key: str) -> str:
    for k, v in metadata or ():
        if k == key:
            return v.decode() if isinstance(v, bytes) else v
    return ""
