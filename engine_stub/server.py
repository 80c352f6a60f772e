"""The WebSocket server around `Session`: admission, faults, pings, logs.

One connection is one session. Refusals (ENGINE_STUB_REFUSE, ENGINE_STUB_CAPACITY) happen
before the upgrade with HTTP 503; a session slot is taken in `process_request` and given
back when the TCP connection is lost, so a failed handshake cannot leak it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import ClassVar

from websockets.asyncio import server as ws_server
from websockets.asyncio.server import Server, ServerConnection
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol

from engine_stub.config import Settings
from engine_stub.faults import Action, Faults, garbage
from engine_stub.session import ProtocolViolation, Reply, Session, encode
from engine_stub.transcripts import Transcript, TranscriptError, load_table
from services.common.logs import session_id_var, summary

log = logging.getLogger("engine_stub")

MAX_FRAME = 2**20  # vosk-server's limit; larger frames are closed with 1009 by websockets


class DeafProtocol(ServerProtocol):
    """The sans-I/O protocol, except that it never sends a pong (ENGINE_STUB_IGNORE_PINGS)."""

    def send_frame(self, frame: Frame) -> None:
        if frame.opcode is not Opcode.PONG:
            super().send_frame(frame)


class StubConnection(ServerConnection):
    """A connection that runs callbacks when its TCP connection is lost, however it ends."""

    deaf: ClassVar[bool] = False  # build the connection over a `DeafProtocol`

    def __init__(
        self,
        protocol: ServerProtocol,
        server: Server,
        *,
        ping_interval: float | None = 20,
        ping_timeout: float | None = 20,
        close_timeout: float | None = 10,
        max_queue: int | tuple[int | None, int | None] | None = 16,
        write_limit: int | tuple[int, int | None] = 2**15,
    ) -> None:
        if self.deaf:  # same options as `serve` gave the protocol it built
            protocol = DeafProtocol(
                extensions=protocol.available_extensions,
                max_size=MAX_FRAME,
                logger=protocol.logger,
            )
        super().__init__(
            protocol,
            server,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            close_timeout=close_timeout,
            max_queue=max_queue,
            write_limit=write_limit,
        )
        self.on_lost: list[Callable[[], None]] = []

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        for callback in self.on_lost:
            callback()


class DeafConnection(StubConnection):
    deaf = True


@dataclass
class Stats:
    frames: int = 0
    audio_bytes: int = 0
    replies: int = 0


def _closed_outcome(connection: ServerConnection) -> str:
    protocol = connection.protocol
    if protocol.close_sent is None and protocol.close_rcvd is None:
        return "connection_lost"
    if protocol.close_sent is not None and protocol.close_sent.code == CloseCode.MESSAGE_TOO_BIG:
        return "frame_too_big"
    if protocol.close_rcvd_then_sent or protocol.close_sent is None:
        return "client_closed"
    return f"server_closed_{protocol.close_sent.code}"


class StubServer:
    def __init__(self, settings: Settings, table: Sequence[Transcript]) -> None:
        self.settings = settings
        self.table = table
        self.faults = Faults.from_settings(settings)
        self.active: set[ServerConnection] = set()

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        reason = None
        if self.settings.refuse:
            reason = "refusing every connection (ENGINE_STUB_REFUSE)"
        elif self.settings.capacity and len(self.active) >= self.settings.capacity:
            reason = f"at capacity ({self.settings.capacity} sessions)"
        if reason is not None:
            log.info("refused: %s", reason, extra={"status": 503})
            body = f"{reason}\n".encode()
            headers = Headers([("Content-Type", "text/plain; charset=utf-8")])
            headers["Content-Length"] = str(len(body))
            return Response(HTTPStatus.SERVICE_UNAVAILABLE, "Service Unavailable", headers, body)
        self.active.add(connection)
        if isinstance(connection, StubConnection):
            connection.on_lost.append(lambda: self.active.discard(connection))
        return None

    async def handle(self, connection: ServerConnection) -> None:
        token = session_id_var.set(str(connection.id))
        stats = Stats()
        session = Session(self.settings.sample_rate, self.settings.segment_ms, self.table)
        started = time.monotonic()
        outcome = "internal_error"
        try:
            outcome = await self._serve(connection, session, stats)
        finally:
            if outcome == "closed":
                outcome = _closed_outcome(connection)
            transcript = session.transcript
            summary(
                log,
                outcome=outcome,
                frames=stats.frames,
                audio_bytes=stats.audio_bytes,
                replies=stats.replies,
                sample_rate=session.sample_rate,
                transcript=transcript.name if transcript is not None else None,
                duration_seconds=round(time.monotonic() - started, 3),
            )
            session_id_var.reset(token)

    async def _serve(self, connection: ServerConnection, session: Session, stats: Stats) -> str:
        if self.faults.close_now(0):
            return await self._fault_close(connection)
        with contextlib.suppress(ConnectionClosed):  # the outcome is read from the protocol
            async for message in connection:
                action = self.faults.action(stats.frames)
                if isinstance(message, bytes):
                    stats.frames += 1
                    stats.audio_bytes += len(message)
                if action is not Action.DROP:
                    reply: Reply | None
                    try:
                        if isinstance(message, bytes):
                            reply = session.audio(message)
                        else:
                            reply = session.text(message)
                    except ProtocolViolation as exc:
                        log.warning("protocol violation: %s; closing 1011", exc)
                        await connection.close(CloseCode.INTERNAL_ERROR)
                        return "protocol_error"
                    if reply is not None:
                        text = encode(reply.message)
                        if action is Action.GARBAGE:
                            text = garbage(stats.frames)
                        await self._send(connection, text, stats)
                        if reply.final:
                            await connection.close()
                            return "eof"
                if isinstance(message, bytes) and self.faults.close_now(stats.frames):
                    return await self._fault_close(connection)
        return "closed"

    async def _send(self, connection: ServerConnection, text: str, stats: Stats) -> None:
        if self.settings.frame_latency_ms:
            await asyncio.sleep(self.settings.frame_latency_ms / 1000)
        await connection.send(text)
        stats.replies += 1

    async def _fault_close(self, connection: ServerConnection) -> str:
        if self.settings.close_mode == "abort":
            connection.transport.abort()
            return "fault_abort"
        await connection.close(CloseCode.INTERNAL_ERROR)
        return "fault_close_1011"

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set; then close every connection (1001) and return.

        Engines do not drain (vosk-server cannot): open sessions end at once."""
        settings = self.settings
        if settings.startup_delay:
            log.info("port opens in %s s (ENGINE_STUB_STARTUP_DELAY)", settings.startup_delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), settings.startup_delay)
            if stop.is_set():
                return
        async with ws_server.serve(
            self.handle,
            settings.host,
            settings.port,
            process_request=self.process_request,
            create_connection=DeafConnection if settings.ignore_pings else StubConnection,
            max_size=MAX_FRAME,
            ping_interval=settings.ping_interval or None,
            ping_timeout=settings.ping_timeout,
        ) as server:
            ports = sorted({s.getsockname()[1] for s in server.sockets})
            log.info(
                "listening on %s:%s",
                settings.host,
                ",".join(map(str, ports)),
                extra={"transcripts": [t.name for t in self.table]},
            )
            await stop.wait()
            log.info("stopping: closing %d connections", len(self.active))


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """engine_stub's part of `run_service`: load the transcript table, serve until `stop`."""
    if settings.log_level != "DEBUG":
        # websockets logs every open and close; the session summary says it once.
        logging.getLogger("websockets").setLevel(logging.WARNING)
    try:
        table = load_table(settings.transcripts)
    except TranscriptError as exc:
        sys.stderr.write(f"invalid settings:\n  ENGINE_STUB_TRANSCRIPTS: {exc}\n")
        raise SystemExit(2) from None
    try:
        await StubServer(settings, table).run(stop)
    except OSError as exc:
        sys.stderr.write(f"engine_stub: cannot listen on {settings.host}:{settings.port}: {exc}\n")
        raise SystemExit(1) from None
