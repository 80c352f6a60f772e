"""`POST /` is admitted before its body is read, streams the body on as it arrives, and is
bounded in size, duration and time; drain ends it like a WebSocket session (issue 13, item 3).

The requests are written by hand on a raw socket, so a test can send part of a body and
stall, as a slow or hostile client does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.support.client import mimi_headers
from tests.support.processes import Service
from tests.support.stack import Stack

SECOND = 32000  # bytes of 16 kHz mono s16le
ANSWER_WITHIN = 8.0  # far below any timeout that would answer on the old code


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: dict[str, Any]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Service]]:
    with Stack(tmp_path_factory.mktemp("stack")) as stack:
        ja = stack.intermediate("im-ja", [stack.engine_stub("engine-ja")])
        yield stack, stack.router({"ja": [ja]})


class RawPost:
    """One POST / on its own connection: headers with a Content-Length, then the body
    in parts as the test sends them."""

    def __init__(self, port: int, content_length: int, headers: dict[str, str]) -> None:
        self.port = port
        self.content_length = content_length
        self.headers = headers
        self.reader: asyncio.StreamReader
        self.writer: asyncio.StreamWriter

    async def start(self) -> RawPost:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        lines = [
            "POST / HTTP/1.1",
            f"Host: 127.0.0.1:{self.port}",
            f"Content-Length: {self.content_length}",
            *(f"{name}: {value}" for name, value in self.headers.items()),
        ]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await self.writer.drain()
        return self

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def answer(self, within: float = ANSWER_WITHIN) -> Answer:
        try:
            async with asyncio.timeout(within):
                head = await self.reader.readuntil(b"\r\n\r\n")
                status_line, *header_lines = head.decode().split("\r\n")
                headers = {
                    name.strip().lower(): value.strip()
                    for name, _, value in (line.partition(":") for line in header_lines if line)
                }
                body = await self.reader.readexactly(int(headers["content-length"]))
        finally:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        return Answer(int(status_line.split()[1]), headers, json.loads(body))


def error_code(answer: Answer) -> tuple[str, bool]:
    error = answer.body["error"]
    return error["code"], error["retryable"]


async def test_post_over_the_session_cap_is_refused_before_its_body(
    stack: tuple[Stack, Service],
) -> None:
    """The per-process cap is checked before the body is read: 503 at once, not after it."""
    endpoint = stack[0].endpoint(stack[1], max_sessions_per_process=1)
    port = endpoint.ports["http"]
    async with connect(f"ws://127.0.0.1:{port}/", additional_headers=mimi_headers()):
        post = await RawPost(port, 10 * SECOND, mimi_headers()).start()
        await post.send(b"\0" * 3200)  # the rest never comes
        answer = await post.answer()
    assert answer.status == 503
    assert error_code(answer) == ("too_many_sessions", True)
    assert "retry-after" in answer.headers


async def test_post_longer_than_a_session_is_413_up_front(stack: tuple[Stack, Service]) -> None:
    """A declared body holding more audio than a session may is refused before it is read,
    as 413 that is not retryable (it would fail again)."""
    endpoint = stack[0].endpoint(stack[1], max_session_seconds=2)
    post = await RawPost(endpoint.ports["http"], 3 * SECOND, mimi_headers()).start()
    answer = await post.answer()
    assert answer.status == 413
    assert error_code(answer) == ("audio_too_long", False)


async def test_a_stalled_upload_is_cut_with_408(stack: tuple[Stack, Service]) -> None:
    """A body that stops arriving for the idle time gets 408 idle_timeout."""
    endpoint = stack[0].endpoint(stack[1], idle_timeout=1)
    post = await RawPost(endpoint.ports["http"], 2 * SECOND, mimi_headers()).start()
    await post.send(b"\0" * 3200)
    answer = await post.answer()
    assert answer.status == 408
    assert answer.body["error"]["code"] == "idle_timeout"
    assert answer.body["error"]["retryable"] is False


async def test_a_body_sent_in_parts_is_recognised_as_it_arrives(
    stack: tuple[Stack, Service],
) -> None:
    """A body paced like a live upload (ten parts, 0.1 s apart) answers its recog-finished."""
    endpoint = stack[0].endpoint(stack[1], idle_timeout=1)
    audio = os.urandom(SECOND)
    post = await RawPost(endpoint.ports["http"], len(audio), mimi_headers()).start()
    for offset in range(0, len(audio), 3200):
        await post.send(audio[offset : offset + 3200])
        await asyncio.sleep(0.1)  # the pace of the upload itself
    answer = await post.answer()
    assert answer.status == 200
    assert answer.body["status"] == "recog-finished"


async def test_drain_ends_a_post_in_flight_at_the_deadline(stack: tuple[Stack, Service]) -> None:
    """A POST still uploading when the drain deadline passes gets 503 draining (retryable),
    and the process exits."""
    endpoint = stack[0].endpoint(stack[1], drain_seconds=1)
    post = await RawPost(endpoint.ports["http"], 10 * SECOND, mimi_headers()).start()
    await post.send(b"\0" * 3200)
    endpoint.signal(signal.SIGTERM)
    answer = await post.answer()
    assert answer.status == 503
    assert error_code(answer) == ("draining", True)
    assert "retry-after" in answer.headers
    exit_code = await asyncio.wait_for(asyncio.to_thread(endpoint.proc.wait), 15)
    assert exit_code == 0


async def test_a_chunked_body_longer_than_a_session_is_413_as_it_arrives(
    stack: tuple[Stack, Service],
) -> None:
    """Without Content-Length the same bound applies once the audio passes it."""
    endpoint = stack[0].endpoint(stack[1], max_session_seconds=2)

    async def body() -> AsyncIterator[bytes]:
        for _ in range(30):  # 3 s of audio in 0.1 s parts
            yield b"\0" * 3200

    url = f"http://127.0.0.1:{endpoint.ports['http']}/"
    async with httpx.AsyncClient(timeout=ANSWER_WITHIN) as client:
        response = await client.post(url, headers=mimi_headers(), content=body())
    assert "content-length" not in response.request.headers  # sent chunked
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "audio_too_long"


async def test_a_trickled_upload_counts_as_idle(stack: tuple[Stack, Service]) -> None:
    """Two bytes every 0.2 s are not audio worth its name: 408 idle_timeout at the idle time."""
    endpoint = stack[0].endpoint(stack[1], idle_timeout=1)
    post = await RawPost(endpoint.ports["http"], 2 * SECOND, mimi_headers()).start()

    async def trickle() -> None:
        with contextlib.suppress(OSError):  # the server answers and closes
            while True:
                await post.send(b"\0\0")
                await asyncio.sleep(0.2)

    sender = asyncio.create_task(trickle())
    try:
        answer = await post.answer(within=5)
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
    assert answer.status == 408
    assert answer.body["error"]["code"] == "idle_timeout"
