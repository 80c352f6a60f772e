"""mimi's HTTP variant: `POST /` with the session parameters and the whole audio as the
body answers one `recog-finished` JSON message (or the refusal / error as JSON)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from services.common.audio import PCM_BYTES_PER_SECOND
from services.common.logs import session_id_var
from services.endpoint.admission import Admission
from services.endpoint.audio import AudioNormaliser, audio_errors
from services.endpoint.backend import BackendStream
from services.endpoint.config import Settings
from services.endpoint.errors import Refusal, SessionError
from services.endpoint.flow import CLIENT_GONE, SessionFlow
from services.endpoint.formats import FINISHED, ResultFormatter

TRANSPORT = "http"
# Errors of the client's audio; other errors are 503 when retryable, else 500.
ERROR_STATUS = {"invalid_audio": 400, "audio_too_long": 413}
CHUNK_BYTES = 32768


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or a 413 Refusal as soon as it is known to exceed `limit`."""
    too_large = Refusal(413, "body_too_large", f"the audio body exceeds {limit} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


class HttpFlow:
    def __init__(self, settings: Settings, admission: Admission, flow: SessionFlow) -> None:
        self.settings = settings
        self.admission = admission
        self.flow = flow

    async def __call__(self, request: Request) -> Response:
        session_id = uuid.uuid4().hex
        session_id_var.set(session_id)
        headers = {k.lower(): v for k, v in request.headers.items()}
        began = time.monotonic()
        settings = self.settings
        try:
            params = self.admission.check(headers, dict(request.query_params))
        except Refusal as refusal:
            return self.flow.refused(refusal)
        with self.admission.counted(params):
            try:
                body = await read_body(request, settings.max_post_bytes)
                self.admission.admit(params)
                stream = await self.flow.open(params, headers, session_id)
            except Refusal as refusal:
                return self.flow.refused(refusal)
            formatter = ResultFormatter(params.process, params.language, params.options, session_id)
            normaliser = AudioNormaliser(params.audio, settings.max_session_seconds)
            outcome, status, answer = "internal_error", 500, {}
            retry_headers: dict[str, str] | None = None
            try:
                with self.flow.accepted(params.process):
                    answer = await asyncio.wait_for(
                        _recognise_body(stream, normaliser, formatter, body),
                        settings.final_timeout + len(body) / PCM_BYTES_PER_SECOND,
                    )
                    outcome, status = "ok", 200
            except (SessionError, TimeoutError) as exc:
                error = exc if isinstance(exc, SessionError) else _backend_timeout()
                outcome, answer = (
                    error.code,
                    formatter.error(error.code, error.message, error.retryable),
                )
                status = ERROR_STATUS.get(error.code, 503 if error.retryable else 500)
                if error.retryable:
                    retry_headers = {"Retry-After": str(settings.retry_after_seconds)}
            except asyncio.CancelledError:
                outcome = CLIENT_GONE
                raise
            finally:
                await normaliser.aclose()
                self.flow.ended(
                    TRANSPORT,
                    params,
                    stream,
                    began,
                    outcome,
                    normaliser.output_bytes / PCM_BYTES_PER_SECOND,
                    status=status,
                )
        return JSONResponse(answer, status, headers=retry_headers)


def _backend_timeout() -> SessionError:
    return SessionError(1011, "backend_timeout", "no final result in time", retryable=True)


async def _recognise_body(
    stream: BackendStream,
    normaliser: AudioNormaliser,
    formatter: ResultFormatter,
    body: bytes,
) -> dict[str, Any]:
    async def send_all() -> None:
        with audio_errors():
            for offset in range(0, len(body), CHUNK_BYTES):
                await normaliser.feed(body[offset : offset + CHUNK_BYTES], stream.send_audio)
            await normaliser.finish(stream.send_audio)
        await stream.end()

    sender = asyncio.create_task(send_all(), name="post-audio")
    reader = asyncio.create_task(_final(stream, formatter), name="post-results")
    try:
        done, _ = await asyncio.wait((sender, reader), return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()  # the first failure of either side
        return await reader
    finally:
        for task in (sender, reader):
            task.cancel()
        await asyncio.gather(sender, reader, return_exceptions=True)


async def _final(stream: BackendStream, formatter: ResultFormatter) -> dict[str, Any]:
    final: dict[str, Any] = {}
    async for reply in stream.results():
        for message in formatter.feed(reply, 0):
            if message["status"] == FINISHED:
                final = message
    return final
