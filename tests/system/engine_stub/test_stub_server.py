"""engine_stub as a real process on a free port, seen by a real websockets client."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus

from engine_stub.build_transcript import build
from services.common.audio import SAMPLE_RATE
from services.common.engine_messages import EOF_MESSAGE, config_message
from tests.support.audio import FRAME, SECOND, frames, sample_audio
from tests.support.engine_stub import expected_segments
from tests.support.processes import ROOT, Service, free_port, start_service, wait_for_port

TIMEOUT = 5.0


@contextlib.contextmanager
def stub(**env: str) -> Iterator[tuple[str, Service]]:
    """Run engine_stub with ENGINE_STUB_<KEY>=value for each keyword; yield its URL."""
    port = free_port()
    variables = {f"ENGINE_STUB_{key.upper()}": value for key, value in env.items()}
    variables |= {"ENGINE_STUB_PORT": str(port), "ENGINE_STUB_LOG_FORMAT": "json"}
    service = start_service("engine_stub", "engine_stub", variables, wait_port=port)
    try:
        yield f"ws://127.0.0.1:{port}", service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with stub() as (address, _):
        yield address


@contextlib.asynccontextmanager
async def session(address: str) -> AsyncIterator[ClientConnection]:
    async with connect(
        address, ping_interval=None, open_timeout=TIMEOUT, close_timeout=TIMEOUT
    ) as ws:
        yield ws


async def reply(ws: ClientConnection, within: float = TIMEOUT) -> dict[str, Any]:
    message = await asyncio.wait_for(ws.recv(), within)
    assert isinstance(message, str)
    result = json.loads(message)
    assert isinstance(result, dict)
    return result


async def closed(ws: ClientConnection) -> ConnectionClosed:
    """Wait for the server to close the connection; return how it closed."""
    with pytest.raises(ConnectionClosed) as info:
        await asyncio.wait_for(ws.recv(), TIMEOUT)
    return info.value


def digest(audio: bytes) -> str:
    return f"bytes={len(audio)} sha256={hashlib.sha256(audio).hexdigest()[:16]}"


async def test_one_reply_per_frame_in_order(url: str) -> None:
    """Every audio frame gets one partial naming the running byte total, in order."""
    async with session(url) as ws:
        await ws.send(config_message(SAMPLE_RATE))
        total = 0
        for size in (3200, 2, 6400, 40000, 1000):
            await ws.send(os.urandom(size))
            total += size
            assert await reply(ws) == {"partial": f"bytes={total}"}


async def test_eof_gives_final_then_close_1000(url: str) -> None:
    """Exactly `{"eof" : 1}` gets the byte count and hash of all audio, then close 1000."""
    audio = os.urandom(50000)
    async with session(url) as ws:
        for chunk in frames(audio, 6400):
            await ws.send(chunk)
            await reply(ws)
        await ws.send(EOF_MESSAGE)
        text = digest(audio)
        assert await reply(ws) == {
            "text": text,
            "result": [{"conf": 1.0, "end": 1.5625, "start": 0.0, "word": text}],
        }
        exc = await closed(ws)
    assert exc.rcvd is not None
    assert exc.rcvd.code == 1000


@pytest.mark.parametrize("text", ['{"eof": 1}', "not json", '{"hello": 1}'])
async def test_bad_text_closes_1011(url: str, text: str) -> None:
    """Any other text frame, even another spelling of eof, closes 1011 with no reply."""
    async with session(url) as ws:
        await ws.send(b"\x00" * FRAME)
        await reply(ws)
        await ws.send(text)
        exc = await closed(ws)
    assert isinstance(exc, ConnectionClosedError)
    assert exc.rcvd is not None
    assert (exc.rcvd.code, exc.rcvd.reason) == (1011, "")


async def test_odd_frame_closes_1011(url: str) -> None:
    """An odd-length audio frame closes 1011."""
    async with session(url) as ws:
        await ws.send(b"\x00" * 3201)
        exc = await closed(ws)
    assert exc.rcvd is not None
    assert exc.rcvd.code == 1011


async def test_frame_over_one_mebibyte_closes_1009(url: str) -> None:
    """A frame over 1 MiB closes 1009."""
    async with session(url) as ws:
        await ws.send(b"\x00" * (2**20 + 2))
        exc = await closed(ws)
    assert exc.rcvd is not None
    assert exc.rcvd.code == 1009


@pytest.mark.parametrize("size", [3200, 32000])
async def test_sample_segments_arrive_as_audio_arrives(url: str, size: int) -> None:
    """The real sample gets its three segments in order, two of them before eof."""
    expected = expected_segments()
    segments = []
    async with session(url) as ws:
        await ws.send(config_message(SAMPLE_RATE))
        sent = 0
        for chunk in frames(sample_audio(), size):
            await ws.send(chunk)
            sent += len(chunk)
            message = await reply(ws)
            if "text" in message:
                segments.append((sent, message))
        await ws.send(EOF_MESSAGE)
        segments.append((sent, await reply(ws)))
    assert [m for _, m in segments] == [{"text": s.text, "result": s.words} for s in expected]
    for (sent, _), segment in zip(segments[:2], expected, strict=False):
        assert segment.end_byte <= sent < segment.end_byte + size


async def test_capacity_refuses_one_more_with_503() -> None:
    """With CAPACITY=2 the third concurrent connection is refused with 503, until one ends."""
    with stub(capacity="2") as (address, _):
        async with session(address) as first, session(address):
            with pytest.raises(InvalidStatus) as info:
                async with session(address):
                    pass
            assert info.value.response.status_code == 503
            await first.close()
            async with session(address) as again:
                await again.send(b"\x00\x00")
                assert await reply(again) == {"partial": "bytes=2"}


async def test_refuse_answers_503() -> None:
    """With REFUSE every handshake is refused with 503."""
    with stub(refuse="true") as (address, _), pytest.raises(InvalidStatus) as info:
        async with session(address):
            pass
    assert info.value.response.status_code == 503


def test_startup_delay_keeps_the_port_closed() -> None:
    """With STARTUP_DELAY the port is closed at first and opens later."""
    port = free_port()
    env = {"ENGINE_STUB_PORT": str(port), "ENGINE_STUB_STARTUP_DELAY": "1.0"}
    service = start_service("engine_stub", "engine_stub", env, wait_port=None)
    try:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), 1).close()
        wait_for_port(port, 15, service.proc)
    finally:
        service.stop()


async def test_frame_latency_delays_each_reply() -> None:
    """With FRAME_LATENCY_MS=300 a reply comes no sooner than 0.3 s after its frame."""
    with stub(frame_latency_ms="300") as (address, _):
        async with session(address) as ws:
            started = time.monotonic()
            await ws.send(b"\x00\x00")
            await reply(ws)
            assert time.monotonic() - started >= 0.3


async def test_hang_stops_replies_but_answers_pings() -> None:
    """With HANG_AFTER_FRAMES=2 the third frame and eof get no reply, yet pings get pongs."""
    with stub(hang_after_frames="2") as (address, _):
        async with session(address) as ws:
            for _ in range(2):
                await ws.send(b"\x00" * FRAME)
                await reply(ws)
            await ws.send(b"\x00" * FRAME)
            await ws.send(EOF_MESSAGE)
            with pytest.raises(TimeoutError):
                await reply(ws, within=0.5)
            pong = await ws.ping()
            await asyncio.wait_for(pong, TIMEOUT)


async def test_ignore_pings_never_pongs_but_replies() -> None:
    """With IGNORE_PINGS a ping gets no pong, while audio is still answered."""
    with stub(ignore_pings="1") as (address, _):
        async with session(address) as ws:
            pong = await ws.ping()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(pong, 0.5)
            await ws.send(b"\x00" * FRAME)
            assert await reply(ws) == {"partial": f"bytes={FRAME}"}


@pytest.mark.parametrize("mode", ["1011", "abort"])
async def test_close_after_frames(mode: str) -> None:
    """With CLOSE_AFTER_FRAMES=2 two frames are answered, then close 1011 or a dropped TCP."""
    with stub(close_after_frames="2", close_mode=mode) as (address, _):
        async with session(address) as ws:
            for _ in range(2):
                await ws.send(b"\x00" * FRAME)
                await reply(ws)
            exc = await closed(ws)
    assert isinstance(exc, ConnectionClosedError)
    if mode == "abort":
        assert exc.rcvd is None  # the client sees 1006
    else:
        assert exc.rcvd is not None
        assert exc.rcvd.code == 1011


async def test_garbage_after_frames() -> None:
    """With GARBAGE_AFTER_FRAMES=1 the second reply is text that is not JSON."""
    with stub(garbage_after_frames="1") as (address, _):
        async with session(address) as ws:
            await ws.send(b"\x00" * FRAME)
            await reply(ws)
            await ws.send(b"\x00" * FRAME)
            text = await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert isinstance(text, str)
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


async def test_client_that_never_pongs_is_closed() -> None:
    """The stub pings every PING_INTERVAL and closes a client that does not answer."""
    with stub(ping_interval="0.2", ping_timeout="0.3") as (address, _):
        port = int(address.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert head.startswith(b"HTTP/1.1 101")
        frames_seen = await asyncio.wait_for(reader.read(), TIMEOUT)  # until the stub closes
        writer.close()
        await writer.wait_closed()
    assert frames_seen[:1] == b"\x89"  # a ping
    assert b"\x88" in frames_seen  # then a close frame


def test_bad_settings_exit_naming_the_variable() -> None:
    """A bad value stops start-up with exit code 2 and a message naming the variable."""
    env = {**os.environ, "ENGINE_STUB_PORT": "not-a-port", "ENGINE_STUB_CLOSE_MODE": "later"}
    done = subprocess.run(
        [sys.executable, "-m", "engine_stub"], cwd=ROOT, env=env, capture_output=True, timeout=30
    )
    assert done.returncode == 2
    assert b"ENGINE_STUB_PORT" in done.stderr
    assert b"ENGINE_STUB_CLOSE_MODE" in done.stderr


async def test_summary_lines_and_sigterm() -> None:
    """Each session logs one JSON summary line; SIGTERM closes open sessions with 1001."""
    with stub() as (address, service):
        async with session(address) as ws:
            await ws.send(b"\x00" * 6400)
            await reply(ws)
            await ws.send(EOF_MESSAGE)
            await reply(ws)
            await closed(ws)
        async with session(address) as ws:
            await ws.send(b"\x00" * 2)
            await reply(ws)
            assert await asyncio.to_thread(service.stop) == 0
            exc = await closed(ws)
        assert exc.rcvd is not None
        assert exc.rcvd.code == 1001
        lines = [json.loads(line) for line in service.log_text().splitlines()]
    summaries = [line for line in lines if line.get("summary")]
    assert [(s["outcome"], s["frames"], s["audio_bytes"]) for s in summaries] == [
        ("eof", 1, 6400),
        ("server_closed_1001", 1, 2),
    ]
    assert all(s["session_id"] for s in summaries)


def test_missing_transcripts_directory_exits_naming_the_variable(tmp_path: Path) -> None:
    """A TRANSCRIPTS directory that does not exist stops start-up naming the variable."""
    env = {**os.environ, "ENGINE_STUB_TRANSCRIPTS": str(tmp_path / "missing")}
    done = subprocess.run(
        [sys.executable, "-m", "engine_stub"], cwd=ROOT, env=env, capture_output=True, timeout=30
    )
    assert done.returncode == 2
    assert b"ENGINE_STUB_TRANSCRIPTS" in done.stderr


async def test_extra_transcript_answers_its_sample(tmp_path: Path) -> None:
    """A transcript in the TRANSCRIPTS directory gives its sentence for its audio."""
    audio = os.urandom(SECOND)
    expected = {
        "audio": "noise.raw",
        "language": "en",
        "words": [
            {"result": "hello", "time": [100, 400]},
            {"result": "world", "time": [500, 900]},
        ],
        "nict_v2_determined_segments": [{"result": "hello world", "words": ["hello", "world"]}],
    }
    table = tmp_path / "table"
    table.mkdir()
    entry = build(audio, expected, "noise", SAMPLE_RATE)
    (table / "noise.json").write_text(entry.model_dump_json(), encoding="utf-8")
    with stub(transcripts=str(table)) as (address, _):
        async with session(address) as ws:
            await ws.send(audio)
            assert await reply(ws) == {"partial": "hello world"}
            await ws.send(EOF_MESSAGE)
            assert await reply(ws) == {
                "text": "hello world",
                "result": [
                    {"conf": 1.0, "end": 0.4, "start": 0.1, "word": "hello"},
                    {"conf": 1.0, "end": 0.9, "start": 0.5, "word": "world"},
                ],
            }
