"""Tracing is off unless OTEL_* asks, and a client's traceparent still crosses the hops."""

from __future__ import annotations

from services.common.tracing import SessionSpan, tracing_requested

CLIENT_TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_tracing_is_off_without_otel_variables() -> None:
    """No OTLP endpoint and no exporter named: nothing is exported."""
    assert not tracing_requested({})
    assert not tracing_requested({"OTEL_TRACES_EXPORTER": "none"})


def test_an_otlp_endpoint_or_exporter_switches_tracing_on() -> None:
    """The standard variables switch export on; OTEL_SDK_DISABLED keeps it off."""
    assert tracing_requested({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"})
    assert tracing_requested({"OTEL_TRACES_EXPORTER": "otlp"})
    assert not tracing_requested(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_SDK_DISABLED": "true"}
    )


def test_with_tracing_off_the_client_traceparent_is_passed_on_unchanged() -> None:
    """Off, a tier forwards exactly the traceparent it received."""
    span = SessionSpan("router", CLIENT_TRACEPARENT, "s1")
    assert span.traceparent == CLIENT_TRACEPARENT
    span.end("ok")


def test_with_tracing_off_and_no_traceparent_nothing_is_invented() -> None:
    """Off, a session without a traceparent sends none downstream."""
    span = SessionSpan("endpoint", "", "s1")
    assert span.traceparent == ""
    span.end("ok")
