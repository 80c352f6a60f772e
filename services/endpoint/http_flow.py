"""mimi's HTTP variant: `POST /` with the session parameters and the audio as the body
answers one `recog-finished` JSON message (or the refusal / error as JSON).

The request is admitted before its body is read (parameters, token, the session cap,
drain), a declared body that is too large or holds more audio than a session may is
refused up front (413), and the body is streamed on to the backend as it arrives — never
held whole. Time is bounded like a WebSocket session's: `ENDPOINT_IDLE_TIMEOUT` without
audio and `ENDPOINT_MAX_SESSION_SECONDS` of upload are 408, `ENDPOINT_FINAL_TIMEOUT`
after the body is 503; the drain deadline ends it with 503 `draining`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from services.common.audio import BYTES_PER_SAMPLE, PCM_BYTES_PER_SECOND
from services.endpoint.admission import Admission
from services.endpoint.audio import MIN_ACTIVITY_BYTES, AudioNormaliser, audio_errors
from services.endpoint.backend import BackendStream
from services.endpoint.config import Settings
from services.endpoint.errors import CLOSE_GOING_AWAY, CLOSE_INTERNAL, Refusal, SessionError
from services.endpoint.flow import CLIENT_GONE, SessionFlow, SessionStart
from services.endpoint.formats import FINISHED, ResultFormatter
from services.endpoint.handshake import AudioSpec, SessionParams

TRANSPORT = "http"
# The HTTP status of each error after the session opened; others are 503 when retryable,
# else 500.
ERROR_STATUS = {
    "invalid_audio": 400,
    "audio_too_long": 413,
    "body_too_large": 413,
    "idle_timeout": 408,
    "session_too_long": 408,
}


def pcm_seconds(spec: AudioSpec, size: int) -> float | None:
    """Seconds of audio in `size` bytes of PCM; None for FLAC (known only once decoded)."""
    if spec.encoding != "pcm":
        return None
    return size / (spec.rate * spec.channels * BYTES_PER_SAMPLE)


@dataclass(eq=False)
class HttpFlow:
    settings: Settings
    admission: Admission
    flow: SessionFlow

    async def __call__(self, request: Request) -> Response:
        start = SessionStart.of(request)
        try:
            with self.admission.admitted(start.headers, start.query) as applicant:
                params = applicant.params
                self._check_declared_length(params, start.headers)
                stream = await self.flow.open(params, start)
                return await self._recognise(request, params, stream, start)
        except Refusal as refusal:  # only before the body is read
            return self.flow.refused(refusal)

    def _check_declared_length(self, params: SessionParams, headers: Mapping[str, str]) -> None:
        declared = headers.get("content-length", "")
        if not declared.isdigit():
            return  # chunked: the same limits apply as the body arrives
        size = int(declared)
        if size > self.settings.max_post_bytes:
            raise Refusal(413, "body_too_large", _too_large(self.settings.max_post_bytes))
        seconds = pcm_seconds(params.audio, size)
        if seconds is not None and seconds > self.settings.max_session_seconds:
            raise Refusal(413, "audio_too_long", _too_long(self.settings.max_session_seconds))

    async def _recognise(
        self,
        request: Request,
        params: SessionParams,
        stream: BackendStream,
        start: SessionStart,
    ) -> Response:
        settings = self.settings
        formatter = ResultFormatter(
            params.process, params.language, params.options, start.session_id
        )
        normaliser = AudioNormaliser(params.audio, settings.max_session_seconds)
        outcome, status, answer = "internal_error", 500, {}
        retry_headers: dict[str, str] | None = None
        try:
            with self.flow.accepted(params.process):
                answer = await self._run(request, params.audio, stream, normaliser, formatter)
                outcome, status = "ok", 200
        except SessionError as error:
            outcome = error.code
            answer = formatter.error(error.code, error.message, error.retryable)
            status = ERROR_STATUS.get(error.code, 503 if error.retryable else 500)
            if error.retryable:
                retry_headers = {"Retry-After": str(settings.retry_after_seconds)}
        except (ClientDisconnect, asyncio.CancelledError) as exc:
            outcome = CLIENT_GONE
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            await normaliser.aclose()
            self.flow.ended(
                TRANSPORT,
                params,
                stream,
                start,
                outcome,
                normaliser.output_bytes / PCM_BYTES_PER_SECOND,
                status=status,
            )
        return JSONResponse(answer, status, headers=retry_headers)

    async def _run(
        self,
        request: Request,
        spec: AudioSpec,
        stream: BackendStream,
        normaliser: AudioNormaliser,
        formatter: ResultFormatter,
    ) -> dict[str, Any]:
        """The body to the backend and the final result back, side by side; the first
        failure of either (or the drain deadline) ends both."""
        body = self._body(request, spec, normaliser)
        sender = asyncio.create_task(_send_body(body, stream, normaliser), name="post-audio")
        reader = asyncio.create_task(_final(stream, formatter), name="post-results")
        tasks = {
            sender,
            reader,
            asyncio.create_task(self._final_deadline(sender), name="post-final-deadline"),
            asyncio.create_task(self._drain_deadline(), name="post-drain-deadline"),
        }
        try:
            pending = set(tasks)
            while reader in pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()  # the first failure ends both sides
            return reader.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await body.aclose()

    async def _body(
        self, request: Request, spec: AudioSpec, normaliser: AudioNormaliser
    ) -> AsyncGenerator[bytes, None]:
        """The body's chunks as they arrive, within the size, duration and time limits.
        Idle is measured as in a WebSocket session: only audio restarts the timer."""
        settings = self.settings
        now = time.monotonic()
        deadline = now + settings.max_session_seconds
        idle_from, active_bytes = now, 0
        chunks = request.stream()
        size = 0
        while True:
            if normaliser.output_bytes - active_bytes >= MIN_ACTIVITY_BYTES:
                idle_from, active_bytes = time.monotonic(), normaliser.output_bytes
            now = time.monotonic()
            remaining = deadline - now
            idle_left = idle_from + settings.idle_timeout - now
            idle_bound = idle_left < remaining
            try:
                async with asyncio.timeout(idle_left if idle_bound else remaining):
                    chunk = await anext(chunks, None)
            except TimeoutError:
                if idle_bound:
                    raise SessionError(
                        CLOSE_INTERNAL,
                        "idle_timeout",
                        f"no audio for {settings.idle_timeout:g} s",
                    ) from None
                raise SessionError(
                    CLOSE_INTERNAL,
                    "session_too_long",
                    f"the upload exceeded {settings.max_session_seconds:g} s",
                ) from None
            if chunk is None:
                return
            size += len(chunk)
            if size > settings.max_post_bytes:
                raise SessionError(
                    CLOSE_INTERNAL, "body_too_large", _too_large(settings.max_post_bytes)
                )
            seconds = pcm_seconds(spec, size)
            if seconds is not None and seconds > settings.max_session_seconds:
                raise SessionError(
                    CLOSE_INTERNAL, "audio_too_long", _too_long(settings.max_session_seconds)
                )
            if chunk:
                yield chunk

    async def _final_deadline(self, sender: asyncio.Task[None]) -> None:
        """Fail a request whose backend gives no final result long after the body ended."""
        await asyncio.wait({sender})
        await asyncio.sleep(self.settings.final_timeout)
        raise SessionError(
            CLOSE_INTERNAL, "backend_timeout", "no final result in time", retryable=True
        )

    async def _drain_deadline(self) -> None:
        await self.admission.tracker.expired.wait()
        raise SessionError(
            CLOSE_GOING_AWAY, "draining", "the server is shutting down; retry", retryable=True
        )


async def _send_body(
    body: AsyncIterator[bytes], stream: BackendStream, normaliser: AudioNormaliser
) -> None:
    with audio_errors():
        async for chunk in body:
            await normaliser.feed(chunk, stream.send_audio)
        await normaliser.finish(stream.send_audio)
    await stream.end()


def _too_large(limit: int) -> str:
    return f"the audio body exceeds {limit} bytes"


def _too_long(seconds: float) -> str:
    return f"the audio is longer than a session may be ({seconds:g} s); split it"


async def _final(stream: BackendStream, formatter: ResultFormatter) -> dict[str, Any]:
    final: dict[str, Any] = {}
    async for reply in stream.results():
        for message in formatter.feed(reply, 0):
            if message["status"] == FINISHED:
                final = message
    return final
