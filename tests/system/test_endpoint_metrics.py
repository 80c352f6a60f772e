"""The endpoint's Prometheus metrics count what clients saw."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.audio import FRAME, SECOND
from tests.support.client import exchange, mimi_headers, refusal, stream_session
from tests.support.metrics import metric, metric_value, samples, scrape
from tests.support.processes import Service
from tests.support.stack import Stack
from tests.support.timing import eventually


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with Stack(tmp_path_factory.mktemp("stack")) as stack:
        ja = stack.intermediate("im-ja", [stack.engine_stub("engine-ja")])
        yield stack.endpoint(stack.router({"ja": [ja]}))


async def test_a_refused_and_a_normal_session_are_counted(endpoint: Service) -> None:
    """One 400 refusal and one 2-second session: refusal, session, audio and latency counts."""
    ws = f"ws://127.0.0.1:{endpoint.ports['http']}/"
    status, _, _ = await refusal(ws, mimi_headers(language="fr"))
    assert status == 400
    options = "response_format=v2;temporary=true;temporary_interval=100"
    result = await stream_session(
        ws, os.urandom(2 * SECOND), mimi_headers(options=options), frame_bytes=FRAME
    )
    assert result.close_code == 1000
    sessions = "kikimimi_endpoint_sessions_total"
    labels = {"process": "nict-asr", "language": "ja", "outcome": "ok"}
    # The session is recorded just after the close the client saw.

    async def counted() -> bool:
        return await metric(endpoint, sessions, **labels) == 1

    await eventually(counted, within=10, what="no session")
    found = await scrape(endpoint)
    assert (
        metric_value(
            found, "kikimimi_endpoint_refusals_total", status="400", code="unsupported_language"
        )
        == 1
    )
    assert metric_value(found, "kikimimi_endpoint_audio_seconds_total", process="nict-asr") == 2.0
    assert metric_value(found, "kikimimi_endpoint_active_sessions", process="nict-asr") == 0
    assert metric_value(found, "kikimimi_endpoint_first_result_seconds_count") == 1
    assert metric_value(found, "kikimimi_endpoint_final_latency_seconds_count") == 1
    assert not [
        s for s in samples(found) if s.name == sessions and s.labels.get("language") == "fr"
    ]


async def test_an_error_session_is_counted_by_its_outcome(endpoint: Service) -> None:
    """A session ended by a bad text frame is counted with outcome bad_command."""
    ws = f"ws://127.0.0.1:{endpoint.ports['http']}/"

    result = await exchange(ws, ["nonsense"], mimi_headers("asr"))
    assert result.close_code == 1003
    labels = {"process": "asr", "language": "ja", "outcome": "bad_command"}

    async def counted() -> bool:
        return await metric(endpoint, "kikimimi_endpoint_sessions_total", **labels) == 1

    await eventually(counted, within=10, what="the failed session was not counted")
