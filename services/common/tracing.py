"""Tracing: W3C `traceparent` across every hop; OpenTelemetry export when OTEL_* asks.

Off by default: with no OTEL_EXPORTER_OTLP(_TRACES)_ENDPOINT and OTEL_TRACES_EXPORTER not
`otlp`, nothing is exported and a client's `traceparent` is passed on unchanged, so a
tracing system further along still sees one trace. On, each tier records one span per
session (child of the incoming `traceparent`) and passes its own span on. The standard
OTEL_* variables (service name, headers, sampler, ...) configure the SDK and exporter.

Spans are started and ended explicitly, never made "current": a session is served by
async generators that may be finalised in another context, where detaching a current
span fails.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_propagator = TraceContextTextMapPropagator()
_provider: Any = None


def tracing_requested(environ: Mapping[str, str]) -> bool:
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none" or environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    return bool(endpoint) or exporter == "otlp"


def configure_tracing(service: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Install the SDK with an OTLP exporter when the environment asks; True if it did."""
    global _provider
    if not tracing_requested(environ):
        return False
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = environ.get("OTEL_SERVICE_NAME") or f"kikimimi-{service}"
    _provider = TracerProvider(resource=Resource.create({"service.name": name}))
    _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(_provider)
    return True


def shutdown_tracing() -> None:
    """Flush spans still buffered (at process exit)."""
    if _provider is not None:
        _provider.shutdown()


class SessionSpan:
    """One tier's span of one session, child of the incoming `traceparent`."""

    def __init__(self, tier: str, traceparent: str, session_id: str) -> None:
        parent = _propagator.extract({"traceparent": traceparent}) if traceparent else None
        self.span = trace.get_tracer("kikimimi").start_span(
            f"{tier} session",
            context=parent,
            kind=trace.SpanKind.SERVER,
            attributes={"kikimimi.session_id": session_id},
        )
        carrier: dict[str, str] = {}
        _propagator.inject(carrier, context=trace.set_span_in_context(self.span))
        # Off, the span is the parent's own context: pass the client's traceparent on.
        self.traceparent = carrier.get("traceparent", traceparent)

    def set(self, **attributes: str | int | float | bool) -> None:
        for key, value in attributes.items():
            self.span.set_attribute(f"kikimimi.{key}", value)

    def end(self, outcome: str) -> None:
        self.span.set_attribute("kikimimi.outcome", outcome)
        if outcome not in ("ok", "client_gone"):
            self.span.set_status(trace.Status(trace.StatusCode.ERROR, outcome))
        self.span.end()
