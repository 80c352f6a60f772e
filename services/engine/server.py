"""The WebSocket layer: admission, one `EngineSession` per connection, replies in order.

Thin on purpose: the protocol is in `protocol`, decoding behind `backend.Recognition`
(pocketsphinx's `workers`, or `whisper`). Sessions beyond the
capacity are refused at the handshake with HTTP 503 (a slot is held from the handshake until
the connection is lost, so a failed handshake never leaks one). Every failure ends the
session with a bare close 1011, as vosk-server does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from http import HTTPStatus

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from services.common.logs import session_id_var, summary
from services.engine.backend import Recognition
from services.engine.config import Settings
from services.engine.errors import EngineError
from services.engine.metrics import Metrics
from services.engine.protocol import EngineSession, Text

log = logging.getLogger(__name__)


class EngineServer:
    def __init__(self, settings: Settings, recognition: Recognition, metrics: Metrics) -> None:
        self.settings = settings
        self.recognition = recognition
        self.admitted = 0
        self.metrics = metrics

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path == "/metrics" and "upgrade" not in request.headers:
            return self._metrics_response(connection)
        if self.admitted >= self.settings.capacity:
            log.warning("refused: at capacity", extra={"capacity": self.settings.capacity})
            self.metrics.refused.inc()
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "engine at capacity\n")
        self.admitted += 1
        connection.connection_lost_waiter.add_done_callback(self._release)
        return None

    def _metrics_response(self, connection: ServerConnection) -> Response:
        response = connection.respond(HTTPStatus.OK, "")
        body = generate_latest(self.metrics.registry)
        del response.headers["Content-Type"]
        del response.headers["Content-Length"]
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        response.headers["Content-Length"] = str(len(body))
        return dataclasses.replace(response, body=body)

    def _release(self, _: object) -> None:
        self.admitted -= 1

    async def handler(self, connection: ServerConnection) -> None:
        session_id = uuid.uuid4().hex[:16]
        session_id_var.set(session_id)
        session = EngineSession(self.settings.sample_rate)
        decoding = self.recognition.session(session_id)
        started = time.monotonic()
        busy = 0.0  # seconds spent waiting for decoding
        final_latency: float | None = None
        outcome = "client-closed"
        self.metrics.active.inc()
        try:
            async for message in connection:
                if isinstance(message, bytes):
                    pcm = session.on_audio(message)
                    begun = time.monotonic()
                    result = await decoding.accept(pcm)
                    busy += time.monotonic() - begun
                    await connection.send(session.reply(result))
                    continue
                action = session.on_text(message)
                if action is Text.CONFIG:
                    continue
                begun = time.monotonic()
                if action is Text.EOF:
                    result = await decoding.finish(session.flush())
                else:
                    result = await decoding.finish(b"", time_base=session.audio_seconds)
                final_latency = time.monotonic() - begun
                busy += final_latency
                await connection.send(session.reply(result))
                if action is Text.EOF:
                    outcome = "ok"
                    await connection.close(1000)
                    break
        except EngineError as exc:
            outcome = "error"
            log.warning("session failed: %s", exc, extra={"error": type(exc).__name__})
            await connection.close(1011)
        except ConnectionClosed:
            outcome = "connection-lost"
        except Exception:
            outcome = "error"
            log.exception("session failed unexpectedly")
            await connection.close(1011)
        finally:
            await decoding.aclose()
            audio = session.audio_seconds
            self._record(outcome, audio, busy, final_latency)
            summary(
                log,
                outcome=outcome,
                audio_seconds=round(audio, 3),
                duration_seconds=round(time.monotonic() - started, 3),
                real_time_factor=round(busy / audio, 3) if audio else None,
                final_latency_ms=round(final_latency * 1000) if final_latency else None,
                sample_rate=session.sample_rate,
                worker=decoding.label,
            )

    def _record(self, outcome: str, audio: float, busy: float, final_latency: float | None) -> None:
        metrics = self.metrics
        metrics.active.dec()
        metrics.sessions.labels(outcome).inc()
        metrics.audio_seconds.inc(audio)
        metrics.decode_seconds.inc(busy)
        if audio:
            metrics.real_time_factor.observe(busy / audio)
        if final_latency is not None:
            metrics.final_latency.observe(final_latency)


async def run(
    settings: Settings, recognition: Recognition, metrics: Metrics, stop: asyncio.Event
) -> None:
    """Serve until `stop` is set; the recogniser's model is loaded already."""
    engine = EngineServer(settings, recognition, metrics)
    server: Server
    async with serve(
        engine.handler,
        settings.host,
        settings.port,
        process_request=engine.process_request,
        ping_interval=settings.ping_interval,
        ping_timeout=settings.ping_timeout,
        max_size=settings.max_message_bytes,
        # Audio frames are queued one by one; the handler answers each before the next.
        max_queue=16,
    ) as server:
        ports = sorted({sock.getsockname()[1] for sock in server.sockets})
        log.info("listening", extra={"host": settings.host, "ports": ports})
        await stop.wait()
        log.info("stopping")
